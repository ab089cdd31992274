package inference_test

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

// mobileBlock is a MobileNetV2-shaped classifier in miniature: stem conv + BN + Relu6,
// an inverted residual (expand 1x1, depthwise 3x3, project 1x1, skip Add), an
// overlapping MaxPool, global average pool and Gemm; hw x hw input.
func mobileBlock(seed uint64, hw int64) *onnx.ModelProto {
	r := rand.New(rand.NewPCG(seed, 5))
	randn := func(scale float64, shape ...int64) []float32 {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return v
	}
	ones := func(n int64, v float32) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
	b := onnx.NewBuilder("mobile_block")
	x := b.Input("image", -1, 3, hw, hw)
	h := b.Op("Conv", []string{x, b.Init("stem.w", []int64{8, 3, 3, 3}, randn(0.3, 8, 3, 3, 3))},
		onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInts("strides", 2, 2))
	h = b.Op("BatchNormalization", []string{h, b.Init("bn.s", []int64{8}, ones(8, 1.1)), b.Init("bn.b", []int64{8}, randn(0.1, 8)),
		b.Init("bn.m", []int64{8}, randn(0.1, 8)), b.Init("bn.v", []int64{8}, ones(8, 0.9))})
	h = b.Op("Clip", []string{h, b.Scalar(0), b.Scalar(6)})
	e := b.Op("Conv", []string{h, b.Init("exp.w", []int64{16, 8, 1, 1}, randn(0.3, 16, 8, 1, 1))})
	e = b.Op("Clip", []string{e, b.Scalar(0), b.Scalar(6)})
	e = b.Op("Conv", []string{e, b.Init("dw.w", []int64{16, 1, 3, 3}, randn(0.3, 16, 1, 3, 3))},
		onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("group", 16))
	e = b.Op("Clip", []string{e, b.Scalar(0), b.Scalar(6)})
	e = b.Op("Conv", []string{e, b.Init("proj.w", []int64{8, 16, 1, 1}, randn(0.3, 8, 16, 1, 1))})
	h = b.Op("Add", []string{h, e})
	h = b.Op("MaxPool", []string{h}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1))
	h = b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{h})})
	h = b.Op("Gemm", []string{h, b.Init("fc.w", []int64{10, 8}, randn(0.4, 10, 8)), b.Init("fc.b", []int64{10}, randn(0.1, 10))},
		onnx.AttrInt("transB", 1))
	b.Output("logits", h, -1, 10)
	return b.Model()
}

// The gradient graph autodiff builds gives the same loss and input gradient on the GPU
// provider as on the CPU, and the placement report says what it hands back to the CPU.
func TestGPUGradientGraphMatchesCPU(t *testing.T) {
	rt := testrt.Open(t)
	grad, err := autodiff.Build(rt, mobileBlock(41, 16), autodiff.Options{Loss: autodiff.CrossEntropy})
	if err != nil {
		t.Fatal(err)
	}
	model, err := onnx.Encode(grad)
	if err != nil {
		t.Fatal(err)
	}
	labels := inference.NewTensor(4, 10)
	for i := range 4 {
		labels.Data[i*10+(i*3)%10] = 1
	}
	feed := map[string]*inference.Tensor{"image": randomTensor(42, 4, 3, 16, 16), autodiff.InputLabelWeights: labels}
	s := gpuSession(t, rt, model)
	compareWithCPU(t, rt, model, s, feed, providerTol)

	p, err := rt.Placement(context.Background(), model, s.Provider())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gradient graph on %s: nodes %v, %d copies, handed to the CPU: %v", p.Provider, p.Counts(), p.Copies(), p.OffProviderOps())
	if p.Provider != s.Provider() || len(p.Nodes) == 0 {
		t.Fatalf("placement ran on %s with %d nodes, the session on %s", p.Provider, len(p.Nodes), s.Provider())
	}
}

// BenchmarkGPUGradient is forward+backward throughput of the MobileNetV2-shaped
// block's gradient graph (64x64, batch 16) on the CPU and on the GPU provider, in
// images/s: `go tool task gpu-check` prints both from one run.
func BenchmarkGPUGradient(b *testing.B) {
	rt := testrt.Open(b)
	grad, err := autodiff.Build(rt, mobileBlock(43, 64), autodiff.Options{Loss: autodiff.CrossEntropy})
	if err != nil {
		b.Fatal(err)
	}
	model, err := onnx.Encode(grad)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 16
	labels := inference.NewTensor(batch, 10)
	for i := range batch {
		labels.Data[i*10+i%10] = 1
	}
	feed := map[string]*inference.Tensor{"image": randomTensor(44, batch, 3, 64, 64), autodiff.InputLabelWeights: labels}
	gpu, required := os.Getenv("GIBBON_GPU_TEST"), true
	if gpu == "" {
		gpu, required = inference.EPWebGPU, false
	}
	for _, ep := range []string{inference.EPCPU, gpu} {
		s, err := rt.NewSessionOn(model, ep)
		if err != nil {
			b.Fatal(err)
		}
		if s.Provider() != ep {
			s.Close()
			if required {
				b.Fatalf("%s did not start (ran on %s)", ep, s.Provider())
			}
			b.Logf("%s did not start here: only the CPU is measured (GIBBON_GPU_TEST=%s requires it)", ep, ep)
			continue
		}
		b.Run(ep, func(b *testing.B) {
			if _, err := s.Run(context.Background(), feed); err != nil { // shader compilation, allocation
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := s.Run(context.Background(), feed); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "images/s")
		})
		s.Close()
	}
}
