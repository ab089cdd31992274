package cli

import (
	"context"
	"fmt"
	"io"

	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
)

// cmdGrad writes the gradient model of a classifier so users can inspect it (Netron,
// onnx.checker) or run it themselves.
func cmdGrad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("grad", stderr,
		"Usage: gibbon grad MODEL.onnx -o OUT.onnx [--params a,b] [--loss ce|seed] [--input NAME] [--no-input-grad]",
		"Writes MODEL's gradient graph: inputs are the model's image plus label_weights [N,C]",
		"(--loss ce) or logit_seed [N,C] (--loss seed) and the --params; outputs are logits,",
		"loss [N], input_grad and grad_<param> (gradients of the loss summed over the batch).")
	out := fs.String("o", "", "where to write the gradient model (required)")
	params := fs.String("params", "", "comma-separated initializers to differentiate (they become inputs)")
	loss := fs.String("loss", "ce", "ce: softmax cross-entropy with label_weights; seed: sum(logit_seed*logits)")
	input := fs.String("input", "", "the image input to differentiate (default: the first float input)")
	noInputGrad := fs.Bool("no-input-grad", false, "leave out input_grad (training needs only the params)")
	rf := addRuntimeFlags(fs)
	// Flags may follow MODEL (gibbon grad model.onnx -o out.onnx).
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"grad needs exactly one MODEL.onnx (see gibbon grad -h)"}
	}
	if *out == "" {
		return usageError{"grad needs -o OUT.onnx"}
	}
	lossKind, err := autodiff.ParseLoss(*loss)
	if err != nil {
		return usageError{"--loss: " + err.Error()}
	}
	opts := autodiff.Options{Input: *input, NoInputGrad: *noInputGrad, Loss: lossKind, Params: splitList(*params)}
	m, err := onnx.Load(pos[0])
	if err != nil {
		return err
	}
	rt, err := rf.open(1)
	if err != nil {
		return err
	}
	defer rt.Close()
	gm, err := autodiff.Build(rt, m, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if err := onnx.Save(gm, *out); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d nodes (forward %d)\n", *out, len(gm.Graph.Node), len(m.Graph.Node))
	for _, v := range gm.Graph.Input {
		fmt.Fprintf(stdout, "  input  %s %s\n", v.GetName(), onnx.ShapeString(v))
	}
	for _, v := range gm.Graph.Output {
		fmt.Fprintf(stdout, "  output %s %s\n", v.GetName(), onnx.ShapeString(v))
	}
	return nil
}
