package zoo

import (
	"errors"
	"fmt"
	"strings"

	"gibbon/inference"
	"gibbon/inference/onnx"
)

// checkGraph compares the manifest's input contract with the graph's declared
// inputs and outputs: one float image input of the contract's shape, one float
// output.
func checkGraph(m *onnx.ModelProto, c inference.InputContract) error {
	if m.Graph == nil || len(m.Graph.Node) == 0 {
		return errors.New("ONNX Runtime cannot load it: the file has no graph")
	}
	g := m.Graph
	inits := map[string]bool{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = true
	}
	var ins []*onnx.ValueInfoProto
	for _, v := range g.Input {
		if !inits[v.GetName()] {
			ins = append(ins, v)
		}
	}
	var in *onnx.ValueInfoProto
	switch {
	case c.Name != "":
		for _, v := range ins {
			if v.GetName() == c.Name {
				in = v
			}
		}
		if in == nil {
			return fmt.Errorf("the manifest's input %q is not a graph input (the graph has %s)", c.Name, ioNames(ins))
		}
	case len(ins) == 1:
		in = ins[0]
	default:
		return fmt.Errorf("the graph has inputs %s: name the image input in the manifest", ioNames(ins))
	}
	if len(ins) != 1 {
		return fmt.Errorf("the graph has inputs %s; Gibbon feeds one image input", ioNames(ins))
	}
	if !isFloat(in) {
		return fmt.Errorf("input %q is not float32; Gibbon feeds float32 images", in.GetName())
	}
	want := c.Shape()
	if got := dims(in); !shapeFits(got, want) {
		return fmt.Errorf("input %q has shape %s, the manifest's contract (%s, %d channel(s), %d×%d) means %s",
			in.GetName(), dimsString(got), strings.ToUpper(c.Layout), c.Channels, c.Width, c.Height, dimsString(want))
	}
	if len(g.Output) == 0 {
		return errors.New("the graph has no outputs")
	}
	if len(g.Output) > 1 {
		return fmt.Errorf("the graph has outputs %s; Gibbon reads one", ioNames(g.Output))
	}
	if !isFloat(g.Output[0]) {
		return fmt.Errorf("output %q is not float32; Gibbon reads float32", g.Output[0].GetName())
	}
	return nil
}

func isFloat(v *onnx.ValueInfoProto) bool {
	tt := v.GetType().GetTensorType()
	// An output may leave its type to inference; ONNX Runtime checks it then.
	return tt == nil || tt.ElemType == nil || onnx.TensorProto_DataType(tt.GetElemType()) == onnx.TensorProto_FLOAT
}

// dims is a value's declared shape, −1 for a dynamic dimension (nil: undeclared).
func dims(v *onnx.ValueInfoProto) []int64 {
	sh := v.GetType().GetTensorType().GetShape()
	if sh == nil {
		return nil
	}
	var out []int64
	for _, d := range sh.GetDim() {
		if d.GetDimValue() > 0 {
			out = append(out, d.GetDimValue())
		} else {
			out = append(out, -1)
		}
	}
	return out
}

// shapeFits reports whether a graph shape (−1 = dynamic, nil = undeclared) accepts want.
func shapeFits(graph, want []int64) bool {
	if graph == nil {
		return true
	}
	if len(graph) != len(want) {
		return false
	}
	for i := range graph {
		if graph[i] >= 0 && graph[i] != want[i] {
			return false
		}
	}
	return true
}

func ioNames(vs []*onnx.ValueInfoProto) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = fmt.Sprintf("%q %s", v.GetName(), dimsString(dims(v)))
	}
	return strings.Join(names, ", ")
}

func dimsString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "N"
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// imageName is the image input's name: the contract's, or the graph's only input.
func imageName(m *onnx.ModelProto, c inference.InputContract) string {
	if c.Name != "" {
		return c.Name
	}
	inits := map[string]bool{}
	for _, t := range m.Graph.Initializer {
		inits[t.GetName()] = true
	}
	for _, v := range m.Graph.Input {
		if !inits[v.GetName()] {
			return v.GetName()
		}
	}
	return ""
}
