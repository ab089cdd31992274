package sweep

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
)

// How a transform defence was attacked.
const (
	// NonAdaptive: the attack ignored the transform and attacked its models alone.
	NonAdaptive = "non-adaptive"
	// Adaptive: the attack saw its models through the transform (BPDA or EOT, see
	// defense.Adaptive); the defence's answers are on those images.
	Adaptive = "adaptive"
)

// AdaptiveSuffix ends the name of a defence's adaptive twin.
const AdaptiveSuffix = " (adaptive)"

// Scoring labels a transform defence in results: which way it was attacked, how an
// adaptive attack got through it, and, for a defence whose figure against attacks
// that ignore it overstates it, one sentence saying so with the reference.
type Scoring struct {
	Mode    string `json:"scoring,omitempty"` // NonAdaptive or Adaptive; "" for a model alone
	Through string `json:"through,omitempty"` // Adaptive: how the attacks got through the transform
	Caveat  string `json:"caveat,omitempty"`
}

// Adaptive is d's adaptive twin: the same defence, named with AdaptiveSuffix, whose
// answers are judged on the images each attack makes when it sees its models through
// d's transform (samples EOT draws per gradient for a random transform). Its verdicts
// draw from their own source, seeded as d's.
func (d Defence) Adaptive(samples int) (Defence, error) {
	if d.transform == nil || d.Mode != NonAdaptive {
		return Defence{}, fmt.Errorf("defence %s has no transform to attack through", d.Name)
	}
	if err := defense.CheckSamples(samples); err != nil {
		return Defence{}, err
	}
	net, err := defense.New(d.transform, d.model, d.format, d.seed)
	if err != nil {
		return Defence{}, err
	}
	tw := d
	tw.Name, tw.Net, tw.samples = d.Name+AdaptiveSuffix, net, samples
	tw.Scoring = Scoring{Mode: Adaptive, Through: defense.Through(d.transform, samples), Caveat: d.Caveat}
	return tw, nil
}

// through is a seeing its models through d's transform: gradient models as
// defense.Adaptive, prediction-only ones behind the transform (black-box attacks query
// the defence). An attack network has no models to see through: nil.
func (a *Attack) through(d Defence, seed uint64) (*Attack, error) {
	if a.Network != nil {
		return nil, nil
	}
	b := *a
	b.Surrogates = make([]attack.Model, len(a.Surrogates))
	for s, m := range a.Surrogates {
		var net attack.Classifier
		var err error
		if g, ok := m.Net.(attack.Differentiable); ok {
			net, err = defense.NewAdaptive(d.transform, g, d.format, d.samples, seed+uint64(s))
		} else {
			net, err = defense.New(d.transform, m.Net, d.format, seed+uint64(s))
		}
		if err != nil {
			return nil, fmt.Errorf("attack %s through %s: %w", a.Name, d.Name, err)
		}
		b.Surrogates[s] = attack.Model{Name: m.Name + " + " + d.transform.Name(), Net: net}
	}
	return &b, nil
}

// judged is one attack's outcome on a batch.
type judged struct {
	adv   *inference.Tensor // the attack's own images (Grid's rows)
	wall  time.Duration     // the time making them took
	pred  [][]int           // per defence, per row
	probs [][][]float32     // per defence and row, when asked for
}

// attackAndJudge runs a on a batch (see Attack.Grid) and classifies its images with
// every defence. An adaptive defence judges the images a makes through its transform
// instead, drawing from a source seeded by the defence and the batch's first image;
// an attack network cannot see through one, and its own images are judged.
func attackAndJudge(ctx context.Context, a *Attack, defs []Defence, x *inference.Tensor, labels []int, eps []float32, seeds []int64, wantProbs bool) (*judged, error) {
	start := time.Now()
	adv, err := a.Grid(ctx, x, labels, eps, seeds)
	if err != nil {
		return nil, err
	}
	j := &judged{adv: adv, wall: time.Since(start), pred: make([][]int, len(defs))}
	if wantProbs {
		j.probs = make([][][]float32, len(defs))
	}
	var own, adaptive []int
	for d, def := range defs {
		if def.Mode == Adaptive && a.Network == nil {
			adaptive = append(adaptive, d)
		} else {
			own = append(own, d)
		}
	}
	keep := func(idx []int, images *inference.Tensor) error {
		pred, probs, err := classify(ctx, pick(defs, idx), images, wantProbs)
		if err != nil {
			return err
		}
		for k, d := range idx {
			j.pred[d] = pred[k]
			if wantProbs {
				j.probs[d] = probs[k]
			}
		}
		return nil
	}
	if err := keep(own, adv); err != nil {
		return nil, err
	}
	for _, d := range adaptive {
		b, err := a.through(defs[d], defs[d].seed^uint64(seeds[0])*0x9e3779b97f4a7c15)
		if err != nil {
			return nil, err
		}
		images, err := b.Grid(ctx, x, labels, eps, seeds)
		if err != nil {
			return nil, err
		}
		if err := keep([]int{d}, images); err != nil {
			return nil, err
		}
	}
	return j, nil
}

// scoringFor is d's label in the results of the given attacks: for an adaptive twin,
// Through says how each kind of attack got through (gradient attacks as d.Through
// says, black-box ones by querying the defence, attack networks not at all).
func scoringFor(d Defence, attacks ...*Attack) Scoring {
	s := d.Scoring
	if s.Mode != Adaptive {
		return s
	}
	var parts []string
	for _, a := range attacks {
		part := s.Through
		switch {
		case a.Network != nil:
			part = "attack networks cannot see through it: judged on their own images"
		case a.Config.Method.BlackBox():
			part = "black-box attacks query the model behind " + d.transform.Name()
		}
		if !slices.Contains(parts, part) {
			parts = append(parts, part)
		}
	}
	s.Through = strings.Join(parts, "; ")
	return s
}

// competing reports a defence scored the competition's way (not an adaptive twin).
func competing(d Defence) bool { return d.Mode != Adaptive }

// twinOf reports whether twin is the adaptive twin of d.
func twinOf(twin, d string) bool { return strings.TrimSuffix(twin, AdaptiveSuffix) == d && twin != d }
