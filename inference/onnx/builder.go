package onnx

import (
	"fmt"
)

// DefaultOpset is the opset Gibbon builds and differentiates at.
const DefaultOpset = 17

// Builder assembles a graph node by node. Names it invents are unique within the graph.
type Builder struct {
	g     *GraphProto
	opset int64
	seq   int
	names map[string]bool
}

// NewBuilder starts an empty graph.
func NewBuilder(name string) *Builder {
	return &Builder{g: &GraphProto{Name: &name}, opset: DefaultOpset, names: map[string]bool{}}
}

// SetOpset changes the opset the model imports.
func (b *Builder) SetOpset(v int64) { b.opset = v }

// Graph exposes the graph under construction (for edits the helpers do not cover).
func (b *Builder) Graph() *GraphProto { return b.g }

// Fresh returns an unused value name starting with prefix.
func (b *Builder) Fresh(prefix string) string {
	for {
		b.seq++
		n := fmt.Sprintf("%s_%d", prefix, b.seq)
		if !b.names[n] {
			b.names[n] = true
			return n
		}
	}
}

func (b *Builder) claim(name string) string {
	if b.names[name] {
		panic(fmt.Sprintf("onnx builder: value name %q used twice", name))
	}
	b.names[name] = true
	return name
}

// Dim is a tensor dimension: a size, or a symbolic name when Param is set.
func valueInfo(name string, elem TensorProto_DataType, shape []int64, params []string) *ValueInfoProto {
	dims := make([]*TensorShapeProto_Dimension, len(shape))
	for i, d := range shape {
		if d < 0 {
			p := "N"
			if i < len(params) && params[i] != "" {
				p = params[i]
			}
			dims[i] = &TensorShapeProto_Dimension{Value: &TensorShapeProto_Dimension_DimParam{DimParam: p}}
		} else {
			dims[i] = &TensorShapeProto_Dimension{Value: &TensorShapeProto_Dimension_DimValue{DimValue: d}}
		}
	}
	et := int32(elem)
	return &ValueInfoProto{Name: &name, Type: &TypeProto{Value: &TypeProto_TensorType{TensorType: &TypeProto_Tensor{
		ElemType: &et, Shape: &TensorShapeProto{Dim: dims}}}}}
}

// Input declares a float graph input; a negative dimension is dynamic (the batch "N").
func (b *Builder) Input(name string, shape ...int64) string {
	b.g.Input = append(b.g.Input, valueInfo(b.claim(name), TensorProto_FLOAT, shape, nil))
	return name
}

// InputInt64 declares an int64 graph input.
func (b *Builder) InputInt64(name string, shape ...int64) string {
	b.g.Input = append(b.g.Input, valueInfo(b.claim(name), TensorProto_INT64, shape, nil))
	return name
}

// Output marks value as a graph output called name (an Identity is added when they differ).
// shape may be nil (unknown rank is allowed by ORT for outputs).
func (b *Builder) Output(name, value string, shape ...int64) {
	if name != value {
		b.node("Identity", []string{value}, []string{b.claim(name)}, nil)
	}
	var vi *ValueInfoProto
	if shape == nil {
		et := int32(TensorProto_FLOAT)
		vi = &ValueInfoProto{Name: &name, Type: &TypeProto{Value: &TypeProto_TensorType{TensorType: &TypeProto_Tensor{ElemType: &et}}}}
	} else {
		vi = valueInfo(name, TensorProto_FLOAT, shape, nil)
	}
	b.g.Output = append(b.g.Output, vi)
}

// Init adds a float initializer (a weight) and returns its name.
func (b *Builder) Init(name string, shape []int64, data []float32) string {
	return b.initFloat(b.claim(name), shape, data)
}

func (b *Builder) initFloat(name string, shape []int64, data []float32) string {
	if len(data) != numel(shape) {
		panic(fmt.Sprintf("onnx builder: initializer %q shape %v needs %d values, got %d", name, shape, numel(shape), len(data)))
	}
	b.g.Initializer = append(b.g.Initializer, FloatTensor(name, shape, data))
	return name
}

// Const adds an anonymous float constant initializer.
func (b *Builder) Const(shape []int64, data ...float32) string {
	// Fresh has already reserved the name; Init would claim it a second time.
	return b.initFloat(b.Fresh("const"), shape, data)
}

// Scalar adds a 0-d float constant.
func (b *Builder) Scalar(v float32) string { return b.Const([]int64{}, v) }

// Ints adds a 1-d int64 constant (shapes, axes, pads).
func (b *Builder) Ints(vals ...int64) string {
	name := b.Fresh("ints") // Fresh reserves the name
	b.g.Initializer = append(b.g.Initializer, Int64Tensor(name, []int64{int64(len(vals))}, vals))
	return name
}

// Op adds a node with one output and returns the output's name.
func (b *Builder) Op(opType string, inputs []string, attrs ...*AttributeProto) string {
	return b.OpN(opType, inputs, 1, attrs...)[0]
}

// OpN adds a node with n outputs.
func (b *Builder) OpN(opType string, inputs []string, n int, attrs ...*AttributeProto) []string {
	outs := make([]string, n)
	for i := range outs {
		outs[i] = b.Fresh(opType)
	}
	b.node(opType, inputs, outs, attrs)
	return outs
}

// Node adds a node with caller-chosen output names ("" marks an omitted optional output).
func (b *Builder) Node(opType string, inputs, outputs []string, attrs ...*AttributeProto) {
	for _, o := range outputs {
		if o != "" {
			b.claim(o)
		}
	}
	b.node(opType, inputs, outputs, attrs)
}

func (b *Builder) node(opType string, inputs, outputs []string, attrs []*AttributeProto) {
	name := b.Fresh("n_" + opType)
	b.g.Node = append(b.g.Node, &NodeProto{OpType: &opType, Name: &name,
		Input: append([]string(nil), inputs...), Output: append([]string(nil), outputs...), Attribute: attrs})
}

// Model wraps the graph in a model that imports the builder's opset.
func (b *Builder) Model() *ModelProto {
	ir := int64(8)
	producer := "gibbon"
	domain := ""
	return &ModelProto{IrVersion: &ir, ProducerName: &producer, Graph: b.g,
		OpsetImport: []*OperatorSetIdProto{{Domain: &domain, Version: &b.opset}}}
}

// Bytes serializes the model.
func (b *Builder) Bytes() []byte {
	data, err := Encode(b.Model())
	if err != nil {
		panic(err)
	}
	return data
}

func numel(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// Attribute helpers.

func AttrInt(name string, v int64) *AttributeProto {
	t := AttributeProto_INT
	return &AttributeProto{Name: &name, Type: &t, I: &v}
}

func AttrInts(name string, v ...int64) *AttributeProto {
	t := AttributeProto_INTS
	return &AttributeProto{Name: &name, Type: &t, Ints: v}
}

func AttrFloat(name string, v float32) *AttributeProto {
	t := AttributeProto_FLOAT
	return &AttributeProto{Name: &name, Type: &t, F: &v}
}

func AttrFloats(name string, v ...float32) *AttributeProto {
	t := AttributeProto_FLOATS
	return &AttributeProto{Name: &name, Type: &t, Floats: v}
}

func AttrString(name, v string) *AttributeProto {
	t := AttributeProto_STRING
	return &AttributeProto{Name: &name, Type: &t, S: []byte(v)}
}

func AttrTensor(name string, v *TensorProto) *AttributeProto {
	t := AttributeProto_TENSOR
	return &AttributeProto{Name: &name, Type: &t, T: v}
}

// Attr finds a node attribute by name.
func Attr(n *NodeProto, name string) *AttributeProto {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}
