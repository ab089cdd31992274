package attack_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

// Test models are built with the onnx Builder from a seed: no files, no training.

// cnnSpec is a small MNIST-shaped CNN: conv3x3(c1)-relu-maxpool2-conv3x3(c2)-relu-
// maxpool2-gemm(10), He-initialised.
type cnnSpec struct {
	seed     uint64
	size     int // input side
	c1, c2   int
	softmax  bool
	classes  int
	inputRow string
}

func buildCNN(s cnnSpec) *onnx.ModelProto {
	if s.classes == 0 {
		s.classes = 10
	}
	if s.inputRow == "" {
		s.inputRow = "image"
	}
	rng := rand.New(rand.NewPCG(s.seed, 99))
	he := func(n, fanIn int) []float32 {
		w := make([]float32, n)
		std := math.Sqrt(2 / float64(fanIn))
		for i := range w {
			w[i] = float32(rng.NormFloat64() * std)
		}
		return w
	}
	b := onnx.NewBuilder("cnn")
	x := b.Input(s.inputRow, -1, 1, int64(s.size), int64(s.size))
	layer := 0
	conv := func(in string, cin, cout int) string {
		layer++
		w := b.Init(fmt.Sprintf("conv%d.w", layer), []int64{int64(cout), int64(cin), 3, 3}, he(cout*cin*9, cin*9))
		bias := b.Init(fmt.Sprintf("conv%d.b", layer), []int64{int64(cout)}, make([]float32, cout))
		y := b.Op("Conv", []string{in, w, bias}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("pads", 1, 1, 1, 1))
		y = b.Op("Relu", []string{y})
		return b.Op("MaxPool", []string{y}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2))
	}
	h := conv(x, 1, s.c1)
	h = conv(h, s.c1, s.c2)
	side := s.size / 4
	feat := s.c2 * side * side
	h = b.Op("Flatten", []string{h}, onnx.AttrInt("axis", 1))
	w := b.Init("fc.w", []int64{int64(s.classes), int64(feat)}, he(s.classes*feat, feat))
	bias := b.Init("fc.b", []int64{int64(s.classes)}, make([]float32, s.classes))
	z := b.Op("Gemm", []string{h, w, bias}, onnx.AttrInt("transB", 1))
	if s.softmax {
		z = b.Op("Softmax", []string{z}, onnx.AttrInt("axis", 1))
	}
	b.Output("scores", z, -1, int64(s.classes))
	return b.Model()
}

// linearSpec is logits = W·flatten(x) + b with W [classes, D].
type linearSpec struct {
	w, b    []float32
	shape   []int64 // image shape without the batch
	classes int
}

func newLinear(seed uint64, shape []int64, classes int) linearSpec {
	rng := rand.New(rand.NewPCG(seed, 7))
	d := 1
	for _, v := range shape {
		d *= int(v)
	}
	s := linearSpec{w: make([]float32, classes*d), b: make([]float32, classes), shape: shape, classes: classes}
	for i := range s.w {
		s.w[i] = float32(rng.NormFloat64() / math.Sqrt(float64(d)) * 4)
	}
	for i := range s.b {
		s.b[i] = float32(rng.NormFloat64() * 0.1)
	}
	return s
}

func (s linearSpec) model() *onnx.ModelProto {
	b := onnx.NewBuilder("linear")
	x := b.Input("image", append([]int64{-1}, s.shape...)...)
	d := int64(len(s.w) / s.classes)
	h := b.Op("Flatten", []string{x}, onnx.AttrInt("axis", 1))
	w := b.Init("w", []int64{int64(s.classes), d}, s.w)
	bias := b.Init("b", []int64{int64(s.classes)}, s.b)
	b.Output("logits", b.Op("Gemm", []string{h, w, bias}, onnx.AttrInt("transB", 1)), -1, int64(s.classes))
	return b.Model()
}

// logits computes the linear model in float64.
func (s linearSpec) logits(x []float32) []float64 {
	d := len(x)
	z := make([]float64, s.classes)
	for c := range s.classes {
		acc := float64(s.b[c])
		for j, v := range x {
			acc += float64(s.w[c*d+j]) * float64(v)
		}
		z[c] = acc
	}
	return z
}

// gridImages draws n images of the given shape on the 8-bit grid of [0,1], with
// a smooth blob so they look a little like pictures.
func gridImages(seed uint64, shape ...int64) *inference.Tensor {
	rng := rand.New(rand.NewPCG(seed, 11))
	x := inference.NewTensor(shape...)
	for i := range x.Data {
		x.Data[i] = float32(rng.IntN(256)) / 255
	}
	return x
}

func newModel(t testing.TB, m *onnx.ModelProto, opts attack.ModelOptions) *attack.ONNXModel {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "model"
	}
	om, err := attack.NewONNXModel(context.Background(), testrt.Open(t), m, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(om.Close)
	return om
}

// Shared models: building the gradient graphs once keeps the suite fast.
var (
	sharedOnce   sync.Once
	sharedModels struct {
		cnnA, cnnB, cnnC *onnx.ModelProto
	}
)

func shared(t testing.TB) (a, b, c *onnx.ModelProto) {
	sharedOnce.Do(func() {
		rt := testrt.Open(t)
		sharedModels.cnnA = calibrate(t, rt, buildCNN(cnnSpec{seed: 1, size: 28, c1: 4, c2: 8}))
		sharedModels.cnnB = calibrate(t, rt, buildCNN(cnnSpec{seed: 2, size: 28, c1: 4, c2: 8}))
		sharedModels.cnnC = calibrate(t, rt, buildCNN(cnnSpec{seed: 3, size: 28, c1: 6, c2: 6}))
	})
	if sharedModels.cnnA == nil {
		t.Fatal("building the shared test models failed")
	}
	return sharedModels.cnnA, sharedModels.cnnB, sharedModels.cnnC
}

// calibrate rescales a random CNN's last layer so that, on random grid images, each
// class's mean logit is 0 and logits spread with std 3: every class then wins for
// some images instead of one class winning them all.
func calibrate(t testing.TB, rt *inference.Runtime, m *onnx.ModelProto) *onnx.ModelProto {
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSession(data)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := gridImages(1000, 256, 1, 28, 28)
	out, err := s.Run(context.Background(), map[string]*inference.Tensor{"image": x})
	if err != nil {
		t.Fatal(err)
	}
	z := out["scores"]
	classes := int(z.Shape[1])
	mean := make([]float64, classes)
	var sq float64
	for i, v := range z.Data {
		mean[i%classes] += float64(v) / 256
	}
	for i, v := range z.Data {
		d := float64(v) - mean[i%classes]
		sq += d * d
	}
	scale := 3 / math.Sqrt(sq/float64(len(z.Data)))
	w := onnx.Initializer(m.Graph, "fc.w")
	wd, _ := onnx.FloatData(w)
	for i := range wd {
		wd[i] *= float32(scale)
	}
	onnx.SetFloatData(w, wd)
	bias := onnx.Initializer(m.Graph, "fc.b")
	bd := make([]float32, classes)
	for c := range bd {
		bd[c] = float32(-mean[c] * scale)
	}
	onnx.SetFloatData(bias, bd)
	return m
}

// checkBall fails unless every value of adv lies in the ε-ball around x0, in [lo,hi],
// and (when grid) on the 8-bit grid.
func checkBall(t testing.TB, what string, adv, x0 *inference.Tensor, eps float32, lo, hi float32, grid bool) {
	t.Helper()
	if len(adv.Data) != len(x0.Data) {
		t.Fatalf("%s: %d values for %d clean values", what, len(adv.Data), len(x0.Data))
	}
	step := (float64(hi) - float64(lo)) / 255
	for i, v := range adv.Data {
		d := math.Abs(float64(v) - float64(x0.Data[i]))
		if d > float64(eps) || float64(v) < float64(lo) || float64(v) > float64(hi) || math.IsNaN(float64(v)) {
			t.Fatalf("%s: value %d = %v leaves the ball around %v (|d| %v > eps %v) or the range [%v,%v]", what, i, v, x0.Data[i], d, eps, lo, hi)
		}
		if grid {
			k := math.Round((float64(v) - float64(lo)) / step)
			if float32(float64(lo)+k*step) != v {
				t.Fatalf("%s: value %d = %v is not an 8-bit level", what, i, v)
			}
		}
	}
}
