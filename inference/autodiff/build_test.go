package autodiff_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

func gradSession(t *testing.T, m *onnx.ModelProto, opts autodiff.Options) *inference.Session {
	t.Helper()
	rt := testrt.Open(t)
	gm, err := autodiff.Build(rt, m, opts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	data, err := onnx.Encode(gm)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSession(data)
	if err != nil {
		t.Fatalf("load gradient graph: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func oneHot(n, c int, labels ...int) *inference.Tensor {
	t := inference.NewTensor(int64(n), int64(c))
	for i, l := range labels {
		t.Data[i*c+l] = 1
	}
	return t
}

func sample(x *inference.Tensor, i int) *inference.Tensor {
	per := x.Numel() / int(x.Shape[0])
	shape := append([]int64{1}, x.Shape[1:]...)
	return &inference.Tensor{Shape: shape, Data: append([]float32(nil), x.Data[i*per:(i+1)*per]...)}
}

func closeRel(a, b []float32, tol float64) (float64, bool) {
	var d2, r2 float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		d2 += d * d
		r2 += float64(b[i]) * float64(b[i])
	}
	rel := math.Sqrt(d2 / math.Max(r2, 1e-30))
	return rel, len(a) == len(b) && rel <= tol
}

// The gradient of a sample in a batch is its gradient alone; parameter gradients of a
// batch are the sums of the per-sample ones (Build differentiates sum_i loss_i).
func TestBatchOneEqualsBatchN(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	m := smallCNN(rng)
	params := []string{"conv1.w", "fc.b"}
	s := gradSession(t, m, autodiff.Options{Params: params})
	feeds := map[string]*inference.Tensor{}
	for _, p := range params {
		v, _ := onnx.FloatData(onnx.Initializer(m.Graph, p))
		feeds[p] = &inference.Tensor{Shape: onnx.Initializer(m.Graph, p).Dims, Data: v}
	}
	const n = 4
	x := randTensor(rng, 0, 1, n, 1, 8, 8)
	labels := []int{0, 3, 1, 4}
	feeds["image"] = x
	feeds[autodiff.InputLabelWeights] = oneHot(n, 5, labels...)
	all, err := s.Run(context.Background(), feeds)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string][]float32{}
	per := x.Numel() / n
	for i := 0; i < n; i++ {
		feeds["image"] = sample(x, i)
		feeds[autodiff.InputLabelWeights] = oneHot(1, 5, labels[i])
		one, err := s.Run(context.Background(), feeds)
		if err != nil {
			t.Fatal(err)
		}
		// Same arithmetic, only batched differently: float32 summation order is the
		// only difference, so 1e-5 relative is generous.
		if rel, ok := closeRel(one[autodiff.OutputInputGrad].Data, all[autodiff.OutputInputGrad].Data[i*per:(i+1)*per], 1e-5); !ok {
			t.Errorf("sample %d: input gradient alone differs from its slice of the batch gradient (rel. %.2g)", i, rel)
		}
		if got, want := one[autodiff.OutputLoss].Data[0], all[autodiff.OutputLoss].Data[i]; math.Abs(float64(got-want)) > 1e-5*math.Abs(float64(want)) {
			t.Errorf("sample %d: loss %v alone, %v in the batch", i, got, want)
		}
		for _, p := range params {
			g := one[autodiff.GradPrefix+p].Data
			if sums[p] == nil {
				sums[p] = make([]float32, len(g))
			}
			for j := range g {
				sums[p][j] += g[j]
			}
		}
	}
	for _, p := range params {
		if rel, ok := closeRel(sums[p], all[autodiff.GradPrefix+p].Data, 1e-5); !ok {
			t.Errorf("%s: batch gradient is not the sum of per-sample gradients (rel. %.2g)", p, rel)
		}
	}
}

// A terminal Softmax is differentiated from its input: "logits" are that input, and the
// loss is cross-entropy on them.
func TestTerminalSoftmaxAndOutputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	m := smallCNN(rng)
	before := proto.Clone(m)
	x := randTensor(rng, 0, 1, 3, 1, 8, 8)
	probs := runModel(t, m, map[string]*inference.Tensor{"image": x})["probs"]
	s := gradSession(t, m, autodiff.Options{})
	if !proto.Equal(before, m) {
		t.Fatal("Build modified its input model")
	}
	names := map[string]bool{}
	for _, o := range s.Outputs() {
		names[o.Name] = true
	}
	for _, want := range []string{"logits", "loss", "input_grad"} {
		if !names[want] {
			t.Errorf("gradient graph lacks output %q (has %v)", want, s.Outputs())
		}
	}
	labels := []int{2, 0, 4}
	out, err := s.Run(context.Background(), map[string]*inference.Tensor{"image": x, autodiff.InputLabelWeights: oneHot(3, 5, labels...)})
	if err != nil {
		t.Fatal(err)
	}
	logits := out["logits"]
	for i := 0; i < 3; i++ {
		row := logits.Data[i*5 : (i+1)*5]
		mx := row[0]
		for _, v := range row {
			mx = max(mx, v)
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v - mx))
		}
		for c := 0; c < 5; c++ {
			p := math.Exp(float64(row[c]-mx)) / z
			if math.Abs(p-float64(probs.Data[i*5+c])) > 1e-6 {
				t.Fatalf("softmax(logits) %v != model output %v", p, probs.Data[i*5+c])
			}
		}
		ce := -math.Log(math.Exp(float64(row[labels[i]]-mx)) / z)
		if got := float64(out["loss"].Data[i]); math.Abs(got-ce) > 1e-5*math.Max(1, ce) {
			t.Errorf("sample %d: loss %v, want cross-entropy %v", i, got, ce)
		}
	}
	if got := out["input_grad"].Shape; len(got) != 4 || got[0] != 3 {
		t.Errorf("input_grad shape %v", got)
	}
}

// Names Build adds may already be taken in the model; the model's tensors move aside.
func TestReservedNamesInModel(t *testing.T) {
	b := onnx.NewBuilder("clash")
	x := b.Input("x", 1, 4) // a fixed batch of 1 becomes dynamic
	w := b.Init("w", []int64{4, 3}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	b.Node("MatMul", []string{x, w}, []string{"loss"})
	b.Node("Tanh", []string{"loss"}, []string{"input_grad"})
	b.Node("Softmax", []string{"input_grad"}, []string{"logits"})
	b.Output("logits", "logits", 1, 3)
	s := gradSession(t, b.Model(), autodiff.Options{Loss: autodiff.LogitSeed, Params: []string{"w"}})
	x3 := &inference.Tensor{Shape: []int64{3, 4}, Data: []float32{.1, .2, .3, .4, -.1, 0, .1, .2, .05, -.05, 0, .01}}
	w0 := &inference.Tensor{Shape: []int64{4, 3}, Data: make([]float32, 12)}
	for i := range w0.Data {
		w0.Data[i] = 0.1 * float32(i%5)
	}
	seed := oneHot(3, 3, 0, 1, 2)
	out, err := s.Run(context.Background(), map[string]*inference.Tensor{"x": x3, "w": w0, autodiff.InputLogitSeed: seed})
	if err != nil {
		t.Fatal(err)
	}
	// logits = tanh(x w): check one value and the loss = picked logit
	var z float64
	for k := 0; k < 4; k++ {
		z += float64(x3.Data[4+k]) * float64(w0.Data[k*3+1])
	}
	if got, want := float64(out["logits"].Data[4]), math.Tanh(z); math.Abs(got-want) > 1e-6 {
		t.Errorf("logits[1,1] = %v, want %v", got, want)
	}
	if got, want := out["loss"].Data[1], out["logits"].Data[4]; got != want {
		t.Errorf("loss[1] = %v, want the seeded logit %v", got, want)
	}
	if len(out["grad_w"].Data) != 12 || len(out["input_grad"].Data) != 12 {
		t.Errorf("gradient shapes %v %v", out["grad_w"].Shape, out["input_grad"].Shape)
	}
}

func TestBadModels(t *testing.T) {
	rt := testrt.Open(t)
	rng := rand.New(rand.NewPCG(7, 8))
	cases := []struct {
		name  string
		model func() *onnx.ModelProto
		opts  autodiff.Options
		want  []string
	}{
		{"no graph", func() *onnx.ModelProto { return &onnx.ModelProto{} }, autodiff.Options{}, []string{"not an ONNX model"}},
		{"old opset", func() *onnx.ModelProto {
			b := onnx.NewBuilder("old")
			b.SetOpset(11)
			b.Output("y", b.Op("Relu", []string{b.Input("x", -1, 3)}), -1, 3)
			return b.Model()
		}, autodiff.Options{}, []string{"opset 11", "re-export", "opset_version=17"}},
		{"no float input", func() *onnx.ModelProto {
			b := onnx.NewBuilder("ids")
			ids := b.InputInt64("ids", -1, 4)
			emb := b.Init("emb", []int64{10, 3}, make([]float32, 30))
			b.Output("y", b.Op("ReduceMean", []string{b.Op("Gather", []string{emb, ids})}), -1, 3)
			return b.Model()
		}, autodiff.Options{}, []string{"no float image input", "ids"}},
		{"dynamic spatial", func() *onnx.ModelProto {
			b := onnx.NewBuilder("dyn")
			x := b.Input("x", -1, 1, -1, -1)
			b.Output("y", b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{x})}), -1, 1)
			return b.Model()
		}, autodiff.Options{}, []string{"dynamic dimension", "fixed image sizes"}},
		{"unsupported ops listed together", func() *onnx.ModelProto {
			b := onnx.NewBuilder("odd")
			x := b.Input("x", -1, 3)
			h := b.Op("Sin", []string{x})
			h = b.Op("Atan", []string{h})
			h = b.Op("Cos", []string{h})
			h = b.Op("Sin", []string{h})
			b.Output("y", h, -1, 3)
			return b.Model()
		}, autodiff.Options{}, []string{"unsupported op types", "Atan, Cos, Sin"}},
		{"layer norm statistics used downstream", func() *onnx.ModelProto {
			b := onnx.NewBuilder("lnstat")
			x := b.Input("x", -1, 2, 3)
			outs := b.OpN("LayerNormalization", []string{x, b.Const([]int64{3}, 1, 1, 1)}, 2)
			b.Output("y", b.Op("Flatten", []string{b.Op("Add", []string{outs[0], outs[1]})}), -1, 6)
			return b.Model()
		}, autodiff.Options{}, []string{"LayerNormalization", "Mean or InvStdDev"}},
		{"gather along the batch", func() *onnx.ModelProto {
			b := onnx.NewBuilder("gb")
			x := b.Input("x", -1, 3)
			h := b.Op("Add", []string{x, b.Op("Gather", []string{x, b.Ints(0)}, onnx.AttrInt("axis", 0))})
			b.Output("y", h, -1, 3)
			return b.Model()
		}, autodiff.Options{}, []string{"Gather", "batch axis"}},
		{"gather at computed indices", func() *onnx.ModelProto {
			b := onnx.NewBuilder("gi")
			x := b.Input("x", -1, 3, 4)
			// the index is the batch size minus one
			idx := b.Op("Sub", []string{b.Op("Slice", []string{b.Op("Shape", []string{x}), b.Ints(0), b.Ints(1)}), b.Ints(1)})
			h := b.Op("Gather", []string{x, idx}, onnx.AttrInt("axis", 1))
			b.Output("y", b.Op("Flatten", []string{h}), -1, 4)
			return b.Model()
		}, autodiff.Options{}, []string{"Gather", "changes with the batch size"}},
		{"param not an initializer", func() *onnx.ModelProto { return smallCNN(rng) }, autodiff.Options{Params: []string{"nope"}}, []string{`"nope" is not an initializer`}},
		{"unknown input", func() *onnx.ModelProto { return smallCNN(rng) }, autodiff.Options{Input: "pixels"}, []string{`no input "pixels"`}},
		{"nothing to differentiate", func() *onnx.ModelProto { return smallCNN(rng) }, autodiff.Options{NoInputGrad: true}, []string{"nothing to differentiate"}},
		{"output not logits", func() *onnx.ModelProto {
			b := onnx.NewBuilder("img")
			b.Output("y", b.Op("Relu", []string{b.Input("x", -1, 1, 4, 4)}), -1, 1, 4, 4)
			return b.Model()
		}, autodiff.Options{}, []string{"want logits [N, classes]"}},
		{"batch pinned inside the graph", func() *onnx.ModelProto {
			b := onnx.NewBuilder("pinned")
			x := b.Input("x", 1, 2, 2)
			b.Output("y", b.Op("Reshape", []string{x, b.Ints(1, 4)}), 1, 4)
			return b.Model()
		}, autodiff.Options{}, []string{"whatever the batch size", "pin"}},
		{"gradient through a double tensor", func() *onnx.ModelProto {
			b := onnx.NewBuilder("dbl")
			x := b.Input("x", -1, 3)
			h := b.Op("Cast", []string{x}, onnx.AttrInt("to", int64(onnx.TensorProto_DOUBLE)))
			h = b.Op("Cast", []string{b.Op("Exp", []string{h})}, onnx.AttrInt("to", int64(onnx.TensorProto_FLOAT)))
			b.Output("y", h, -1, 3)
			return b.Model()
		}, autodiff.Options{}, []string{"is DOUBLE", "only float32"}},
		{"training-mode dropout", func() *onnx.ModelProto {
			b := onnx.NewBuilder("drop")
			x := b.Input("x", -1, 3)
			on := b.Graph()
			tm := "training"
			dt := int32(onnx.TensorProto_BOOL)
			on.Initializer = append(on.Initializer, &onnx.TensorProto{Name: &tm, DataType: &dt, Dims: []int64{}, RawData: []byte{1}})
			b.Output("y", b.Op("Dropout", []string{x, b.Scalar(0.5), tm}), -1, 3)
			return b.Model()
		}, autodiff.Options{}, []string{"training mode"}},
		{"training-mode batch norm", func() *onnx.ModelProto {
			b := onnx.NewBuilder("bn")
			x := b.Input("x", -1, 2, 2, 2)
			for _, n := range []string{"s", "bb", "m", "v"} {
				b.Init(n, []int64{2}, []float32{1, 1})
			}
			h := b.OpN("BatchNormalization", []string{x, "s", "bb", "m", "v"}, 3, onnx.AttrInt("training_mode", 1))[0]
			b.Output("y", b.Op("Flatten", []string{h}), -1, 8)
			return b.Model()
		}, autodiff.Options{}, []string{"training mode"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := autodiff.Build(rt, c.model(), c.opts)
			if err == nil {
				t.Fatal("Build accepted a model it cannot differentiate")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// Opsets 13-16 are re-declared at 17; initializers that an old writer also listed as
// inputs are not inputs of the gradient graph.
func TestOpset13WithInitializerInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	b := onnx.NewBuilder("old")
	b.SetOpset(13)
	x := b.Input("x", -1, 2, 5, 5)
	w := weights(b, rng, "w", 18, 3, 2, 3, 3)
	h := b.Op("Conv", []string{x, w}, onnx.AttrInts("pads", 1, 1, 1, 1))
	h = b.Op("ReduceMean", []string{h}, onnx.AttrInts("axes", 2), onnx.AttrInt("keepdims", 0)) // axes attribute: opset 13 form
	h = b.Op("Flatten", []string{b.Op("Unsqueeze", []string{h, b.Ints(1)})})
	fc := weights(b, rng, "fc", 15, 15, 4)
	b.Output("y", b.Op("MatMul", []string{h, fc}), -1, 4)
	m := b.Model()
	for _, init := range m.Graph.Initializer {
		if init.GetName() == "w" || init.GetName() == "fc" {
			m.Graph.Input = append(m.Graph.Input, &onnx.ValueInfoProto{Name: init.Name, Type: m.Graph.Input[0].Type})
		}
	}
	s := gradSession(t, m, autodiff.Options{Params: []string{"fc"}})
	var ins []string
	for _, v := range s.Inputs() {
		ins = append(ins, v.Name)
	}
	if got := strings.Join(ins, " "); got != "x label_weights fc" {
		t.Errorf("gradient graph inputs %q, want x, label_weights and the param fc", got)
	}
	h2 := newHarness(t, m, autodiff.Options{Params: []string{"fc"}}, randTensor(rng, -1, 1, 2, 2, 5, 5), 4, 1)
	h2.check()
}
