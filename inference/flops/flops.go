// Package flops counts the arithmetic of an ONNX graph: the multiply-adds of its
// convolutions and matrix products, from the shapes ONNX Runtime gives their
// tensors on one run. Everything else (activations, pooling, normalisation,
// element-wise gradient products) is left out: in the networks Gibbon attacks it is
// a few per cent of the work and bound by memory, not by the FPU, so the count is
// what a machine's FLOP limit applies to. A convolution with one product per output
// value (a depthwise 1×1 kernel, as the gradient graphs use for ReLU masks and to
// spread a strided gradient) is such an element-wise op in another form, and is
// left out too. A FLOP is half a multiply-add.
package flops

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
)

// Counted are the op types whose multiply-adds are counted.
var Counted = []string{"Conv", "ConvTranspose", "Gemm", "MatMul"}

// Report is one graph's count at one batch size.
type Report struct {
	Batch int64
	// MACs are the multiply-adds of the whole batch.
	MACs int64
	// ByOp splits MACs by op type; Nodes counts the nodes of each.
	ByOp  map[string]int64
	Nodes map[string]int
}

// FLOPs is 2·MACs.
func (r *Report) FLOPs() int64 { return 2 * r.MACs }

// PerImage is FLOPs per image of the batch.
func (r *Report) PerImage() float64 { return float64(r.FLOPs()) / float64(r.Batch) }

// Ops lists the op types counted, most work first.
func (r *Report) Ops() []string {
	ops := make([]string, 0, len(r.ByOp))
	for op := range r.ByOp {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool {
		return r.ByOp[ops[i]] > r.ByOp[ops[j]] || r.ByOp[ops[i]] == r.ByOp[ops[j]] && ops[i] < ops[j]
	})
	return ops
}

// Count runs m once at the given batch size (random floats, zero integers for every
// graph input; a dynamic leading dimension is the batch) and counts its multiply-adds.
func Count(ctx context.Context, rt *inference.Runtime, m *onnx.ModelProto, batch int64) (*Report, error) {
	if m == nil || m.Graph == nil {
		return nil, fmt.Errorf("flops: not an ONNX model (no graph)")
	}
	if batch < 1 {
		return nil, fmt.Errorf("flops: batch %d, want at least 1", batch)
	}
	g := m.Graph
	init := map[string][]int64{}
	for _, t := range g.Initializer {
		init[t.GetName()] = t.Dims
	}
	// Tensors whose shapes the count needs, other than initializers.
	var want []string
	need := func(name string) {
		if _, ok := init[name]; name != "" && !ok && !slices.Contains(want, name) {
			want = append(want, name)
		}
	}
	var counted []*onnx.NodeProto
	for _, n := range g.Node {
		if !slices.Contains(Counted, n.GetOpType()) || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") {
			continue
		}
		if len(n.Input) < 2 || len(n.Output) < 1 {
			return nil, fmt.Errorf("flops: %s node %q has %d inputs and %d outputs", n.GetOpType(), n.GetName(), len(n.Input), len(n.Output))
		}
		counted = append(counted, n)
		need(n.Input[0])
		need(n.Input[1])
		need(n.Output[0])
	}
	shapes, err := probe(ctx, rt, m, want, batch)
	if err != nil {
		return nil, err
	}
	shapeOf := func(name string) ([]int64, error) {
		if s, ok := init[name]; ok {
			return s, nil
		}
		if s, ok := shapes[name]; ok {
			return s, nil
		}
		return nil, fmt.Errorf("flops: no shape for %q", name)
	}
	r := &Report{Batch: batch, ByOp: map[string]int64{}, Nodes: map[string]int{}}
	for _, n := range counted {
		x, err := shapeOf(n.Input[0])
		if err != nil {
			return nil, err
		}
		w, err := shapeOf(n.Input[1])
		if err != nil {
			return nil, err
		}
		y, err := shapeOf(n.Output[0])
		if err != nil {
			return nil, err
		}
		if (n.GetOpType() == "Conv" || n.GetOpType() == "ConvTranspose") && len(w) >= 3 && numel(w[1:]) == 1 {
			continue // element-wise (see the package doc)
		}
		macs, err := nodeMACs(n, x, w, y)
		if err != nil {
			return nil, fmt.Errorf("flops: %s node %q: %w", n.GetOpType(), n.GetName(), err)
		}
		r.MACs += macs
		r.ByOp[n.GetOpType()] += macs
		r.Nodes[n.GetOpType()]++
	}
	return r, nil
}

// nodeMACs is one node's multiply-adds from its first two inputs' and its output's shapes.
func nodeMACs(n *onnx.NodeProto, x, w, y []int64) (int64, error) {
	switch n.GetOpType() {
	case "Conv":
		// Each output value sums Cin/group · kernel products: W is [Cout, Cin/group, k...].
		if len(w) < 3 {
			return 0, fmt.Errorf("weight shape %v", w)
		}
		return numel(y) * numel(w[1:]), nil
	case "ConvTranspose":
		// Each input value is spread over Cout/group · kernel outputs: W is [Cin, Cout/group, k...].
		if len(w) < 3 {
			return 0, fmt.Errorf("weight shape %v", w)
		}
		return numel(x) * numel(w[1:]), nil
	case "Gemm":
		if len(x) != 2 || len(y) != 2 {
			return 0, fmt.Errorf("shapes %v → %v", x, y)
		}
		k := x[1]
		if attrInt(n, "transA") != 0 {
			k = x[0]
		}
		return numel(y) * k, nil
	case "MatMul":
		// numpy semantics: every output value is a dot product over A's last axis.
		if len(x) == 0 {
			return 0, fmt.Errorf("scalar operand")
		}
		return numel(y) * x[len(x)-1], nil
	}
	return 0, fmt.Errorf("not a counted op")
}

func numel(s []int64) int64 {
	n := int64(1)
	for _, d := range s {
		n *= d
	}
	return n
}

func attrInt(n *onnx.NodeProto, name string) int64 {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a.GetI()
		}
	}
	return 0
}

// probe runs m with Concat(Shape(t), [-1]) exposed for each wanted tensor (the -1
// keeps a scalar's shape non-empty) and returns their shapes.
func probe(ctx context.Context, rt *inference.Runtime, m *onnx.ModelProto, want []string, batch int64) (map[string][]int64, error) {
	pm := proto.Clone(m).(*onnx.ModelProto)
	g := pm.Graph
	g.Output = nil
	opset := int64(onnx.DefaultOpset)
	for _, o := range pm.OpsetImport {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			opset = o.GetVersion()
		}
	}
	b := onnx.BuilderOn(g, opset)
	minus1 := b.Ints(-1)
	outs := map[string]string{}
	for _, t := range want {
		o := b.Op("Concat", []string{b.Op("Shape", []string{t}), minus1}, onnx.AttrInt("axis", 0))
		outs[o] = t
		name, et := o, int32(onnx.TensorProto_INT64)
		g.Output = append(g.Output, &onnx.ValueInfoProto{Name: &name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: &et}}}})
	}
	if len(want) == 0 {
		return map[string][]int64{}, nil
	}
	feeds, err := inputs(g, batch)
	if err != nil {
		return nil, err
	}
	data, err := onnx.Encode(pm)
	if err != nil {
		return nil, fmt.Errorf("flops: encode the probe: %w", err)
	}
	s, err := rt.NewSession(data)
	if err != nil {
		return nil, fmt.Errorf("flops: ONNX Runtime cannot load the model: %w", err)
	}
	defer s.Close()
	res, err := s.RunValues(ctx, feeds)
	if err != nil {
		return nil, fmt.Errorf("flops: run the model at batch %d: %w", batch, err)
	}
	shapes := map[string][]int64{}
	for o, t := range outs {
		v, ok := res[o].(*inference.Int64Tensor)
		if !ok || len(v.Data) == 0 {
			return nil, fmt.Errorf("flops: the shape probe of %q returned %T", t, res[o])
		}
		shapes[t] = v.Data[:len(v.Data)-1]
	}
	return shapes, nil
}

// inputs makes a value for every graph input that is not an initializer.
func inputs(g *onnx.GraphProto, batch int64) (map[string]any, error) {
	inits := map[string]bool{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = true
	}
	rng := rand.New(rand.NewPCG(1, 2))
	feeds := map[string]any{}
	for _, v := range g.Input {
		if inits[v.GetName()] {
			continue
		}
		tt := v.GetType().GetTensorType()
		if tt == nil {
			return nil, fmt.Errorf("flops: input %q is not a tensor", v.GetName())
		}
		var shape []int64
		for i, d := range tt.GetShape().GetDim() {
			switch {
			case d.GetDimValue() > 0:
				shape = append(shape, d.GetDimValue())
			case i == 0:
				shape = append(shape, batch)
			default:
				return nil, fmt.Errorf("flops: input %q has a dynamic dimension %d besides the batch: give it a size", v.GetName(), i)
			}
		}
		switch onnx.TensorProto_DataType(tt.GetElemType()) {
		case onnx.TensorProto_FLOAT:
			t := inference.NewTensor(shape...)
			for i := range t.Data {
				t.Data[i] = rng.Float32()
			}
			feeds[v.GetName()] = t
		case onnx.TensorProto_INT64:
			feeds[v.GetName()] = &inference.Int64Tensor{Shape: shape, Data: make([]int64, numel(shape))}
		default:
			return nil, fmt.Errorf("flops: input %q has element type %v; Gibbon feeds float32 and int64", v.GetName(), onnx.TensorProto_DataType(tt.GetElemType()))
		}
	}
	return feeds, nil
}

// Attack is the arithmetic of an iterative gradient attack on one classifier.
type Attack struct {
	// Forward is one forward pass; Gradient one pass of the gradient graph attacks
	// run (forward, cross-entropy loss, backward to the input, no weight gradients).
	Forward, Gradient *Report
}

// Backward is the gradient graph's share beyond its forward pass, per image.
func (a *Attack) Backward() float64 { return a.Gradient.PerImage() - a.Forward.PerImage() }

// PerImage is the FLOPs per image of an attack of steps gradient steps and
// forwards plain forward passes (PGD-10: 10 and 1, the end point's check).
func (a *Attack) PerImage(steps, forwards int) float64 {
	return float64(steps)*a.Gradient.PerImage() + float64(forwards)*a.Forward.PerImage()
}

// CountAttack counts m's forward pass and its cross-entropy input-gradient graph
// (autodiff.Build, as attacks build it) at the batch size.
func CountAttack(ctx context.Context, rt *inference.Runtime, m *onnx.ModelProto, batch int64) (*Attack, error) {
	fwd, err := Count(ctx, rt, m, batch)
	if err != nil {
		return nil, err
	}
	gm, err := autodiff.Build(rt, m, autodiff.Options{Loss: autodiff.CrossEntropy})
	if err != nil {
		return nil, fmt.Errorf("flops: gradient graph: %w", err)
	}
	grad, err := Count(ctx, rt, gm, batch)
	if err != nil {
		return nil, fmt.Errorf("flops: gradient graph: %w", err)
	}
	return &Attack{Forward: fwd, Gradient: grad}, nil
}
