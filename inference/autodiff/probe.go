package autodiff

import (
	"context"
	"fmt"
	"math/rand/v2"

	"google.golang.org/protobuf/proto"

	"gibbon/inference"
	"gibbon/inference/onnx"
)

// Probe batch sizes: a dimension that differs between the two runs follows the batch.
const (
	probeBatch1 = 1
	probeBatch2 = 2
)

// probeRequest asks the shape probe for more than shapes.
type probeRequest struct {
	// values are tensors (node outputs) whose values the rules need as constants
	// (Slice starts, Pad pads, Resize scales computed in the graph).
	values []string
	// nodes and inits are extra computations to run beside the model (the divisor
	// maps of AveragePool); outs are their outputs, read like values.
	nodes []*onnx.NodeProto
	inits []*onnx.TensorProto
	outs  []string
}

type probeResult struct {
	shape1 map[string][]int64 // at probeBatch1
	shape2 map[string][]int64 // at probeBatch2
	batch  map[string][]bool  // dims that change with the batch
	values map[string][]float64
}

// shape is the tensor's shape at probeBatch2, with batch-following dims as -1.
func (p *probeResult) shape(name string) []int64 {
	s := append([]int64(nil), p.shape2[name]...)
	for i, b := range p.batch[name] {
		if b {
			s[i] = -1
		}
	}
	return s
}

// probeTypes asks ORT for the element type of every node output: the model is loaded
// (not run) with every value exposed as an untyped output, which ORT's type inference
// fills in.
func probeTypes(rt *inference.Runtime, m *onnx.ModelProto) (map[string]bool, map[string]string, error) {
	pm := proto.Clone(m).(*onnx.ModelProto)
	g := pm.Graph
	g.Output = nil
	seen := map[string]bool{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			if o == "" || seen[o] {
				continue
			}
			seen[o] = true
			name := o
			g.Output = append(g.Output, &onnx.ValueInfoProto{Name: &name})
		}
	}
	data, err := onnx.Encode(pm)
	if err != nil {
		return nil, nil, fmt.Errorf("autodiff: encode model: %w", err)
	}
	// Probes run on the CPU whatever the runtime's provider: the same types, shapes
	// and values, without compiling GPU kernels for a graph that runs twice.
	s, err := rt.NewSessionOn(data, inference.EPCPU)
	if err != nil {
		return nil, nil, fmt.Errorf("autodiff: ONNX Runtime cannot load the model: %w", err)
	}
	defer s.Close()
	isFloat, types := map[string]bool{}, map[string]string{}
	for _, o := range s.Outputs() {
		isFloat[o.Name] = o.Float
		types[o.Name] = o.Type
	}
	for _, v := range g.Input {
		isFloat[v.GetName()] = elemType(v) == onnx.TensorProto_FLOAT
	}
	for _, t := range g.Initializer {
		isFloat[t.GetName()] = onnx.TensorProto_DataType(t.GetDataType()) == onnx.TensorProto_FLOAT
	}
	return isFloat, types, nil
}

// probeShapes runs the model at two batch sizes with Concat(Shape(T), [-1]) exposed for
// every value T (the -1 keeps 0-d shapes non-empty, which onnxruntime_go needs), plus
// the requested values. Values must agree at both batch sizes to be used as constants.
func probeShapes(rt *inference.Runtime, m *onnx.ModelProto, image string, imageShape []int64, req probeRequest) (*probeResult, error) {
	pm := proto.Clone(m).(*onnx.ModelProto)
	g := pm.Graph
	g.Output = nil
	b := onnx.BuilderOn(g, BuiltOpset)
	minus1 := b.Ints(-1)
	shapeOut := map[string]string{} // probe output -> tensor
	valueOut := map[string]string{}
	addOut := func(name string, et onnx.TensorProto_DataType) {
		t := int32(et)
		n := name
		g.Output = append(g.Output, &onnx.ValueInfoProto{Name: &n, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: &t}}}})
	}
	addShape := func(t string) {
		out := b.Op("Concat", []string{b.Op("Shape", []string{t}), minus1}, onnx.AttrInt("axis", 0))
		shapeOut[out] = t
		addOut(out, onnx.TensorProto_INT64)
	}
	addShape(image)
	seen := map[string]bool{"": true}
	for _, n := range m.Graph.Node {
		for _, o := range n.Output {
			if !seen[o] {
				seen[o] = true
				addShape(o)
			}
		}
	}
	g.Initializer = append(g.Initializer, req.inits...)
	g.Node = append(g.Node, req.nodes...)
	for _, v := range append(append([]string(nil), req.values...), req.outs...) {
		if _, dup := valueOut[v]; dup {
			continue
		}
		out := b.Op("Cast", []string{v}, onnx.AttrInt("to", int64(onnx.TensorProto_FLOAT)))
		valueOut[out] = v
		addOut(out, onnx.TensorProto_FLOAT)
	}
	data, err := onnx.Encode(pm)
	if err != nil {
		return nil, fmt.Errorf("autodiff: encode probe model: %w", err)
	}
	s, err := rt.NewSessionOn(data, inference.EPCPU)
	if err != nil {
		return nil, fmt.Errorf("autodiff: ONNX Runtime cannot load the shape probe: %w", err)
	}
	defer s.Close()

	pr := &probeResult{shape1: map[string][]int64{}, shape2: map[string][]int64{}, batch: map[string][]bool{}, values: map[string][]float64{}}
	var vals [2]map[string][]float64
	rng := rand.New(rand.NewPCG(1, 2))
	for run, bs := range []int64{probeBatch1, probeBatch2} {
		shape := append([]int64{bs}, imageShape[1:]...)
		x := inference.NewTensor(shape...)
		for i := range x.Data {
			x.Data[i] = rng.Float32()
		}
		out, err := s.RunValues(context.Background(), map[string]any{image: x})
		if err != nil {
			if run == 0 {
				return nil, fmt.Errorf("autodiff: run the model on a random input of shape %v: %w", shape, err)
			}
			return nil, fmt.Errorf("autodiff: the model fails at batch size %d (input %v): it must accept any batch size: %w", bs, shape, err)
		}
		vals[run] = map[string][]float64{}
		for name, v := range out {
			if t, ok := shapeOut[name]; ok {
				it, ok := v.(*inference.Int64Tensor)
				if !ok || len(it.Data) == 0 {
					return nil, fmt.Errorf("autodiff: shape probe of %q returned %T", t, v)
				}
				sh := append([]int64(nil), it.Data[:len(it.Data)-1]...)
				if run == 0 {
					pr.shape1[t] = sh
				} else {
					pr.shape2[t] = sh
				}
				continue
			}
			if t, ok := valueOut[name]; ok {
				ft, ok := v.(*inference.Tensor)
				if !ok {
					return nil, fmt.Errorf("autodiff: value probe of %q returned %T", t, v)
				}
				f := make([]float64, len(ft.Data))
				for i, x := range ft.Data {
					f[i] = float64(x)
				}
				vals[run][t] = f
			}
		}
	}
	for t, s2 := range pr.shape2 {
		s1 := pr.shape1[t]
		bm := make([]bool, len(s2))
		if len(s1) != len(s2) {
			return nil, fmt.Errorf("autodiff: the rank of %q changes with the batch size (%v at batch %d, %v at batch %d)", t, s1, probeBatch1, s2, probeBatch2)
		}
		for i := range s2 {
			bm[i] = s1[i] != s2[i]
		}
		pr.batch[t] = bm
	}
	for t, v2 := range vals[1] {
		v1 := vals[0][t]
		if len(v1) != len(v2) {
			continue
		}
		same := true
		for i := range v1 {
			if v1[i] != v2[i] {
				same = false
			}
		}
		if same {
			pr.values[t] = v2
		}
	}
	for _, t := range g.Initializer {
		if _, ok := pr.shape2[t.GetName()]; !ok {
			pr.shape1[t.GetName()] = append([]int64(nil), t.Dims...)
			pr.shape2[t.GetName()] = append([]int64(nil), t.Dims...)
			pr.batch[t.GetName()] = make([]bool, len(t.Dims))
		}
	}
	return pr, nil
}
