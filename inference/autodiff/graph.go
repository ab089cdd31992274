package autodiff

import (
	"fmt"

	"gibbon/inference/onnx"
)

// zeroGradOps have float outputs whose derivative is zero (or undefined) everywhere:
// no gradient flows through them.
var zeroGradOps = map[string]bool{
	"Shape": true, "Size": true, "ConstantOfShape": true, "EyeLike": true,
	"RandomNormalLike": true, "RandomUniformLike": true, "Multinomial": true,
	"Floor": true, "Ceil": true, "Round": true, "Sign": true,
	"ArgMax": true, "ArgMin": true, "NonZero": true, "OneHot": true,
	"Equal": true, "Greater": true, "Less": true, "GreaterOrEqual": true, "LessOrEqual": true,
	"IsNaN": true, "IsInf": true, "Not": true, "And": true, "Or": true, "Xor": true,
}

// nonDiffInput reports inputs that carry no gradient by definition even when float:
// sizes, scales, regions and ratios.
func nonDiffInput(n *onnx.NodeProto, i int) bool {
	if i == 0 {
		return false
	}
	switch n.GetOpType() {
	case "Resize", "Dropout", "Reshape", "Slice", "Split", "Squeeze", "Unsqueeze", "Expand",
		"ReduceSum", "ReduceMean", "Tile", "Gather", "Upsample":
		return true
	case "Pad":
		return i != 2
	}
	return false
}

func producers(g *onnx.GraphProto) map[string]*onnx.NodeProto {
	p := map[string]*onnx.NodeProto{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				p[o] = n
			}
		}
	}
	return p
}

// sortNodes puts the nodes in topological order (ONNX requires it, but not every
// writer complies) and rejects graphs that reference values nothing defines.
func sortNodes(g *onnx.GraphProto) error {
	defined := map[string]bool{"": true}
	for _, v := range g.Input {
		defined[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		defined[t.GetName()] = true
	}
	prod := producers(g)
	out := make([]*onnx.NodeProto, 0, len(g.Node))
	state := map[*onnx.NodeProto]int{} // 1 visiting, 2 done
	var visit func(n *onnx.NodeProto) error
	visit = func(n *onnx.NodeProto) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("autodiff: graph has a cycle through node %q (%s)", n.GetName(), n.GetOpType())
		case 2:
			return nil
		}
		state[n] = 1
		for _, in := range n.Input {
			if defined[in] {
				continue
			}
			p := prod[in]
			if p == nil {
				return fmt.Errorf("autodiff: node %q (%s) reads %q, which no input, initializer or node defines", n.GetName(), n.GetOpType(), in)
			}
			if err := visit(p); err != nil {
				return err
			}
		}
		state[n] = 2
		out = append(out, n)
		return nil
	}
	for _, n := range g.Node {
		if err := visit(n); err != nil {
			return err
		}
	}
	g.Node = out
	return nil
}

// constantValues returns the values of initializers and Constant nodes.
func constantValues(g *onnx.GraphProto) map[string][]float64 {
	vals := map[string][]float64{}
	for _, t := range g.Initializer {
		if v, err := onnx.TensorValues(t); err == nil {
			vals[t.GetName()] = v
		}
	}
	for _, n := range g.Node {
		if n.GetOpType() != "Constant" || n.GetDomain() != "" || len(n.Output) != 1 {
			continue
		}
		for _, a := range n.Attribute {
			switch a.GetName() {
			case "value":
				if v, err := onnx.TensorValues(a.T); err == nil {
					vals[n.Output[0]] = v
				}
			case "value_float":
				vals[n.Output[0]] = []float64{float64(a.GetF())}
			case "value_floats":
				v := make([]float64, len(a.Floats))
				for i, x := range a.Floats {
					v[i] = float64(x)
				}
				vals[n.Output[0]] = v
			case "value_int":
				vals[n.Output[0]] = []float64{float64(a.GetI())}
			case "value_ints":
				v := make([]float64, len(a.Ints))
				for i, x := range a.Ints {
					v[i] = float64(x)
				}
				vals[n.Output[0]] = v
			}
		}
	}
	return vals
}

// pruneDead drops nodes and initializers no graph output needs.
func pruneDead(g *onnx.GraphProto) {
	needed := map[string]bool{}
	for _, o := range g.Output {
		needed[o.GetName()] = true
	}
	var keep []*onnx.NodeProto
	for i := len(g.Node) - 1; i >= 0; i-- {
		n := g.Node[i]
		use := false
		for _, o := range n.Output {
			if needed[o] {
				use = true
			}
		}
		if !use {
			continue
		}
		keep = append(keep, n)
		for _, in := range n.Input {
			needed[in] = true
		}
	}
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	g.Node = keep
	var inits []*onnx.TensorProto
	for _, t := range g.Initializer {
		if needed[t.GetName()] {
			inits = append(inits, t)
		}
	}
	g.Initializer = inits
}

func usedNames(g *onnx.GraphProto) map[string]bool {
	used := map[string]bool{}
	for _, v := range g.Input {
		used[v.GetName()] = true
	}
	for _, v := range g.Output {
		used[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		used[t.GetName()] = true
	}
	for _, n := range g.Node {
		for _, s := range n.Input {
			used[s] = true
		}
		for _, s := range n.Output {
			used[s] = true
		}
	}
	delete(used, "")
	return used
}

func renameTensor(g *onnx.GraphProto, from, to string) {
	for _, n := range g.Node {
		for i, s := range n.Input {
			if s == from {
				n.Input[i] = to
			}
		}
		for i, s := range n.Output {
			if s == from {
				n.Output[i] = to
			}
		}
	}
	for _, t := range g.Initializer {
		if t.GetName() == from {
			t.Name = &to
		}
	}
	for _, v := range g.Output {
		if v.GetName() == from {
			v.Name = &to
		}
	}
}

// valueInfo declares a float tensor; negative dims are the dynamic batch "N".
func valueInfo(name string, shape []int64) *onnx.ValueInfoProto {
	dims := make([]*onnx.TensorShapeProto_Dimension, len(shape))
	for i, d := range shape {
		if d < 0 {
			dims[i] = &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: "N"}}
		} else {
			dims[i] = &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d}}
		}
	}
	et := int32(onnx.TensorProto_FLOAT)
	return &onnx.ValueInfoProto{Name: &name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
		ElemType: &et, Shape: &onnx.TensorShapeProto{Dim: dims}}}}}
}

func elemType(v *onnx.ValueInfoProto) onnx.TensorProto_DataType {
	return onnx.TensorProto_DataType(v.GetType().GetTensorType().GetElemType())
}

func valueNames(vs []*onnx.ValueInfoProto) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.GetName()
	}
	return out
}

func describeInputs(vs []*onnx.ValueInfoProto) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		shape := onnx.ShapeString(v)
		if shape == "" {
			shape = "[]"
		}
		out[i] = fmt.Sprintf("%s %s%s", v.GetName(), elemType(v), shape)
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// Attribute readers with ONNX defaults.

func attrInt(n *onnx.NodeProto, name string, def int64) int64 {
	if a := onnx.Attr(n, name); a != nil {
		return a.GetI()
	}
	return def
}

func attrFloat(n *onnx.NodeProto, name string, def float32) float32 {
	if a := onnx.Attr(n, name); a != nil {
		return a.GetF()
	}
	return def
}

func attrInts(n *onnx.NodeProto, name string) []int64 {
	if a := onnx.Attr(n, name); a != nil {
		return append([]int64(nil), a.Ints...)
	}
	return nil
}

func attrString(n *onnx.NodeProto, name, def string) string {
	if a := onnx.Attr(n, name); a != nil {
		return string(a.S)
	}
	return def
}

func input(n *onnx.NodeProto, i int) string {
	if i < len(n.Input) {
		return n.Input[i]
	}
	return ""
}
