package autodiff_test

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
	"gibbon/internal/testrt"
)

// Ops ORT 1.24's WebGPU provider hands back to the CPU: it has no LogSoftmax, Sum or
// MaxUnpool kernel (CUDA has no MaxUnpool either); ConstantOfShape and Shape make
// their tensors on the CPU.
var cpuOnlyOps = []string{"LogSoftmax", "Sum", "MaxUnpool", "ConstantOfShape", "Shape"}

// mnistModels are the built-in MNIST architectures with random weights.
func mnistModels(t *testing.T) map[string]*onnx.ModelProto {
	t.Helper()
	out := map[string]*onnx.ModelProto{}
	for _, name := range arch.Names() {
		a, err := arch.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := a.Build(3)
		out[name] = m
	}
	if len(out) < 5 {
		t.Fatalf("want the five built-in MNIST architectures, got %d", len(out))
	}
	return out
}

// opTypes counts a graph's op types; MaxPool nodes that compute Indices count as
// "MaxPool+Indices".
func opTypes(m *onnx.ModelProto) map[string]int {
	ops := map[string]int{}
	for _, n := range m.Graph.Node {
		op := n.GetOpType()
		if op == "MaxPool" && len(n.Output) > 1 && n.Output[1] != "" {
			op = "MaxPool+Indices"
		}
		ops[op]++
	}
	return ops
}

func build(t *testing.T, m *onnx.ModelProto, target autodiff.Target) *onnx.ModelProto {
	t.Helper()
	g, err := autodiff.Build(testrt.Open(t), m, autodiff.Options{Loss: autodiff.CrossEntropy, Target: target})
	if err != nil {
		t.Fatalf("Build (%s forms): %v", target, err)
	}
	return g
}

// The built-in models' gradient graphs use none of the ops GPU providers hand back,
// in either form but for MaxPool: the CPU forms compute its Indices (and scatter with
// MaxUnpool), the GPU forms compare with an Equal mask.
func TestGPUFormsAvoidCPUOnlyOps(t *testing.T) {
	for name, m := range mnistModels(t) {
		gpu, cpu := opTypes(build(t, m, autodiff.TargetGPU)), opTypes(build(t, m, autodiff.TargetCPU))
		for _, op := range append(cpuOnlyOps, "MaxPool+Indices", "ScatterElements") {
			if gpu[op] > 0 {
				t.Errorf("%s, GPU forms: %d %s nodes (ops %v)", name, gpu[op], op, gpu)
			}
		}
		for _, op := range []string{"LogSoftmax", "Sum", "ConstantOfShape"} { // (MaxUnpool reads a Shape)
			if cpu[op] > 0 {
				t.Errorf("%s, CPU forms: %d %s nodes (ops %v)", name, cpu[op], op, cpu)
			}
		}
		if opTypes(m)["MaxPool"] > 0 && (cpu["MaxPool+Indices"] == 0 || gpu["MaxPool"] == 0 || gpu["Equal"] == 0) {
			t.Errorf("%s: CPU forms %v, GPU forms %v: want Indices on the CPU, an Equal mask for GPUs", name, cpu, gpu)
		}
	}
	// every MaxPool geometry of the op tests goes through the mask but overlapping
	// 3-D windows (WebGPU runs no 3-D ConvTranspose)
	for name, indices := range map[string]int{"maxpool_overlap_ceil_dilation": 0, "maxpool_1d_3d_gaps_same": 1} {
		i := slices.IndexFunc(opCases(), func(oc opCase) bool { return oc.name == name })
		oc := opCases()[i]
		rng := rand.New(rand.NewPCG(11, 12))
		m := oc.model(rng)
		x := spreadTensor(rng, append([]int64{2}, oc.input...)...)
		m = withHead(t, m, rng, featureWidth(t, m, x))
		ops := opTypes(build(t, m, autodiff.TargetGPU))
		if ops["MaxPool+Indices"] != indices || ops["MaxUnpool"] > 0 || ops["Equal"] == 0 {
			t.Errorf("%s, GPU forms: %v: want %d MaxPool with Indices, the others by an Equal mask", oc.name, ops, indices)
		}
	}
}

// Where a window's maximum occurs more than once, the GPU forms share its gradient
// equally among the tied elements (the average of the subgradients); the CPU forms
// give it all to the first, as MaxPool's Indices say. Elsewhere they agree.
func TestMaxPoolTies(t *testing.T) {
	b := onnx.NewBuilder("ties")
	x := b.Input("x", -1, 1, 2, 4)
	p := b.Op("MaxPool", []string{x}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2))
	b.Output("y", b.Op("Flatten", []string{p}), -1, 2)
	m := b.Model()
	// window 0: 3 three times and 1; window 1: one maximum
	in := &inference.Tensor{Shape: []int64{1, 1, 2, 4}, Data: []float32{3, 3, 5, 2, 1, 3, 4, 0}}
	seed := &inference.Tensor{Shape: []int64{1, 2}, Data: []float32{1.5, -2}}
	want := map[autodiff.Target][]float32{
		autodiff.TargetCPU: {1.5, 0, -2, 0, 0, 0, 0, 0},
		autodiff.TargetGPU: {0.5, 0.5, -2, 0, 0, 0.5, 0, 0},
	}
	rt := testrt.Open(t)
	for target, w := range want {
		g, err := autodiff.Build(rt, m, autodiff.Options{Loss: autodiff.LogitSeed, Target: target})
		if err != nil {
			t.Fatal(err)
		}
		out := runModel(t, g, map[string]*inference.Tensor{"x": in, autodiff.InputLogitSeed: seed})
		got := out[autodiff.OutputInputGrad].Data
		if !slices.Equal(got, w) {
			t.Errorf("%s forms: input gradient %v, want %v", target, got, w)
		}
	}
}

func TestTargetFor(t *testing.T) {
	for _, c := range []struct {
		t    autodiff.Target
		ep   string
		want autodiff.Target
	}{
		{autodiff.TargetAuto, inference.EPCPU, autodiff.TargetCPU},
		{autodiff.TargetAuto, inference.EPWebGPU, autodiff.TargetGPU},
		{autodiff.TargetAuto, inference.EPCUDA, autodiff.TargetGPU},
		{autodiff.TargetCPU, inference.EPWebGPU, autodiff.TargetCPU},
		{autodiff.TargetGPU, inference.EPCPU, autodiff.TargetGPU},
	} {
		if got := c.t.For(c.ep); got != c.want {
			t.Errorf("%s.For(%q) = %s, want %s", c.t, c.ep, got, c.want)
		}
	}
	for s, want := range map[string]autodiff.Target{"": autodiff.TargetAuto, "auto": autodiff.TargetAuto, "CPU": autodiff.TargetCPU, " gpu": autodiff.TargetGPU} {
		if got, err := autodiff.ParseTarget(s); err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %s, %v; want %s", s, got, err, want)
		}
	}
	if _, err := autodiff.ParseTarget("tpu"); err == nil {
		t.Error("ParseTarget(tpu) gave no error")
	}
	if _, err := autodiff.Build(testrt.Open(t), mnistModels(t)["mlp"], autodiff.Options{Target: 7}); err == nil {
		t.Error("Build with target 7 gave no error")
	}
}

// gpuProvider is the GPU provider the tests below run on, and whether it must start:
// GIBBON_GPU_TEST=webgpu|cuda requires that one (GIBBON_WEBGPU_TEST=1 means webgpu;
// CI sets it with Mesa's lavapipe installed). Otherwise WebGPU is tried, and where it
// does not start the GPU forms are checked on the CPU instead.
func gpuProvider(t *testing.T) (string, bool) {
	switch v := os.Getenv("GIBBON_GPU_TEST"); v {
	case inference.EPWebGPU, inference.EPCUDA:
		return v, true
	case "":
	default:
		t.Fatalf("GIBBON_GPU_TEST=%q: want webgpu or cuda", v)
	}
	return inference.EPWebGPU, os.Getenv("GIBBON_WEBGPU_TEST") == "1"
}

func encode(t *testing.T, m *onnx.ModelProto) []byte {
	t.Helper()
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// openOn opens a session on ep, failing when ep is required and does not start.
func openOn(t *testing.T, rt *inference.Runtime, model []byte, ep string, required bool) *inference.Session {
	t.Helper()
	s, err := rt.NewSessionOn(model, ep)
	if err != nil {
		t.Fatalf("%s must fall back, not fail: %v", ep, err)
	}
	t.Cleanup(s.Close)
	if s.Provider() != ep {
		if required {
			t.Fatalf("%s is required here but the session runs on %s (for WebGPU without a GPU: Mesa 25 lavapipe, VK_ICD_FILENAMES and XDG_RUNTIME_DIR as in .ci/run)", ep, s.Provider())
		}
		t.Logf("no %s here: the GPU forms run on %s", ep, s.Provider())
	}
	return s
}

func relL2(got, want []float32) float64 {
	var d, n float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		n += float64(want[i]) * float64(want[i])
	}
	if n == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / n)
}

// The GPU forms, run on the GPU provider, give the CPU forms' logits, losses and
// input gradients on the CPU: the built-in MNIST architectures (cnn-wide's
// non-overlapping max pools), the op tests' max pools (overlapping, dilated, padded,
// ceil_mode, 1-D, 3-D) and a MobileNet-shaped block with an overlapping max pool.
func TestGPUFormsMatchCPU(t *testing.T) {
	rt := testrt.Open(t)
	ep, required := gpuProvider(t)
	type model struct {
		m      *onnx.ModelProto
		x      *inference.Tensor
		labels int64
	}
	models := map[string]model{}
	rng := rand.New(rand.NewPCG(31, 32))
	for name, m := range mnistModels(t) {
		models[name] = model{m, randTensor(rng, 0, 1, 3, 1, 28, 28), 10}
	}
	for _, oc := range opCases() {
		if !slices.Contains([]string{"maxpool_overlap_ceil_dilation", "maxpool_1d_3d_gaps_same"}, oc.name) {
			continue
		}
		r := rand.New(rand.NewPCG(11, 12))
		m := oc.model(r)
		x := spreadTensor(r, append([]int64{2}, oc.input...)...)
		models[oc.name] = model{withHead(t, m, r, featureWidth(t, m, x)), x, classes}
	}
	// a strided first layer with 5 output channels: WebGPU's ConvTranspose back to the
	// one input channel needs the GPU forms' even channel count
	b := onnx.NewBuilder("conv_one_to_five")
	x := b.Input("image", -1, 1, 9, 9)
	h := b.Op("Tanh", []string{b.Op("Conv", []string{x, weights(b, rng, "w", 9, 5, 1, 3, 3)}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1))})
	b.Output("logits", b.Op("Gemm", []string{b.Op("Flatten", []string{h}), weights(b, rng, "fc", 125, 3, 125)}, onnx.AttrInt("transB", 1)), -1, 3)
	models["conv_one_to_five"] = model{b.Model(), randTensor(rng, 0, 1, 2, 1, 9, 9), 3}
	pool := mobileBlock(rand.New(rand.NewPCG(33, 34)))
	insertMaxPool(pool)
	models["mobile_block_maxpool"] = model{pool, randTensor(rng, 0, 1, 2, 3, 12, 12), 4}

	for name, c := range models {
		t.Run(name, func(t *testing.T) {
			n := c.x.Shape[0]
			y := inference.NewTensor(n, c.labels)
			for i := range n {
				y.Data[i*c.labels+(i*7)%c.labels] = 1
			}
			image := c.m.Graph.Input[0].GetName()
			feed := map[string]*inference.Tensor{image: c.x, autodiff.InputLabelWeights: y}
			want, err := openOn(t, rt, encode(t, build(t, c.m, autodiff.TargetCPU)), inference.EPCPU, true).Run(context.Background(), feed)
			if err != nil {
				t.Fatal(err)
			}
			got, err := openOn(t, rt, encode(t, build(t, c.m, autodiff.TargetGPU)), ep, required).Run(context.Background(), feed)
			if err != nil {
				t.Fatalf("GPU forms on %s: %v", ep, err)
			}
			for _, o := range []string{autodiff.OutputLogits, autodiff.OutputLoss, autodiff.OutputInputGrad} {
				w, g := want[o], got[o]
				if g == nil || len(g.Data) != len(w.Data) {
					t.Fatalf("output %q: got %v, want shape %v", o, g, w.Shape)
				}
				// Float32 kernels in another order differ by a few ulps per op; a
				// wrong rule or a tie misread is off by far more than 1e-4.
				if e := relL2(g.Data, w.Data); e > 1e-4 || math.IsNaN(e) {
					t.Errorf("%s: GPU forms on %s differ from the CPU forms on the CPU: rel. L2 %.3g", o, ep, e)
				} else {
					t.Logf("%s: rel. L2 %.2g", o, e)
				}
			}
		})
	}
}

// insertMaxPool puts an overlapping 3x3/2 max pool (padded, as in ResNets) before the
// global pooling of mobileBlock.
func insertMaxPool(m *onnx.ModelProto) {
	for _, n := range m.Graph.Node {
		if n.GetOpType() != "GlobalAveragePool" {
			continue
		}
		in, out, op, name := n.Input[0], n.Input[0]+"_pooled", "MaxPool", "inserted_maxpool"
		mp := &onnx.NodeProto{OpType: &op, Name: &name, Input: []string{in}, Output: []string{out}, Attribute: []*onnx.AttributeProto{
			onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1)}}
		n.Input[0] = out
		m.Graph.Node = append(m.Graph.Node, mp) // Build sorts the nodes
		return
	}
	panic("mobileBlock has no GlobalAveragePool")
}

// On WebGPU every node of the built-in models' GPU-form gradient graphs runs on the
// GPU: nothing handed back to the CPU, no copies between them.
func TestGPUFormsPlacement(t *testing.T) {
	rt := testrt.Open(t)
	ep, required := gpuProvider(t)
	for name, m := range mnistModels(t) {
		model := encode(t, build(t, m, autodiff.TargetGPU))
		p, err := rt.Placement(context.Background(), model, ep)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Logf("%s gradient graph on %s: nodes %v, %d copies, handed to the CPU: %v", name, p.Provider, p.Counts(), p.Copies(), p.OffProviderOps())
		switch {
		case p.Provider != ep && required:
			t.Fatalf("%s is required here but the placement ran on %s", ep, p.Provider)
		case p.Provider == inference.EPWebGPU && (len(p.OffProvider()) > 0 || p.Copies() > 0):
			t.Errorf("%s: WebGPU handed nodes back to the CPU: %v, %d copies", name, p.OffProviderOps(), p.Copies())
		case len(p.Nodes) == 0:
			t.Errorf("%s: the placement lists no nodes", name)
		}
	}
}
