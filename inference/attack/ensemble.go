package attack

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"gibbon/inference"
	"gibbon/inference/onnx"
)

// NewEnsemble merges the members' graphs into one model whose logits are the mean of
// theirs, so an attack on it averages logits before the loss (the NIPS'17 winners'
// ensemble). To average losses instead, pass the members as separate surrogates.
// Members must take the same image shape and return the same number of classes; their
// opsets must agree, or all lie in 13–17 (whose ops Gibbon treats alike).
func NewEnsemble(ctx context.Context, rt *inference.Runtime, name string, members []*ONNXModel) (*ONNXModel, error) {
	if len(members) < 2 {
		return nil, fmt.Errorf("ensemble %s: needs at least two models", name)
	}
	first := members[0]
	for _, m := range members[1:] {
		if !sameShape(m.shape, first.shape) {
			return nil, fmt.Errorf("ensemble %s: %s takes images %v, %s takes %v", name, first.name, first.shape, m.name, m.shape)
		}
		if m.classes != first.classes {
			return nil, fmt.Errorf("ensemble %s: %s has %d classes, %s has %d", name, first.name, first.classes, m.name, m.classes)
		}
	}
	opsets, ir, err := mergeOpsets(members)
	if err != nil {
		return nil, fmt.Errorf("ensemble %s: %w", name, err)
	}
	const image = "image"
	b := onnx.NewBuilder(name)
	g := b.Graph()
	b.Input(image, first.shape...)
	var logits []string
	for k, m := range members {
		prefix := fmt.Sprintf("m%d/", k)
		src := proto.Clone(m.model.Graph).(*onnx.GraphProto)
		rename := func(s string) string {
			switch s {
			case "":
				return ""
			case m.input:
				return image
			}
			return prefix + s
		}
		for _, t := range src.Initializer {
			t.Name = proto.String(rename(t.GetName()))
			b.Reserve(t.GetName())
			g.Initializer = append(g.Initializer, t)
		}
		for _, n := range src.Node {
			for _, a := range n.Attribute {
				if a.G != nil || len(a.Graphs) > 0 {
					return nil, fmt.Errorf("ensemble %s: model %s uses control flow (%s), which cannot be merged: ensemble with averaged losses instead", name, m.name, n.GetOpType())
				}
			}
			for i, s := range n.Input {
				n.Input[i] = rename(s)
			}
			for i, s := range n.Output {
				n.Output[i] = rename(s)
				b.Reserve(n.Output[i])
			}
			n.Name = proto.String(prefix + n.GetName())
			g.Node = append(g.Node, n)
		}
		logits = append(logits, rename(src.Output[0].GetName()))
	}
	sum := b.Op("Sum", logits)
	b.Output("logits", b.Op("Mul", []string{sum, b.Scalar(1 / float32(len(members)))}), -1, int64(first.classes))
	merged := b.Model()
	merged.OpsetImport = opsets
	merged.IrVersion = proto.Int64(ir)
	return newFromPrepared(ctx, rt, name, merged, image, first.shape)
}

// mergeOpsets unions the members' opset imports.
func mergeOpsets(members []*ONNXModel) ([]*onnx.OperatorSetIdProto, int64, error) {
	versions := map[string]int64{}
	var order []string
	ir := int64(8)
	for _, m := range members {
		ir = max(ir, m.model.GetIrVersion())
		for _, o := range m.model.OpsetImport {
			d := o.GetDomain()
			if d == "ai.onnx" {
				d = ""
			}
			v, seen := versions[d]
			switch {
			case !seen:
				versions[d] = o.GetVersion()
				order = append(order, d)
			case v == o.GetVersion():
			case d == "" && min(v, o.GetVersion()) >= 13 && max(v, o.GetVersion()) <= 17:
				versions[d] = max(v, o.GetVersion())
			default:
				return nil, 0, fmt.Errorf("models import opset %q versions %d and %d: re-export them at one opset, or ensemble with averaged losses", d, v, o.GetVersion())
			}
		}
	}
	out := make([]*onnx.OperatorSetIdProto, len(order))
	for i, d := range order {
		out[i] = &onnx.OperatorSetIdProto{Domain: proto.String(d), Version: proto.Int64(versions[d])}
	}
	return out, ir, nil
}
