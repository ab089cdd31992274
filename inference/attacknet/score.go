package attacknet

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/zoo"
	"gibbon/internal/progress"
)

// ScoreOptions say how Score evaluates an attack network.
type ScoreOptions struct {
	N         int  // the first N MNIST test images
	Batch     int  // images per pass, for every attack
	Baselines bool // also noise, PGD-10 and MI-FGSM
	Seed      int64
	Metrics   bool // also measure Scored.Metrics (one more pass over CheckSubset images)
	Progress  *progress.Bar
	Log       io.Writer // classifiers left out, and what runs
}

// Scored is an attack network's evaluation, and the metrics for its manifest entry.
type Scored struct {
	*Result
	SHA256 string // of the network's file
	// Metrics (with ScoreOptions.Metrics) hold the network alone on the first
	// CheckSubset images, what tests recompute exactly, and the full results with
	// 10000 images and baselines.
	Metrics map[string]float64
}

// Score evaluates dir's attack network name on the MNIST test set against every
// classifier of dir that takes its images: those it was trained against, the others
// (transfer) and the robust ones.
func Score(ctx context.Context, rt *inference.Runtime, dir, name string, opts ScoreOptions) (*Scored, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	man, err := inference.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	entry, err := man.EntryOf(name, inference.TaskAttackNetwork)
	if err != nil {
		return nil, inference.Invalidf("%v (in %s)", err, dir)
	}
	c := entry.Input
	if !c.FitsMNIST() {
		return nil, inference.Invalidf("%s takes %s; attack networks are scored on the MNIST test set (28×28 gray)", name, c.Describe())
	}
	// The network and its judges come from the folder's zoo, each loaded once.
	z := zoo.Open(rt, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	defer z.Close()
	m, err := z.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	net := m.Network()
	judges, err := loadJudges(ctx, z, man, entry, opts.Log)
	if err != nil {
		return nil, err
	}
	test, err := mnist.LoadTest(ctx)
	if err != nil {
		return nil, err
	}
	x, labels, err := c.MNISTTensor(test, 0, opts.N)
	if err != nil {
		return nil, err
	}
	baselines := map[bool]string{true: ", with noise, PGD-10 and MI-FGSM baselines", false: ""}[opts.Baselines]
	fmt.Fprintf(opts.Log, "evaluating %s on %d MNIST test images against %d classifiers%s\n", name, len(labels), len(judges), baselines)
	res, err := Evaluate(ctx, net, judges, x, labels, EvalOptions{Batch: opts.Batch, Baselines: opts.Baselines,
		Seed: opts.Seed, Layout: c.Layout, Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	s := &Scored{Result: res, SHA256: entry.SHA256, Metrics: map[string]float64{}}
	if !opts.Metrics {
		return s, nil
	}
	if opts.N == 10000 && opts.Baselines {
		maps.Copy(s.Metrics, res.Metrics())
	}
	xs, ls, err := c.MNISTTensor(test, 0, min(CheckSubset, test.Len()))
	if err != nil {
		return nil, err
	}
	check, err := Evaluate(ctx, net, judges, xs, ls, EvalOptions{Batch: opts.Batch, Layout: c.Layout})
	if err != nil {
		return nil, err
	}
	maps.Copy(s.Metrics, check.SubsetMetrics())
	return s, nil
}

// loadJudges loads the classifiers of man that take the network's images: those it
// was trained against first, then the others, in manifest order.
func loadJudges(ctx context.Context, z *zoo.Zoo, man *inference.Manifest, net *inference.ModelEntry, log io.Writer) ([]Judge, error) {
	isTarget := map[string]bool{}
	for _, t := range net.Attack.Targets {
		isTarget[t] = true
	}
	var judges []Judge
	for pass := range 2 {
		for _, e := range man.Models {
			if e.Task != inference.TaskClassifier || isTarget[e.Name] != (pass == 0) {
				continue
			}
			if !e.Input.SameTensor(net.Input) {
				fmt.Fprintf(log, "not judging on %s: it takes %s, the network %s\n", e.Name, e.Input.Describe(), net.Input.Describe())
				continue
			}
			m, err := z.Get(ctx, e.Name)
			if err != nil {
				return judges, err
			}
			role := RoleHeldOut
			switch {
			case isTarget[e.Name]:
				role = RoleTarget
			case e.Robust:
				role = RoleRobust
			}
			judges = append(judges, Judge{Name: e.Name, Role: role, Net: m.Net()})
		}
	}
	for _, t := range net.Attack.Targets {
		if !isTarget[t] || !hasJudge(judges, t) {
			return judges, fmt.Errorf("%s was trained against %s, which the manifest does not list (or it takes other images)", net.Name, t)
		}
	}
	return judges, nil
}

func hasJudge(judges []Judge, name string) bool {
	for _, j := range judges {
		if j.Name == name {
			return true
		}
	}
	return false
}
