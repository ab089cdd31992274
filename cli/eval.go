package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"

	"gibbon/inference"
	"gibbon/inference/train"
	"gibbon/internal/progress"
)

func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr, "Usage: gibbon eval [flags] NAME   (clean and PGD accuracy of a model on the MNIST test set)")
	dir := fs.String("dir", "models", "folder holding manifest.json and the model")
	n := fs.Int("n", 10000, "test images to score (the first N)")
	eps := fs.Float64("eps", train.DefaultPGD.Eps, "PGD budget (L∞, pixels in [0,1])")
	step := fs.Float64("step", train.DefaultPGD.Step, "PGD step size")
	steps := fs.Int("steps", train.DefaultPGD.Steps, "PGD iterations (0: clean accuracy only)")
	seed := fs.Uint64("seed", 0, "seed of the random starts")
	threads := fs.Int("threads", 1, "ONNX Runtime intra-op threads")
	rf := addRuntimeFlags(fs)
	write := fs.Bool("write", true, "record the metrics in the manifest")
	name, err := parseOneArg(fs, args, "model name")
	if err != nil {
		return err
	}
	if *n < 1 || *n > 10000 || *steps < 0 || *threads < 1 {
		return usageError{"--n must be in [1,10000], --steps not negative, --threads at least 1"}
	}
	rt, err := rf.open(*threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	ev, err := train.Evaluate(ctx, rt, *dir, name, train.EvalOptions{N: *n, Seed: *seed, Progress: progress.New(stderr),
		PGD: train.PGDConfig{Eps: *eps, Step: *step, Steps: *steps, RandomStart: true}})
	if err != nil {
		return err
	}
	t := &table{}
	for _, k := range slices.Sorted(maps.Keys(ev.Metrics)) {
		t.add(name, k, fmt.Sprintf("%.2f%%", 100*ev.Metrics[k]))
	}
	if err := t.write(stdout); err != nil {
		return err
	}
	switch {
	case !*write:
		return nil
	case *seed != 0:
		fmt.Fprintln(stderr, "not recording: the manifest's metrics use seed 0")
		return nil
	}
	return inference.RecordMetrics(*dir, name, ev.SHA256, ev.Metrics)
}
