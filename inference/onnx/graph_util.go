package onnx

import (
	"fmt"
	"math"
	"strings"
)

// BuilderOn returns a builder that appends to an existing graph. Every name the graph
// already uses (values and node names) is reserved, so names the builder invents never
// collide with the model's own.
func BuilderOn(g *GraphProto, opset int64) *Builder {
	b := &Builder{g: g, opset: opset, names: map[string]bool{}}
	reserve := func(n string) {
		if n != "" {
			b.names[n] = true
		}
	}
	for _, v := range g.Input {
		reserve(v.GetName())
	}
	for _, v := range g.Output {
		reserve(v.GetName())
	}
	for _, v := range g.ValueInfo {
		reserve(v.GetName())
	}
	for _, t := range g.Initializer {
		reserve(t.GetName())
	}
	for _, n := range g.Node {
		reserve(n.GetName())
		for _, s := range n.Input {
			reserve(s)
		}
		for _, s := range n.Output {
			reserve(s)
		}
	}
	return b
}

// Reserve marks a value name as used without creating anything (for names the
// caller will create itself).
func (b *Builder) Reserve(name string) bool {
	if b.names[name] {
		return false
	}
	b.names[name] = true
	return true
}

// Used reports whether a value name is already taken in the graph.
func (b *Builder) Used(name string) bool { return b.names[name] }

// TensorValues returns any numeric tensor's values as float64 (float, double, the
// integer types and bool), whichever field holds them. Shape arithmetic and
// attribute-like inputs (axes, pads, scales) are read with it.
func TensorValues(t *TensorProto) ([]float64, error) {
	n := 1
	for _, d := range t.Dims {
		n *= int(d)
	}
	dt := TensorProto_DataType(t.GetDataType())
	raw := t.RawData
	out := make([]float64, n)
	switch dt {
	case TensorProto_FLOAT:
		v, err := FloatData(t)
		if err != nil {
			return nil, err
		}
		for i, x := range v {
			out[i] = float64(x)
		}
		return out, nil
	case TensorProto_INT64:
		v, err := Int64Data(t)
		if err != nil {
			return nil, err
		}
		for i, x := range v {
			out[i] = float64(x)
		}
		return out, nil
	case TensorProto_DOUBLE:
		if len(t.DoubleData) == n {
			copy(out, t.DoubleData)
			return out, nil
		}
		if len(raw) == 8*n {
			for i := range out {
				out[i] = math.Float64frombits(le64(raw[8*i:]))
			}
			return out, nil
		}
	case TensorProto_INT32, TensorProto_INT16, TensorProto_INT8, TensorProto_UINT8, TensorProto_UINT16, TensorProto_BOOL:
		if len(t.Int32Data) == n {
			for i, x := range t.Int32Data {
				out[i] = float64(x)
			}
			return out, nil
		}
		size := map[TensorProto_DataType]int{TensorProto_INT32: 4, TensorProto_INT16: 2, TensorProto_INT8: 1,
			TensorProto_UINT8: 1, TensorProto_UINT16: 2, TensorProto_BOOL: 1}[dt]
		if len(raw) == size*n {
			for i := range out {
				switch dt {
				case TensorProto_INT32:
					out[i] = float64(int32(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24))
				case TensorProto_INT16:
					out[i] = float64(int16(uint16(raw[2*i]) | uint16(raw[2*i+1])<<8))
				case TensorProto_UINT16:
					out[i] = float64(uint16(raw[2*i]) | uint16(raw[2*i+1])<<8)
				case TensorProto_INT8:
					out[i] = float64(int8(raw[i]))
				default:
					out[i] = float64(raw[i])
				}
			}
			return out, nil
		}
	default:
		return nil, fmt.Errorf("tensor %q: element type %s is not numeric", t.GetName(), dt)
	}
	return nil, fmt.Errorf("tensor %q: data does not hold %d %s values", t.GetName(), n, dt)
}

// DimString is one dimension of a shape as text: its value, its parameter's name
// ("N"), or "?" when the graph leaves it unknown.
func DimString(d *TensorShapeProto_Dimension) string {
	if p := d.GetDimParam(); p != "" {
		return p
	}
	if _, ok := d.GetValue().(*TensorShapeProto_Dimension_DimValue); ok {
		return fmt.Sprint(d.GetDimValue())
	}
	return "?"
}

// ShapeString is a tensor value's shape as text, "[N,1,28,28]"; "" when the graph
// gives no shape.
func ShapeString(v *ValueInfoProto) string {
	s := v.GetType().GetTensorType().GetShape()
	if s == nil {
		return ""
	}
	dims := make([]string, len(s.GetDim()))
	for i, d := range s.GetDim() {
		dims[i] = DimString(d)
	}
	return "[" + strings.Join(dims, ",") + "]"
}
