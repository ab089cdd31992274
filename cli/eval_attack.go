package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/attacknet"
	"gibbon/inference/mnist"
	"gibbon/inference/train"
)

type evalAttackOptions struct {
	n, batch  int
	baselines bool
	write     bool
	out       *outputFlags
	seed      int64
}

func cmdEvalAttack(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval-attack", stderr,
		"Usage: gibbon eval-attack [flags] NAME",
		"Scores an attack network on the MNIST test set: success per ε head on the classifiers it was",
		"trained against, on the others (transfer) and on the robust one, beside random noise, PGD-10 and",
		"MI-FGSM at the same ε on the same images, and its speed against PGD-10. Prints markdown tables.")
	var o evalAttackOptions
	dir := fs.String("dir", "models", "folder holding manifest.json, the network and the classifiers")
	fs.IntVar(&o.n, "n", 10000, "test images (the first N)")
	fs.IntVar(&o.batch, "batch", 100, "images per pass, for every attack")
	fs.BoolVar(&o.baselines, "baselines", true, "also run noise, PGD-10 and MI-FGSM (slow: about 20 passes per image and ε)")
	fs.Int64Var(&o.seed, "seed", 0, "seed of the baselines' random starts and noise")
	fs.BoolVar(&o.write, "write", true, "record the results in the network's manifest entry (seed 0 only; full results with --n 10000 and baselines, else the first-500 subset numbers only)")
	o.out = addOutputFlags(fs, false)
	threads := fs.Int("threads", 1, "ONNX Runtime intra-op threads")
	rf := addRuntimeFlags(fs)
	name, err := parseOneArg(fs, args, "attack network name")
	if err != nil {
		return err
	}
	if o.n < 1 || o.n > 10000 || o.batch < 1 || *threads < 1 {
		return usageError{"--n must be in [1,10000], --batch and --threads at least 1"}
	}
	rt, err := inference.OpenRuntime(rf.config(*threads))
	if err != nil {
		return err
	}
	defer rt.Close()
	return evalAttack(ctx, rt, *dir, name, o, stdout, stderr)
}

// evalAttack scores network name of dir's manifest against every classifier there
// that takes the same images.
func evalAttack(ctx context.Context, rt *inference.Runtime, dir, name string, o evalAttackOptions, stdout, stderr io.Writer) error {
	man, err := train.ReadManifest(dir)
	if err != nil {
		return err
	}
	entry, err := train.FindEntry(man, name)
	if err != nil {
		return usageError{fmt.Sprintf("%v (in %s)", err, dir)}
	}
	if entry.Task != inference.TaskAttackNetwork {
		return usageError{fmt.Sprintf("%s is a %s, not an attack network", name, entry.Task)}
	}
	c := entry.Input
	if c.Channels != 1 || c.Height != mnist.Rows || c.Width != mnist.Cols {
		return usageError{fmt.Sprintf("%s takes %s; eval-attack scores on the MNIST test set (28×28 gray)", name, describeInput(c))}
	}
	src := os.DirFS(dir)
	net, err := attack.LoadNetwork(ctx, rt, src, *entry)
	if err != nil {
		return err
	}
	defer net.Close()
	isTarget := map[string]bool{}
	for _, t := range entry.Attack.Targets {
		isTarget[t] = true
	}
	var judges []attacknet.Judge
	defer func() {
		for _, j := range judges {
			j.Net.Close()
		}
	}()
	// Targets first, then the others, in manifest order.
	for pass := range 2 {
		for _, e := range man.Models {
			if e.Task != inference.TaskClassifier || isTarget[e.Name] != (pass == 0) {
				continue
			}
			if !sameInputs(e.Input.Unnormalized(), c) {
				fmt.Fprintf(stderr, "not judging on %s: it takes %s, the network %s\n", e.Name, describeInput(e.Input), describeInput(c))
				continue
			}
			m, err := attack.LoadModel(ctx, rt, src, e)
			if err != nil {
				return err
			}
			role := attacknet.RoleHeldOut
			switch {
			case isTarget[e.Name]:
				role = attacknet.RoleTarget
			case e.Robust:
				role = attacknet.RoleRobust
			}
			judges = append(judges, attacknet.Judge{Name: e.Name, Role: role, Net: m})
		}
	}
	for _, t := range entry.Attack.Targets {
		found := false
		for _, j := range judges {
			found = found || j.Name == t
		}
		if !found {
			return fmt.Errorf("%s was trained against %s, which %s does not list (or takes other images)", name, t, dir)
		}
	}
	test, err := mnist.LoadTest(ctx)
	if err != nil {
		return err
	}
	set := test.Subset(o.n)
	rng := c.PixelRange()
	x := inference.NewTensor(append([]int64{int64(set.Len())}, c.Shape()[1:]...)...)
	for i, v := range set.Images {
		x.Data[i] = rng[0] + v*(rng[1]-rng[0])
	}
	labels := make([]int, set.Len())
	for i, l := range set.Labels {
		labels[i] = int(l)
	}
	fmt.Fprintf(stderr, "evaluating %s on %d MNIST test images against %d classifiers%s\n", name, set.Len(), len(judges),
		map[bool]string{true: ", with noise, PGD-10 and MI-FGSM baselines", false: ""}[o.baselines])
	res, err := attacknet.Evaluate(ctx, net, judges, x, labels, attacknet.EvalOptions{Batch: o.batch, Baselines: o.baselines,
		Seed: o.seed, Layout: c.Layout, Progress: train.NewProgress(stderr)})
	if err != nil {
		return err
	}
	if err := o.out.write(stdout, res, nil, res.Markdown); err != nil {
		return err
	}
	if !o.write {
		return nil
	}
	if o.seed != 0 {
		fmt.Fprintln(stderr, "not recording: the manifest's numbers use seed 0")
		return nil
	}
	metrics := map[string]float64{}
	if o.n == 10000 && o.baselines {
		maps.Copy(metrics, res.Metrics())
	} else {
		fmt.Fprintf(stderr, "recording only the first-%d subset numbers (full results need --n 10000 with baselines)\n", attacknet.CheckSubset)
	}
	// The network alone on a fixed subset: what tests recompute exactly.
	sub := min(attacknet.CheckSubset, test.Len())
	xs := &inference.Tensor{Shape: append([]int64{int64(sub)}, c.Shape()[1:]...), Data: make([]float32, sub*mnist.Pixels)}
	ls := make([]int, sub)
	for i := range sub {
		for j, v := range test.Image(i) {
			xs.Data[i*mnist.Pixels+j] = rng[0] + v*(rng[1]-rng[0])
		}
		ls[i] = int(test.Labels[i])
	}
	check, err := attacknet.Evaluate(ctx, net, judges, xs, ls, attacknet.EvalOptions{Batch: o.batch, Layout: c.Layout})
	if err != nil {
		return err
	}
	maps.Copy(metrics, check.SubsetMetrics())
	return train.RecordMetrics(dir, name, entry.SHA256, metrics)
}
