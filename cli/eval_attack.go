package cli

import (
	"context"
	"fmt"
	"io"

	"gibbon/inference"
	"gibbon/inference/attacknet"
	"gibbon/internal/progress"
)

type evalAttackOptions struct {
	n, batch  int
	baselines bool
	write     bool
	seed      int64
	out       *outputFlags
}

func cmdEvalAttack(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval-attack", stderr,
		"Usage: gibbon eval-attack [flags] NAME",
		"Scores an attack network on the MNIST test set: success per ε head on the classifiers it was",
		"trained against, on the others (transfer) and on the robust one, beside random noise, PGD-10 and",
		"MI-FGSM at the same ε on the same images, and its speed against PGD-10. Prints markdown tables.")
	o := evalAttackOptions{out: addOutputFlags(fs, false)}
	dir := fs.String("dir", "models", "folder holding manifest.json, the network and the classifiers")
	fs.IntVar(&o.n, "n", 10000, "test images (the first N)")
	fs.IntVar(&o.batch, "batch", 100, "images per pass, for every attack")
	fs.BoolVar(&o.baselines, "baselines", true, "also run noise, PGD-10 and MI-FGSM (slow: about 20 passes per image and ε)")
	fs.Int64Var(&o.seed, "seed", 0, "seed of the baselines' random starts and noise")
	fs.BoolVar(&o.write, "write", true, "record the results in the network's manifest entry (seed 0 only; full results with --n 10000 and baselines, else the first-500 subset numbers only)")
	threads := fs.Int("threads", 1, "ONNX Runtime intra-op threads")
	rf := addRuntimeFlags(fs)
	name, err := parseOneArg(fs, args, "attack network name")
	if err != nil {
		return err
	}
	if o.n < 1 || o.n > 10000 || o.batch < 1 || *threads < 1 {
		return usageError{"--n must be in [1,10000], --batch and --threads at least 1"}
	}
	rt, err := rf.open(*threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	return evalAttack(ctx, rt, *dir, name, o, stdout, stderr)
}

// evalAttack scores network name of dir's manifest, prints the result and records it.
func evalAttack(ctx context.Context, rt *inference.Runtime, dir, name string, o evalAttackOptions, stdout, stderr io.Writer) error {
	record := o.write && o.seed == 0
	s, err := attacknet.Score(ctx, rt, dir, name, attacknet.ScoreOptions{N: o.n, Batch: o.batch, Baselines: o.baselines,
		Seed: o.seed, Metrics: record, Progress: progress.New(stderr), Log: stderr})
	if err != nil {
		return err
	}
	if err := o.out.write(stdout, s.Result, nil, s.Markdown); err != nil {
		return err
	}
	switch {
	case !o.write:
		return nil
	case o.seed != 0:
		fmt.Fprintln(stderr, "not recording: the manifest's numbers use seed 0")
		return nil
	case o.n != 10000 || !o.baselines:
		fmt.Fprintf(stderr, "recording only the first-%d subset numbers (full results need --n 10000 with baselines)\n", attacknet.CheckSubset)
	}
	return inference.RecordMetrics(dir, name, s.SHA256, s.Metrics)
}
