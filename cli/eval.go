package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/train"
)

func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr,
		"Usage: gibbon eval [flags] NAME   (clean and PGD accuracy of a model on the MNIST test set)")
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
	pgd := train.PGDConfig{Eps: *eps, Step: *step, Steps: *steps, RandomStart: true}
	man, err := train.ReadManifest(*dir)
	if err != nil {
		return err
	}
	entry, err := train.FindEntry(man, name)
	if err != nil {
		return usageError{fmt.Sprintf("%v (in %s)", err, *dir)}
	}
	model, err := train.ReadModelFile(*dir, entry)
	if err != nil {
		return err
	}
	test, err := mnist.LoadTest(ctx)
	if err != nil {
		return err
	}
	test = test.Subset(*n)
	rt, err := inference.OpenRuntime(rf.config(*threads))
	if err != nil {
		return err
	}
	defer rt.Close()
	ev, err := train.NewEvaluator(rt, model)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer ev.Close()

	p := train.NewProgress(stderr)
	metrics := map[string]float64{}
	acc, err := ev.Accuracy(ctx, test, train.EvalBatch, p)
	if err != nil {
		return err
	}
	metrics[train.CleanMetric(test.Len())] = acc
	if test.Len() > train.CleanSubset {
		if metrics[train.CleanMetric(train.CleanSubset)], err = ev.Accuracy(ctx, test.Subset(train.CleanSubset), train.EvalBatch, nil); err != nil {
			return err
		}
	}
	if *steps > 0 {
		rob, err := ev.PGDAccuracy(ctx, test, pgd, *seed, train.EvalBatch, p)
		if err != nil {
			return err
		}
		metrics[train.PGDMetric(pgd, test.Len())] = rob
		if test.Len() > train.PGDSubset && *seed == 0 {
			if metrics[train.PGDMetric(pgd, train.PGDSubset)], err = ev.PGDAccuracy(ctx, test.Subset(train.PGDSubset), pgd, *seed, train.EvalBatch, nil); err != nil {
				return err
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(metrics)) {
		fmt.Fprintf(stdout, "%s %-40s %.2f%%\n", name, k, 100*metrics[k])
	}
	if !*write {
		return nil
	}
	if *seed != 0 {
		fmt.Fprintln(stderr, "not recording: the manifest's metrics use seed 0")
		return nil
	}
	return train.RecordMetrics(*dir, name, entry.SHA256, metrics)
}
