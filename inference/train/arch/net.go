package arch

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gibbon/inference/onnx"
)

// Init names a weight initialisation scheme.
type Init int

const (
	// Kaiming (He) normal: std = sqrt(2/fan_in), for layers followed by ReLU.
	Kaiming Init = iota
	// Xavier (Glorot) uniform: limit = sqrt(6/(fan_in+fan_out)), for the classifier layer.
	Xavier
	// Zero starts a residual branch's last layer at zero, so each block begins as the
	// identity: deep nets without normalisation then train from the first step.
	Zero
)

// net builds a graph layer by layer, initialising each weight from one seeded stream.
type net struct {
	b      *onnx.Builder
	rng    *rand.Rand
	params []string
	layer  int
}

func (n *net) weight(shape []int64, fanIn, fanOut int, init Init) string {
	data := make([]float32, numel(shape))
	switch init {
	case Kaiming:
		std := math.Sqrt(2 / float64(fanIn))
		for i := range data {
			data[i] = float32(n.rng.NormFloat64() * std)
		}
	case Xavier:
		lim := math.Sqrt(6 / float64(fanIn+fanOut))
		for i := range data {
			data[i] = float32((2*n.rng.Float64() - 1) * lim)
		}
	case Zero:
	}
	return n.param("w", shape, data)
}

func (n *net) param(kind string, shape []int64, data []float32) string {
	name := fmt.Sprintf("l%d.%s", n.layer, kind)
	n.b.Init(name, shape, data)
	n.params = append(n.params, name)
	return name
}

func (n *net) bias(size int) string {
	return n.param("b", []int64{int64(size)}, make([]float32, size))
}

// conv is a k x k convolution with bias, stride and symmetric zero padding.
func (n *net) conv(x string, cin, cout, k, stride, pad int, init Init) string {
	n.layer++
	w := n.weight([]int64{int64(cout), int64(cin), int64(k), int64(k)}, cin*k*k, cout*k*k, init)
	b := n.bias(cout)
	p := int64(pad)
	return n.b.Op("Conv", []string{x, w, b},
		onnx.AttrInts("kernel_shape", int64(k), int64(k)),
		onnx.AttrInts("strides", int64(stride), int64(stride)),
		onnx.AttrInts("pads", p, p, p, p))
}

// linear is y = x W^T + b with W stored [out, in] (Gemm, transB).
func (n *net) linear(x string, in, out int, init Init) string {
	n.layer++
	w := n.weight([]int64{int64(out), int64(in)}, in, out, init)
	b := n.bias(out)
	return n.b.Op("Gemm", []string{x, w, b}, onnx.AttrInt("transB", 1))
}

func (n *net) relu(x string) string { return n.b.Op("Relu", []string{x}) }

func (n *net) maxPool(x string, k int) string {
	return n.b.Op("MaxPool", []string{x},
		onnx.AttrInts("kernel_shape", int64(k), int64(k)),
		onnx.AttrInts("strides", int64(k), int64(k)))
}

func (n *net) flatten(x string) string {
	return n.b.Op("Flatten", []string{x}, onnx.AttrInt("axis", 1))
}

func (n *net) add(a, b string) string { return n.b.Op("Add", []string{a, b}) }

func (n *net) globalAvgPool(x string) string { return n.b.Op("GlobalAveragePool", []string{x}) }

func numel(shape []int64) int {
	p := 1
	for _, d := range shape {
		p *= int(d)
	}
	return p
}
