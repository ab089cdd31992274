package onnx

import (
	"fmt"
)

// BatchDim is the symbolic name MakeBatchDynamic gives the batch dimension.
const BatchDim = "N"

// MakeBatchDynamic turns a graph exported at a fixed batch of 1 into one that takes any
// batch, where the graph allows: graph inputs and outputs whose first dimension is 1
// get the symbolic dimension N, and every Reshape applied to a value computed from a
// graph input whose constant target shape starts with 1 gets -1 there (0, "copy the
// batch", when the shape already holds a -1). Declared intermediate shapes are
// dropped (ORT infers them again). It reports whether it changed anything. Whether the
// result really runs at batch 2 depends on ops it does not rewrite (a constant Expand,
// say), so callers check by running it.
func MakeBatchDynamic(m *ModelProto) (bool, error) {
	g := m.GetGraph()
	if g == nil {
		return false, fmt.Errorf("batch: model has no graph")
	}
	inits := map[string]*TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
	}
	changed := false
	for _, v := range g.Input {
		if inits[v.GetName()] == nil && setBatchDim(v) {
			changed = true
		}
	}
	if !changed {
		return false, nil
	}
	for _, v := range g.Output {
		setBatchDim(v)
	}
	g.ValueInfo = nil

	// Values that depend on a graph input carry the batch.
	batched := map[string]bool{}
	for _, v := range g.Input {
		if inits[v.GetName()] == nil {
			batched[v.GetName()] = true
		}
	}
	constNodes := map[string]*NodeProto{}
	uses := map[string]int{}
	for _, n := range g.Node {
		for _, in := range n.Input {
			uses[in]++
			if batched[in] {
				for _, o := range n.Output {
					batched[o] = true
				}
			}
		}
		if n.GetOpType() == "Constant" && isDefaultDomain(n.GetDomain()) && len(n.Output) == 1 {
			constNodes[n.Output[0]] = n
		}
	}
	names := map[string]bool{}
	for _, t := range g.Initializer {
		names[t.GetName()] = true
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			names[o] = true
		}
	}
	seq := 0
	for _, n := range g.Node {
		if n.GetOpType() != "Reshape" || !isDefaultDomain(n.GetDomain()) || len(n.Input) < 2 || !batched[n.Input[0]] {
			continue
		}
		var t *TensorProto
		if init := inits[n.Input[1]]; init != nil {
			t = init
		} else if c := constNodes[n.Input[1]]; c != nil {
			if a := Attr(c, "value"); a != nil {
				t = a.GetT()
			}
		}
		if t == nil || t.GetDataType() != int32(TensorProto_INT64) {
			continue
		}
		shape, err := Int64Data(t)
		if err != nil || len(shape) == 0 || shape[0] != 1 {
			continue
		}
		first := int64(-1)
		for _, d := range shape[1:] {
			if d == -1 {
				first = 0
			}
		}
		if a := Attr(n, "allowzero"); first == 0 && a != nil && a.GetI() == 1 {
			continue
		}
		shape[0] = first
		// A new constant per Reshape: the old one may feed other nodes.
		var name string
		for {
			seq++
			name = fmt.Sprintf("%s__batch%d", n.Input[1], seq)
			if !names[name] {
				break
			}
		}
		names[name] = true
		g.Initializer = append(g.Initializer, Int64Tensor(name, []int64{int64(len(shape))}, shape))
		n.Input[1] = name
	}
	return true, nil
}

// setBatchDim makes a first dimension of 1 symbolic.
func setBatchDim(v *ValueInfoProto) bool {
	s := v.GetType().GetTensorType().GetShape()
	if s == nil || len(s.Dim) == 0 {
		return false
	}
	d := s.Dim[0]
	if d.GetDimParam() != "" || d.GetDimValue() != 1 {
		return false
	}
	s.Dim[0] = &TensorShapeProto_Dimension{Value: &TensorShapeProto_Dimension_DimParam{DimParam: BatchDim}}
	return true
}

// SoftmaxLogits reports whether graph output `output` is a Softmax of some value, seen
// through ops that only move values (Identity, Reshape, Flatten, Squeeze, Unsqueeze,
// Dropout), and returns that value: the logits. Classifiers exported with their
// Softmax give probabilities; attacks differentiate from the logits.
func SoftmaxLogits(g *GraphProto, output string) (string, bool) {
	producer := map[string]*NodeProto{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			producer[o] = n
		}
	}
	v := output
	for range len(g.Node) + 1 {
		n := producer[v]
		if n == nil || !isDefaultDomain(n.GetDomain()) || len(n.Input) == 0 {
			return "", false
		}
		switch n.GetOpType() {
		case "Softmax":
			return n.Input[0], true
		case "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout":
			v = n.Input[0]
		default:
			return "", false
		}
	}
	return "", false
}

// FlattenOutput makes a graph output declared [N, K, 1, 1] (classifiers ending in a
// 1x1 convolution and global pooling) the usual [N, K] by appending a Flatten. It
// reports whether it did.
func FlattenOutput(g *GraphProto, output string) bool {
	for _, v := range g.Output {
		if v.GetName() != output {
			continue
		}
		s := v.GetType().GetTensorType().GetShape()
		if s == nil || len(s.Dim) != 4 || s.Dim[2].GetDimValue() != 1 || s.Dim[3].GetDimValue() != 1 {
			return false
		}
		inner := output + "__4d"
		for _, n := range g.Node {
			for i, o := range n.Output {
				if o == output {
					n.Output[i] = inner
				}
			}
			for i, in := range n.Input {
				if in == output {
					n.Input[i] = inner
				}
			}
		}
		op, name := "Flatten", output+"__flatten"
		g.Node = append(g.Node, &NodeProto{OpType: &op, Name: &name, Input: []string{inner},
			Output: []string{output}, Attribute: []*AttributeProto{AttrInt("axis", 1)}})
		s.Dim = s.Dim[:2]
		return true
	}
	return false
}
