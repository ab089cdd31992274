package inference_test

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"gibbon/inference"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

// gpuEP is the GPU provider the comparison tests use, and whether it is required:
// GIBBON_GPU_TEST=webgpu|cuda requires that provider (GIBBON_WEBGPU_TEST=1 is
// GIBBON_GPU_TEST=webgpu; CI sets it after installing Mesa 25 lavapipe). Otherwise
// the tests try WebGPU and, where it has no adapter, check the CPU fallback instead.
func gpuEP(t *testing.T) (string, bool) {
	switch v := os.Getenv("GIBBON_GPU_TEST"); v {
	case inference.EPWebGPU, inference.EPCUDA:
		return v, true
	case "":
	default:
		t.Fatalf("GIBBON_GPU_TEST=%q: want webgpu or cuda", v)
	}
	return inference.EPWebGPU, os.Getenv("GIBBON_WEBGPU_TEST") == "1"
}

// gpuSession opens model on the GPU provider (see gpuEP).
func gpuSession(t *testing.T, rt *inference.Runtime, model []byte) *inference.Session {
	t.Helper()
	ep, required := gpuEP(t)
	s, err := rt.NewSessionOn(model, ep)
	if err != nil {
		t.Fatalf("%s request must fall back, not fail: %v", ep, err)
	}
	t.Cleanup(s.Close)
	if s.Provider() != ep {
		if required && ep == inference.EPWebGPU {
			t.Fatalf("WebGPU is required here but has no adapter (the session ran on %s): install mesa-vulkan-drivers 25.x from bookworm-backports and set VK_ICD_FILENAMES to its lvp_icd.json and XDG_RUNTIME_DIR (see .ci/run), or a GPU's Vulkan driver", s.Provider())
		}
		if required {
			t.Fatalf("%s is required here but did not start (the session ran on %s): see the warning above", ep, s.Provider())
		}
		t.Logf("no %s here: checking the CPU fallback's results (set GIBBON_GPU_TEST=%s to require it)", ep, ep)
	}
	return s
}

// compareWithCPU runs the same feed on the CPU provider and on s, output by output.
func compareWithCPU(t *testing.T, rt *inference.Runtime, model []byte, s *inference.Session, feed map[string]*inference.Tensor, tol float64) {
	t.Helper()
	cpu, err := rt.NewSessionOn(model, inference.EPCPU)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	want, err := cpu.Run(context.Background(), feed)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Run(context.Background(), feed)
	if err != nil {
		t.Fatalf("%s run: %v", s.Provider(), err)
	}
	for name, w := range want {
		g := got[name]
		if g == nil || len(g.Data) != len(w.Data) {
			t.Fatalf("%s output %q missing or wrong size", s.Provider(), name)
		}
		e := relL2(g.Data, w.Data)
		t.Logf("%s vs cpu, %s: rel L2 %.2g", s.Provider(), name, e)
		if e > tol {
			t.Errorf("%s output %q differs from cpu: rel L2 %.3g > %.1g", s.Provider(), name, e, tol)
		}
	}
}

// Float32 kernels in another order (GPU reductions, Winograd on the CPU) differ by
// a few ulps per op; 1e-4 relative L2 is far above that and far below any real bug.
const providerTol = 1e-4

func TestGPUForwardMatchesCPU(t *testing.T) {
	rt := testrt.Open(t)
	model := smallCNN(21)
	s := gpuSession(t, rt, model)
	compareWithCPU(t, rt, model, s, map[string]*inference.Tensor{"x": randomTensor(22, 3, 1, 8, 8)}, providerTol)
}

// backwardOps is the hot path of a gradient graph in the standard ops autodiff.md
// lists: MaxPool's Indices scattered back with ScatterElements(add) and a Relu-style
// mask Mul(g, Cast(mask)); a strided Conv's input gradient (ConvTranspose with
// output_padding) and its weight gradient (a dilated Conv of input and gradient).
func backwardOps(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	w := make([]float32, 4*3*3*3)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.5)
	}
	b := onnx.NewBuilder("backward_ops")
	b.SetOpset(17)
	x := b.Input("x", 2, 3, 10, 10)
	gp := b.Input("gp", 2, 3, 4, 4) // gradient at MaxPool's output
	gy := b.Input("gy", 2, 4, 4, 4) // gradient at Conv's output

	// MaxPool 3x3 stride 2: windows overlap, so the scatter adds.
	pool := b.OpN("MaxPool", []string{x}, 2, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2))
	// Indices are flat over N*C*H*W; make them local to each (n, c) row of 100.
	offsets := b.Op("Reshape", []string{b.Ints(0, 100, 200, 300, 400, 500), b.Ints(2, 3, 1)})
	idx := b.Op("Sub", []string{b.Op("Reshape", []string{pool[1], b.Ints(2, 3, -1)}), offsets})
	zeros := b.Op("Mul", []string{b.Op("Reshape", []string{x, b.Ints(2, 3, -1)}), b.Scalar(0)})
	dpool := b.Op("ScatterElements", []string{zeros, idx, b.Op("Reshape", []string{gp, b.Ints(2, 3, -1)})},
		onnx.AttrInt("axis", 2), onnx.AttrString("reduction", "add"))
	mask := b.Op("Cast", []string{b.Op("Greater", []string{x, b.Scalar(0.3)})}, onnx.AttrInt("to", 1))
	dpool = b.Op("Mul", []string{b.Op("Reshape", []string{dpool, b.Ints(2, 3, 10, 10)}), mask})
	b.Output("dx_pool", dpool, 2, 3, 10, 10)

	// Conv(x, W) stride 2 gives 4x4 from 10x10: the input gradient needs output_padding 1.
	wt := b.Init("w", []int64{4, 3, 3, 3}, w)
	dconv := b.Op("ConvTranspose", []string{gy, wt}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("output_padding", 1, 1))
	b.Output("dx_conv", dconv, 2, 3, 10, 10)
	// Weight gradient: swap N and C, dilate the gradient kernel by the forward stride.
	xt := b.Op("Transpose", []string{x}, onnx.AttrInts("perm", 1, 0, 2, 3))
	gt := b.Op("Transpose", []string{gy}, onnx.AttrInts("perm", 1, 0, 2, 3))
	dw := b.Op("Conv", []string{xt, gt}, onnx.AttrInts("dilations", 2, 2))
	dw = b.Op("Slice", []string{dw, b.Ints(0, 0), b.Ints(3, 3), b.Ints(2, 3)})
	b.Output("dw", b.Op("Transpose", []string{dw}, onnx.AttrInts("perm", 1, 0, 2, 3)), 4, 3, 3, 3)
	return b.Bytes()
}

func backwardFeed() map[string]*inference.Tensor {
	return map[string]*inference.Tensor{
		"x": randomTensor(31, 2, 3, 10, 10), "gp": randomTensor(32, 2, 3, 4, 4), "gy": randomTensor(33, 2, 4, 4, 4)}
}

func TestGPUBackwardOpsMatchCPU(t *testing.T) {
	rt := testrt.Open(t)
	model := backwardOps(30)
	s := gpuSession(t, rt, model)
	compareWithCPU(t, rt, model, s, backwardFeed(), providerTol)
}

// The placement report names the nodes a GPU provider hands back to the CPU.
func TestGPUPlacementReport(t *testing.T) {
	rt := testrt.Open(t)
	model := backwardOps(30)
	s := gpuSession(t, rt, model) // fails here when the GPU provider is required and missing
	p, err := rt.Placement(context.Background(), model, s.Provider())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("provider %s, nodes per provider %v, %d copies, on CPU: %v", p.Provider, p.Counts(), p.Copies(), p.OffProviderOps())
	if p.Provider != s.Provider() {
		t.Fatalf("placement ran on %s, the session on %s", p.Provider, s.Provider())
	}
	byOp := map[string]string{}
	for _, n := range p.Nodes {
		byOp[n.OpType] = n.Provider
	}
	if got := byOp["ConvTranspose"]; got != inference.ORTProviderName(p.Provider) {
		t.Errorf("ConvTranspose ran on %q, want the session's provider %s: %+v", got, p.Provider, p.Nodes)
	}
	if p.Provider == inference.EPWebGPU && byOp["MaxPool"] != "CPUExecutionProvider" {
		t.Errorf("MaxPool with Indices must be forced to the CPU on WebGPU, ran on %q", byOp["MaxPool"])
	}
	if p.Provider != inference.EPCPU && p.Copies() == 0 {
		t.Errorf("nodes on two providers but no copies between them: %+v", p.Nodes)
	}
}
