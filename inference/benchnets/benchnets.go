// Package benchnets builds well-known classifier shapes as ONNX graphs with random
// weights: the graphs benchmarks and gradient tests run on when no trained file is at
// hand (these machines cannot download the real ones). The nets Gibbon trains are
// another package's, inference/train/arch. Each has one float input
// "image" [N,...] with a dynamic batch and one output "logits" [N,classes]. Weights
// are drawn from a seed (the same seed gives the same graph) and scaled so that
// activations stay O(1) through the depth: BatchNorm is folded into the convolutions,
// as exporters do, and residual branches are damped.
package benchnets

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"gibbon/inference/onnx"
)

// Graph input and output names.
const (
	Input  = "image"
	Output = "logits"
)

// Net is one buildable shape, by the name --arch takes.
type Net struct {
	Name        string
	Description string
	// Shape is the input without the batch dimension.
	Shape   []int64
	Classes int64
	Build   func(seed uint64) *onnx.ModelProto
}

// All lists the shapes, in the order benchmarks report them.
func All() []Net {
	return []Net{
		{"mnist-cnn", "MNIST CNN (the PyTorch example net): conv3x3 32 - conv3x3 64 - maxpool 2 - fc 128 - fc 10, ReLU; 1x28x28",
			[]int64{1, 28, 28}, 10, SmallCNN},
		{"mobilenetv2", "MobileNetV2 (17 inverted residuals, ReLU6, depthwise 3x3), 1000 classes; 3x224x224",
			[]int64{3, 224, 224}, 1000, MobileNetV2},
		{"resnet18", "ResNet-18 (7x7 stem, overlapping 3x3 max pool, 8 basic blocks), 1000 classes; 3x224x224",
			[]int64{3, 224, 224}, 1000, ResNet18},
		{"deit-tiny", "DeiT-tiny-shaped ViT (patch 16, width 192, depth 12, 3 heads, GELU, class token), 1000 classes; 3x224x224",
			[]int64{3, 224, 224}, 1000, func(seed uint64) *onnx.ModelProto { return ViT(DeiTTiny, seed) }},
	}
}

// Get finds a shape by name.
func Get(name string) (Net, error) {
	var names []string
	for _, a := range All() {
		if a.Name == name {
			return a, nil
		}
		names = append(names, a.Name)
	}
	sort.Strings(names)
	return Net{}, fmt.Errorf("unknown architecture %q (known: %s)", name, strings.Join(names, ", "))
}

// net is a builder with seeded weights and numbered layer names.
type net struct {
	b     *onnx.Builder
	rng   *rand.Rand
	layer int
}

func newNet(name string, seed uint64) *net {
	return &net{b: onnx.NewBuilder(name), rng: rand.New(rand.NewPCG(seed, 3))}
}

// randn is a Gaussian initializer with standard deviation std.
func (n *net) randn(name string, std float64, shape ...int64) string {
	c := 1
	for _, d := range shape {
		c *= int(d)
	}
	v := make([]float32, c)
	for i := range v {
		v[i] = float32(n.rng.NormFloat64() * std)
	}
	return n.b.Init(name, shape, v)
}

func (n *net) fill(name string, val float32, shape ...int64) string {
	c := 1
	for _, d := range shape {
		c *= int(d)
	}
	v := make([]float32, c)
	for i := range v {
		v[i] = val
	}
	return n.b.Init(name, shape, v)
}

// conv is a k x k convolution with bias, padding k/2, He-initialised (gain scales it).
func (n *net) conv(x string, cin, cout, k, stride, group int, gain float64) string {
	n.layer++
	fanIn := cin / group * k * k
	w := n.randn(fmt.Sprintf("l%d.w", n.layer), gain*math.Sqrt(2/float64(fanIn)), int64(cout), int64(cin/group), int64(k), int64(k))
	bias := n.fill(fmt.Sprintf("l%d.b", n.layer), 0, int64(cout))
	p := int64(k / 2)
	return n.b.Op("Conv", []string{x, w, bias}, onnx.AttrInts("kernel_shape", int64(k), int64(k)),
		onnx.AttrInts("strides", int64(stride), int64(stride)), onnx.AttrInts("pads", p, p, p, p), onnx.AttrInt("group", int64(group)))
}

// gemm is a fully connected layer on [N,in] with weights [out,in] (transB, as exported).
func (n *net) gemm(x string, in, out int, gain float64) string {
	n.layer++
	w := n.randn(fmt.Sprintf("l%d.w", n.layer), gain*math.Sqrt(1/float64(in)), int64(out), int64(in))
	bias := n.fill(fmt.Sprintf("l%d.b", n.layer), 0, int64(out))
	return n.b.Op("Gemm", []string{x, w, bias}, onnx.AttrInt("transB", 1))
}

func (n *net) relu(x string) string { return n.b.Op("Relu", []string{x}) }

func (n *net) model(x, logits string, classes int64) *onnx.ModelProto {
	n.b.Output(Output, logits, -1, classes)
	_ = x
	return n.b.Model()
}

// SmallCNN is the PyTorch MNIST example's net for [N,1,28,28]: two unpadded 3x3
// convolutions (32, 64), a 2x2 max pool, fc 128, fc 10, ReLU.
func SmallCNN(seed uint64) *onnx.ModelProto {
	n := newNet("mnist-cnn", seed)
	x := n.b.Input(Input, -1, 1, 28, 28)
	conv := func(h string, cin, cout int) string {
		n.layer++
		w := n.randn(fmt.Sprintf("l%d.w", n.layer), math.Sqrt(2/float64(cin*9)), int64(cout), int64(cin), 3, 3)
		return n.b.Op("Conv", []string{h, w, n.fill(fmt.Sprintf("l%d.b", n.layer), 0, int64(cout))}, onnx.AttrInts("kernel_shape", 3, 3))
	}
	h := n.relu(conv(x, 1, 32))                                                                             // 26x26
	h = n.relu(conv(h, 32, 64))                                                                             // 24x24
	h = n.b.Op("MaxPool", []string{h}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2)) // 12x12
	h = n.b.Op("Flatten", []string{h}, onnx.AttrInt("axis", 1))
	h = n.relu(n.gemm(h, 64*12*12, 128, math.Sqrt2))
	return n.model(x, n.gemm(h, 128, 10, 1), 10)
}

// MobileNetV2 is the paper's network for [N,3,224,224] (BatchNorm folded away): the
// stem, the 17 inverted-residual blocks of its table (expansion, channels, repeats,
// stride), the 1x1 conv to 1280, global average pooling and a 1000-way classifier,
// with ReLU6 as Clip(0,6) as exporters write it.
func MobileNetV2(seed uint64) *onnx.ModelProto {
	n := newNet("mobilenetv2", seed)
	b := n.b
	zero, six := b.Scalar(0), b.Scalar(6)
	relu6 := func(x string) string { return b.Op("Clip", []string{x, zero, six}) }
	x := b.Input(Input, -1, 3, 224, 224)
	h := relu6(n.conv(x, 3, 32, 3, 2, 1, 1))
	cin := 32
	for _, s := range []struct{ t, c, n, s int }{{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}} {
		for i := range s.n {
			stride := 1
			if i == 0 {
				stride = s.s
			}
			hidden := cin * s.t
			y := h
			if s.t != 1 {
				y = relu6(n.conv(y, cin, hidden, 1, 1, 1, 1))
			}
			y = relu6(n.conv(y, hidden, hidden, 3, stride, hidden, 1))
			y = n.conv(y, hidden, s.c, 1, 1, 1, 1)
			if stride == 1 && cin == s.c {
				y = b.Op("Add", []string{h, b.Op("Mul", []string{y, b.Scalar(0.2)})})
			}
			h, cin = y, s.c
		}
	}
	h = relu6(n.conv(h, cin, 1280, 1, 1, 1, 1))
	h = b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{h})}, onnx.AttrInt("axis", 1))
	n.layer++
	w := n.randn(fmt.Sprintf("l%d.w", n.layer), math.Sqrt(2.0/1280), 1000, 1280)
	z := b.Op("Gemm", []string{h, w, n.fill("fc.b", 0, 1000)}, onnx.AttrInt("transB", 1), onnx.AttrFloat("alpha", 0.05))
	return n.model(x, z, 1000)
}

// ResNet18 is torchvision's resnet18 for [N,3,224,224] with BatchNorm folded into the
// convolutions: 7x7/2 stem, 3x3/2 max pool (overlapping windows), four stages of two
// basic blocks (64, 128, 256, 512 channels; 1x1/2 projection shortcuts), global
// average pooling, fc 1000. Each block's residual branch is damped so that
// activations stay O(1) with random weights.
func ResNet18(seed uint64) *onnx.ModelProto {
	n := newNet("resnet18", seed)
	b := n.b
	x := b.Input(Input, -1, 3, 224, 224)
	h := n.relu(n.conv(x, 3, 64, 7, 2, 1, 1))
	h = b.Op("MaxPool", []string{h}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1))
	cin := 64
	for stage, c := range []int{64, 128, 256, 512} {
		for blk := range 2 {
			stride := 1
			if stage > 0 && blk == 0 {
				stride = 2
			}
			r := n.relu(n.conv(h, cin, c, 3, stride, 1, 1))
			r = n.conv(r, c, c, 3, 1, 1, 0.3)
			short := h
			if stride != 1 || cin != c {
				short = n.conv(h, cin, c, 1, stride, 1, 1)
			}
			h = n.relu(b.Op("Add", []string{short, r}))
			cin = c
		}
	}
	h = b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{h})}, onnx.AttrInt("axis", 1))
	return n.model(x, n.gemm(h, 512, 1000, 1), 1000)
}
