package train

import (
	"fmt"

	"gibbon/inference/onnx"
	"google.golang.org/protobuf/proto"
)

// Param is one trainable tensor (a graph initializer while the model is saved, a graph
// input of the same name in the gradient graph).
type Param struct {
	Name  string
	Shape []int64
	Data  []float32
}

// decays reports whether weight decay applies: weights (rank >= 2), not biases.
func (p *Param) decays() bool { return len(p.Shape) >= 2 }

// ParamsOf copies the named float initializers out of a model, in the given order.
func ParamsOf(m *onnx.ModelProto, names []string) ([]*Param, error) {
	out := make([]*Param, 0, len(names))
	for _, n := range names {
		t := onnx.Initializer(m.GetGraph(), n)
		if t == nil {
			return nil, fmt.Errorf("model has no initializer %q", n)
		}
		data, err := onnx.FloatData(t)
		if err != nil {
			return nil, err
		}
		out = append(out, &Param{Name: n, Shape: append([]int64(nil), t.Dims...), Data: data})
	}
	return out, nil
}

// Bake returns a copy of the model with the parameters' current values as initializers.
func Bake(m *onnx.ModelProto, params []*Param) (*onnx.ModelProto, error) {
	c := proto.Clone(m).(*onnx.ModelProto)
	for _, p := range params {
		t := onnx.Initializer(c.GetGraph(), p.Name)
		if t == nil {
			return nil, fmt.Errorf("model has no initializer %q", p.Name)
		}
		onnx.SetFloatData(t, p.Data)
	}
	return c, nil
}

func countParams(ps []*Param) int {
	n := 0
	for _, p := range ps {
		n += len(p.Data)
	}
	return n
}
