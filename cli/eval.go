package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/train"
	"gibbon/inference/zoo"
	"gibbon/internal/progress"
)

func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr, "Usage: gibbon eval [flags] NAME   (clean and PGD accuracy of a model on the MNIST test set)",
		"       gibbon eval --attack autoattack [--n N] [--eps E] NAME   (robust accuracy under AutoAttack, stage by stage)")
	dir := fs.String("dir", "models", "folder holding manifest.json and the model")
	n := fs.Int("n", 10000, "test images to score (the first N)")
	method := fs.String("attack", "pgd", "pgd, or autoattack (standard version: APGD-CE, APGD-T, FAB-T, Square)")
	batch := fs.Int("batch", train.EvalBatch, "autoattack: digits per batch (batch b is seeded seed + b)")
	workers := fs.Int("workers", 1, "autoattack: batches attacked at once, each on one thread (the verdict is the same for any number; use the cores you can spare)")
	eps := fs.Float64("eps", train.DefaultPGD.Eps, "attack budget (L∞, pixels in [0,1])")
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
	switch *method {
	case "pgd":
	case "autoattack":
		if flagGiven(fs, "step") || flagGiven(fs, "steps") || *batch < 1 {
			return usageError{"autoattack is parameter-free (no --step or --steps) and needs --batch of at least 1"}
		}
		if *workers < 1 || *workers > attack.MaxEvalWorkers {
			return usageError{fmt.Sprintf("--workers must be from 1 to %d", attack.MaxEvalWorkers)}
		}
	default:
		return usageError{fmt.Sprintf("--attack %q: choose pgd or autoattack", *method)}
	}
	rt, err := rf.open(*threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	if *method == "autoattack" {
		return evalAutoAttack(ctx, rt, *dir, name, attack.MNISTOptions{N: *n, Batch: *batch, Eps: *eps, Seed: int64(*seed), Workers: *workers}, *write, stdout, stderr)
	}
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

// evalAutoAttack scores a model under AutoAttack, prints each stage, and records the
// robust accuracy in the manifest (seed 0) under a name that holds ε and n.
func evalAutoAttack(ctx context.Context, rt *inference.Runtime, dir, name string, opts attack.MNISTOptions, write bool, stdout, stderr io.Writer) error {
	p := progress.New(stderr)
	p.Begin("AutoAttack", 0, opts.N)
	opts.Progress = func(done, robust int) {
		p.Update(done, fmt.Sprintf("robust %.2f%%", 100*float64(robust)/float64(done)))
	}
	z := zoo.Open(rt, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	defer z.Close()
	entry, ok := z.Entry(name)
	if !ok || entry.Task != inference.TaskClassifier {
		p.End()
		return usageError{fmt.Sprintf("no classifier %q in %s", name, dir)}
	}
	m, err := z.Get(ctx, name)
	if err != nil {
		p.End()
		return err
	}
	ev, err := attack.EvaluateMNIST(ctx, attack.Model{Name: name, Net: m.Net()}, entry.Input, opts)
	p.End()
	if err != nil {
		return err
	}
	c := ev.Config
	fmt.Fprintf(stdout, "%s under AutoAttack (%s), ε %s, first %d test digits, seed %d, batches of %d, %d at once\n", name,
		describeSteps(c), inference.EpsOn(c.Eps, c.Range).String(), ev.N, opts.Seed, ev.Batch, ev.Workers)
	fmt.Fprintf(stdout, "clean %.2f%%, robust %.2f%%; %.1f s (%.3f s per digit), %.0f forward + %.0f backward passes per digit\n",
		100*ev.Clean, 100*ev.Robust, ev.Wall.Seconds(), ev.Wall.Seconds()/float64(ev.N), float64(ev.Forward)/float64(ev.N), float64(ev.Backward)/float64(ev.N))
	printStages(stdout, ev.Stages, ev.N, ev.Note)
	metric := train.AutoAttackMetric(opts.Eps, ev.N)
	fmt.Fprintf(stdout, "%s %s %.2f%%\n", name, metric, 100*ev.Robust)
	switch {
	case !write:
		return nil
	case opts.Seed != 0:
		fmt.Fprintln(stderr, "not recording: the manifest's metrics use seed 0")
		return nil
	}
	return inference.RecordMetrics(dir, name, entry.SHA256, map[string]float64{metric: ev.Robust})
}
