package catalog

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"gibbon/inference"
	"gibbon/inference/onnx"
)

// Prepared is a classifier made ready for Gibbon, and what preparing it found.
type Prepared struct {
	Model      []byte
	InputName  string
	OutputName string
	// InputShape as prepared: -1 for the batch when it is dynamic.
	InputShape []int64
	Classes    int
	// OutputsLogits is false when the graph ends in a Softmax; Logits then names the
	// Softmax's input, where gradients should start.
	OutputsLogits bool
	Logits        string
	BatchDynamic  bool
	Upgrade       *onnx.UpgradeReport
	// MaxDiff is the largest difference between the prepared and the published
	// model's outputs on the test inputs.
	MaxDiff float64
	Notes   []string
}

// Prepare checks a classifier against its input contract and makes it ready: the
// opset is raised to onnx.DefaultOpset (converting 7-12), a [N,K,1,1] output is
// flattened, a batch fixed at 1 is made dynamic when the result still runs, and a
// terminal Softmax is reported. Every step is checked by running the published and
// the prepared graphs in ONNX Runtime on the same inputs; a prepared model whose
// outputs differ is refused. classes > 0 requires that many outputs.
func Prepare(ctx context.Context, rt *inference.Runtime, data []byte, c inference.InputContract, classes int) (*Prepared, error) {
	if err := ValidateContract(c); err != nil {
		return nil, err
	}
	m, err := onnx.Decode(data)
	if err != nil {
		return nil, err
	}
	in, out, err := graphIO(m.GetGraph())
	if err != nil {
		return nil, err
	}
	dims := valueDims(in)
	if err := checkInput(in.GetName(), dims, c); err != nil {
		return nil, err
	}
	p := &Prepared{InputName: in.GetName(), OutputName: out.GetName()}

	x1 := sampleInput(c, 1, 1)
	x2 := sampleInput(c, 1, 2)
	published, err := runInputs(ctx, rt, data, p.InputName, p.OutputName, x1)
	var ref1 *inference.Tensor
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.Notes = append(p.Notes, fmt.Sprintf("ONNX Runtime cannot run the model as published (%v); the prepared model was checked on its own", err))
	} else {
		ref1 = published[0]
	}

	if p.Upgrade, err = onnx.Upgrade(m, onnx.DefaultOpset); err != nil {
		return nil, err
	}
	if onnx.FlattenOutput(m.GetGraph(), p.OutputName) {
		p.Notes = append(p.Notes, "output [N,K,1,1] flattened to [N,K]")
	}
	fixed, err := onnx.Encode(m)
	if err != nil {
		return nil, err
	}
	got, err := runInputs(ctx, rt, fixed, p.InputName, p.OutputName, x1, x2)
	if err != nil {
		return nil, fmt.Errorf("the upgraded model does not run: %w", err)
	}
	if err := checkOutput(got[0], classes); err != nil {
		return nil, err
	}
	p.Classes = int(got[0].Shape[1])
	if ref1 != nil {
		d, err := compare(got[0], ref1)
		if err != nil {
			return nil, fmt.Errorf("preparing changed the model's outputs (%v): please report this model", err)
		}
		p.MaxDiff = d
	} else {
		ref1 = got[0]
	}
	ref2 := got[1]

	if logits, ok := onnx.SoftmaxLogits(m.GetGraph(), p.OutputName); ok {
		p.Logits = logits
	} else {
		p.OutputsLogits = true
	}

	p.Model = fixed
	p.InputShape = append([]int64{1}, dims[1:]...)
	// m is edited in place from here: `fixed` keeps the fixed-batch bytes.
	batch, err := onnx.MakeBatchDynamic(m)
	if err != nil {
		return nil, err
	}
	if !batch && dims[0] != -1 {
		p.Notes = append(p.Notes, fmt.Sprintf("batch fixed at %d", dims[0]))
		return p, nil
	}
	dyn := fixed
	if batch {
		if dyn, err = onnx.Encode(m); err != nil {
			return nil, err
		}
	}
	if err := checkBatch2(ctx, rt, dyn, p, x1, x2, ref1, ref2); err != nil {
		p.Notes = append(p.Notes, "batch kept at 1: "+err.Error())
		if !batch { // declared dynamic but only runs at 1: say so in the graph (m is unchanged)
			if err := fixBatch(m, p.InputName); err != nil {
				return nil, err
			}
			if p.Model, err = onnx.Encode(m); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	p.Model = dyn
	p.BatchDynamic = true
	p.InputShape[0] = -1
	if batch {
		p.Notes = append(p.Notes, "batch made dynamic")
	}
	return p, nil
}

// checkBatch2 runs the batch-dynamic graph at batch 1 and at batch 2 and compares
// every row with the fixed graph's answers.
func checkBatch2(ctx context.Context, rt *inference.Runtime, model []byte, p *Prepared, x1, x2, ref1, ref2 *inference.Tensor) error {
	both := &inference.Tensor{Shape: append([]int64{2}, x1.Shape[1:]...), Data: append(append([]float32(nil), x1.Data...), x2.Data...)}
	got, err := runInputs(ctx, rt, model, p.InputName, p.OutputName, x1, both)
	if err != nil {
		return err
	}
	if _, err := compare(got[0], ref1); err != nil {
		return fmt.Errorf("batch 1: %w", err)
	}
	g := got[1]
	if len(g.Shape) != 2 || g.Shape[0] != 2 {
		return fmt.Errorf("batch 2 gave output shape %v", g.Shape)
	}
	k := len(g.Data) / 2
	for i, ref := range []*inference.Tensor{ref1, ref2} {
		row := &inference.Tensor{Shape: []int64{1, int64(k)}, Data: g.Data[i*k : (i+1)*k]}
		if _, err := compare(row, ref); err != nil {
			return fmt.Errorf("batch 2, row %d: %w", i, err)
		}
	}
	return nil
}

// graphIO finds the one image input (initializers aside) and the one output.
func graphIO(g *onnx.GraphProto) (in, out *onnx.ValueInfoProto, err error) {
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var ins []*onnx.ValueInfoProto
	var names []string
	for _, v := range g.GetInput() {
		if !inits[v.GetName()] {
			ins = append(ins, v)
			names = append(names, v.GetName())
		}
	}
	if len(ins) != 1 {
		return nil, nil, fmt.Errorf("the model has %d inputs (%s); Gibbon needs exactly one image input", len(ins), strings.Join(names, ", "))
	}
	if et := ins[0].GetType().GetTensorType().GetElemType(); et != int32(onnx.TensorProto_FLOAT) {
		return nil, nil, fmt.Errorf("input %q is %s; Gibbon needs float32", ins[0].GetName(), onnx.TensorProto_DataType(et))
	}
	if len(g.GetOutput()) != 1 {
		names = names[:0]
		for _, v := range g.GetOutput() {
			names = append(names, v.GetName())
		}
		return nil, nil, fmt.Errorf("the model has %d outputs (%s); Gibbon needs exactly one (the class scores)", len(names), strings.Join(names, ", "))
	}
	return ins[0], g.GetOutput()[0], nil
}

// valueDims reads a declared shape, -1 for symbolic or missing dimensions.
func valueDims(v *onnx.ValueInfoProto) []int64 {
	s := v.GetType().GetTensorType().GetShape()
	if s == nil {
		return nil
	}
	dims := make([]int64, len(s.Dim))
	for i, d := range s.Dim {
		dims[i] = -1
		if x, ok := d.GetValue().(*onnx.TensorShapeProto_Dimension_DimValue); ok && x.DimValue > 0 {
			dims[i] = x.DimValue
		}
	}
	return dims
}

func checkInput(name string, dims []int64, c inference.InputContract) error {
	if len(dims) != 4 {
		return fmt.Errorf("input %q has shape %v; Gibbon needs a 4-D image batch", name, dims)
	}
	want := []int64{-1, int64(c.Channels), int64(c.Height), int64(c.Width)}
	other := []int64{-1, int64(c.Height), int64(c.Width), int64(c.Channels)}
	if c.TensorLayout() == inference.LayoutNHWC {
		want, other = other, want
	}
	fits := func(w []int64) bool {
		for i := 1; i < 4; i++ {
			if dims[i] != -1 && dims[i] != w[i] {
				return false
			}
		}
		return true
	}
	if !fits(want) {
		hint := ""
		if fits(other) {
			hint = " (it looks like the other layout)"
		}
		return fmt.Errorf("input %q has shape %v, but the contract says %s %dx%dx%d%s",
			name, dims, c.Layout, c.Channels, c.Height, c.Width, hint)
	}
	if dims[0] > 1 {
		return fmt.Errorf("input %q is fixed at batch %d; Gibbon needs batch 1 or a dynamic batch", name, dims[0])
	}
	return nil
}

func checkOutput(t *inference.Tensor, classes int) error {
	if len(t.Shape) != 2 || t.Shape[0] != 1 {
		return fmt.Errorf("the model's output has shape %v; Gibbon needs [batch, classes]", t.Shape)
	}
	if classes > 0 && t.Shape[1] != int64(classes) {
		return fmt.Errorf("the model outputs %d classes, the labels have %d", t.Shape[1], classes)
	}
	if !inference.AllFinite(t.Data) {
		return fmt.Errorf("the model's output holds NaN or Inf on a test image")
	}
	return nil
}

// compare returns the largest difference, or an error past 1e-4 of the reference's scale.
func compare(got, want *inference.Tensor) (float64, error) {
	if len(got.Data) != len(want.Data) {
		return 0, fmt.Errorf("%d values, want %d", len(got.Data), len(want.Data))
	}
	scale, worst := 1.0, 0.0
	for i := range want.Data {
		scale = max(scale, math.Abs(float64(want.Data[i])))
		d := math.Abs(float64(got.Data[i] - want.Data[i]))
		if math.IsNaN(d) {
			return 0, fmt.Errorf("NaN in the outputs")
		}
		worst = max(worst, d)
	}
	if worst > 1e-4*scale {
		return worst, fmt.Errorf("outputs differ by up to %.3g", worst)
	}
	return worst, nil
}

// sampleInput is a random image under the contract: pixels uniform on the range, then
// normalised with mean/std, laid out as the model wants.
func sampleInput(c inference.InputContract, batch int64, seed uint64) *inference.Tensor {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	shape := c.Shape()
	shape[0] = batch
	t := inference.NewTensor(shape...)
	for i := range t.Data {
		t.Data[i] = float32(c.Range[0] + r.Float64()*(c.Range[1]-c.Range[0]))
	}
	return c.Normalize(t)
}

// runInputs loads a model once and runs it on each input.
func runInputs(ctx context.Context, rt *inference.Runtime, model []byte, in, out string, xs ...*inference.Tensor) ([]*inference.Tensor, error) {
	s, err := rt.NewSession(model)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	res := make([]*inference.Tensor, len(xs))
	for i, x := range xs {
		o, err := s.Run(ctx, map[string]*inference.Tensor{in: x})
		if err != nil {
			return nil, err
		}
		if res[i] = o[out]; res[i] == nil {
			return nil, fmt.Errorf("no float output %q", out)
		}
	}
	return res, nil
}

// fixBatch declares the input's batch dimension as 1.
func fixBatch(m *onnx.ModelProto, input string) error {
	for _, v := range m.GetGraph().GetInput() {
		if v.GetName() != input {
			continue
		}
		s := v.GetType().GetTensorType().GetShape()
		if s == nil || len(s.Dim) == 0 {
			return fmt.Errorf("input %q has no shape", input)
		}
		s.Dim[0] = &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 1}}
		return nil
	}
	return fmt.Errorf("no input %q", input)
}
