package autodiff_test

import (
	"math/rand/v2"
	"testing"

	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
)

// smallCNN is an MNIST-shaped classifier in miniature: conv, relu, overlapping max
// pool, strided conv, flatten, gemm, terminal softmax.
func smallCNN(rng *rand.Rand) *onnx.ModelProto {
	b := onnx.NewBuilder("cnn")
	x := b.Input("image", -1, 1, 8, 8)
	w1 := weights(b, rng, "conv1.w", 9, 4, 1, 3, 3)
	b1 := weights(b, rng, "conv1.b", 9, 4)
	h := b.Op("Conv", []string{x, w1, b1}, onnx.AttrInts("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []string{h})
	h = b.Op("MaxPool", []string{h}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1))
	w2 := weights(b, rng, "conv2.w", 36, 6, 4, 3, 3)
	h = b.Op("Conv", []string{h, w2}, onnx.AttrInts("strides", 2, 2))
	h = b.Op("Relu", []string{h})
	h = b.Op("Flatten", []string{h})
	fw := weights(b, rng, "fc.w", 6, 5, 6)
	fb := weights(b, rng, "fc.b", 6, 5)
	h = b.Op("Gemm", []string{h, fw, fb}, onnx.AttrInt("transB", 1))
	b.Output("probs", b.Op("Softmax", []string{h}, onnx.AttrInt("axis", 1)), -1, 5)
	return b.Model()
}

func TestSmallCNNGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	m := smallCNN(rng)
	x := randTensor(rng, 0, 1, 2, 1, 8, 8)
	h := newHarness(t, m, autodiff.Options{Loss: autodiff.CrossEntropy, Params: []string{"conv1.w", "conv1.b", "conv2.w", "fc.w", "fc.b"}}, x, 5, 3)
	h.check()
}

// mobileBlock is a MobileNetV2-shaped stack in miniature: strided stem, inverted
// residual (expand, depthwise, project) with BatchNorm and ReLU6, residual Add, global
// pooling, classifier.
func mobileBlock(rng *rand.Rand) *onnx.ModelProto {
	b := onnx.NewBuilder("mobile")
	x := b.Input("image", -1, 3, 12, 12)
	bn := func(h, name string, c int64) string {
		scale, bias, mean, vr := make([]float32, c), make([]float32, c), make([]float32, c), make([]float32, c)
		for i := range scale {
			scale[i], bias[i], mean[i], vr[i] = 0.5+rng.Float32(), 0.2*rng.Float32(), 0.1*float32(rng.NormFloat64()), 0.5+rng.Float32()
		}
		return b.Op("BatchNormalization", []string{h, b.Init(name+".s", []int64{c}, scale), b.Init(name+".b", []int64{c}, bias),
			b.Init(name+".m", []int64{c}, mean), b.Init(name+".v", []int64{c}, vr)})
	}
	relu6 := func(h string) string { return b.Op("Clip", []string{h, b.Scalar(0), b.Scalar(6)}) }
	h := relu6(bn(b.Op("Conv", []string{x, weights(b, rng, "stem", 27, 8, 3, 3, 3)}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1)), "bn0", 8))
	e := relu6(bn(b.Op("Conv", []string{h, weights(b, rng, "expand", 8, 16, 8, 1, 1)}), "bn1", 16))
	d := relu6(bn(b.Op("Conv", []string{e, weights(b, rng, "dw", 9, 16, 1, 3, 3)}, onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("group", 16)), "bn2", 16))
	p := bn(b.Op("Conv", []string{d, weights(b, rng, "project", 16, 8, 16, 1, 1)}), "bn3", 8)
	h = b.Op("Add", []string{h, p})
	h = b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{h})})
	h = b.Op("Gemm", []string{h, weights(b, rng, "fc.w", 8, 4, 8), weights(b, rng, "fc.b", 8, 4)}, onnx.AttrInt("transB", 1))
	b.Output("logits", h, -1, 4)
	return b.Model()
}

func TestMobileBlockGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	m := mobileBlock(rng)
	x := randTensor(rng, 0, 1, 2, 3, 12, 12)
	h := newHarness(t, m, autodiff.Options{Loss: autodiff.CrossEntropy, Params: []string{"stem", "dw", "project", "bn2.s", "fc.w"}}, x, 4, 23)
	h.check()
}
