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
