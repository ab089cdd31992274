package train

import (
	"context"
	"fmt"
	"strings"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
)

// Names the gradient graphs use (see inference/autodiff).
const (
	labelInput  = "label_weights"
	lossOutput  = "loss"
	inputGrad   = "input_grad"
	gradPrefix  = "grad_"
	logitOutput = arch.Output
)

// gradGraph is a session on a gradient graph. With params, the weights are graph inputs
// fed from the params' current values at each run.
type gradGraph struct {
	sess   *inference.Session
	params []*Param
}

// newGradGraph differentiates a forward model: with respect to params (each becomes an
// input) when params is non-empty, and with respect to the image when withInput. With
// both, only the image gradient is computed (params are inputs so that an attack runs
// at the weights being trained).
func newGradGraph(rt *inference.Runtime, fwd *onnx.ModelProto, params []*Param, withInput bool) (*gradGraph, error) {
	names := make([]string, len(params))
	for i, p := range params {
		names[i] = p.Name
	}
	g, err := autodiff.Build(rt, fwd, autodiff.Options{
		Input:       arch.Input,
		Loss:        autodiff.CrossEntropy,
		Params:      names,
		NoInputGrad: !withInput,
	})
	if err != nil {
		return nil, fmt.Errorf("gradient graph: %w", err)
	}
	if withInput && len(params) > 0 {
		// An attack at the current weights needs the params as inputs but not their
		// gradients: dropping those outputs lets ONNX Runtime prune their nodes.
		outs := g.Graph.Output[:0]
		for _, o := range g.Graph.Output {
			if !strings.HasPrefix(o.GetName(), gradPrefix) {
				outs = append(outs, o)
			}
		}
		g.Graph.Output = outs
	}
	data, err := onnx.Encode(g)
	if err != nil {
		return nil, err
	}
	s, err := rt.NewSession(data)
	if err != nil {
		return nil, fmt.Errorf("gradient graph: %w", err)
	}
	return &gradGraph{sess: s, params: params}, nil
}

func (g *gradGraph) run(ctx context.Context, x *inference.Tensor, labels []uint8) (map[string]*inference.Tensor, error) {
	return g.runWeights(ctx, x, oneHot(labels))
}

// runWeights runs the graph with label weights w [N,10] (one-hot or soft): the loss of
// image i is −Σ_c w_ic·log softmax(z_i)_c.
func (g *gradGraph) runWeights(ctx context.Context, x, w *inference.Tensor) (map[string]*inference.Tensor, error) {
	feed := make(map[string]*inference.Tensor, 2+len(g.params))
	feed[arch.Input] = x
	feed[labelInput] = w
	for _, p := range g.params {
		feed[p.Name] = &inference.Tensor{Shape: p.Shape, Data: p.Data}
	}
	out, err := g.sess.Run(ctx, feed)
	if err != nil {
		return nil, err
	}
	if out[logitOutput] == nil || out[lossOutput] == nil {
		return nil, fmt.Errorf("gradient graph lacks %q or %q outputs", logitOutput, lossOutput)
	}
	return out, nil
}

// inputGradFunc adapts the graph to the attack loop.
func (g *gradGraph) inputGradFunc() gradFunc {
	return func(ctx context.Context, x *inference.Tensor, labels []uint8) (*inference.Tensor, *inference.Tensor, error) {
		out, err := g.run(ctx, x, labels)
		if err != nil {
			return nil, nil, err
		}
		gr := out[inputGrad]
		if gr == nil || len(gr.Data) != len(x.Data) {
			return nil, nil, fmt.Errorf("gradient graph gives no input gradient of the image's size")
		}
		return out[logitOutput], gr, nil
	}
}

func (g *gradGraph) close() {
	if g != nil {
		g.sess.Close()
	}
}

// checkClassifier verifies a forward model's contract: input image [N,1,28,28], output
// logits [N,10].
func checkClassifier(s *inference.Session) error {
	ins, outs := s.Inputs(), s.Outputs()
	if len(ins) != 1 || ins[0].Name != arch.Input || !ins[0].Float {
		return fmt.Errorf("model must take one float input %q, has %v", arch.Input, ins)
	}
	if sh := ins[0].Shape; len(sh) != 4 || sh[1] != 1 || sh[2] != mnist.Rows || sh[3] != mnist.Cols {
		return fmt.Errorf("model input %q has shape %v, want [N,1,28,28]", arch.Input, sh)
	}
	found := false
	for _, o := range outs {
		if o.Name == logitOutput {
			found = true
			if len(o.Shape) != 2 || o.Shape[1] != mnist.Classes {
				return fmt.Errorf("model output %q has shape %v, want [N,10]", logitOutput, o.Shape)
			}
		}
	}
	if !found {
		return fmt.Errorf("model has no output %q", logitOutput)
	}
	return nil
}
