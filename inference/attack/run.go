package attack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"gibbon/inference"
)

// classCounter is implemented by models that know their class count without a pass.
type classCounter interface{ Classes() int }

// attacker is one Run's state. It lives in the caller's goroutine.
type attacker struct {
	cfg    Config
	req    Request
	onStep StepFunc
	rng    *rand.Rand
	ball   *Ball
	obj    *objective
	n      int
	per    int // values per image

	classes     int
	cleanLogits []*inference.Tensor // per surrogate, when the attack needed them
	runnerUp    [][]int             // margin loss: last runner-up class per surrogate and image
	oneHot      *inference.Tensor

	fwd, bwd int64
	queries  []int

	adv       *inference.Tensor
	advLogits []*inference.Tensor // per surrogate, at adv
	offGrid   int

	// stopWhenFooled ends FAB-T's search on an image once it has an adversarial
	// within ε (AutoAttack needs no smaller one).
	stopWhenFooled bool
	// squareRawSchedule runs Square's p schedule on raw query counts, as AutoAttack
	// does, instead of rescaling it to the budget.
	squareRawSchedule bool
	stages            []Stage
	note              string
}

// Run attacks req with cfg, reporting each step to onStep (which may be nil). It runs
// in the caller's goroutine and returns ctx's error, within one step, once ctx ends.
func Run(ctx context.Context, cfg Config, req Request, onStep StepFunc) (*Result, error) {
	a, err := newAttacker(cfg, req, onStep)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := a.prepare(ctx); err != nil {
		return nil, err
	}
	if err := a.attack(ctx); err != nil {
		return nil, err
	}
	wall := time.Since(start)
	cfg = a.cfg
	res := &Result{Config: cfg, Adv: a.adv, Labels: a.labels(), Forward: a.fwd, Backward: a.bwd,
		Queries: a.queries, Wall: wall, Seed: cfg.Seed, OffGrid: a.offGrid, Stages: a.stages, Note: a.note}
	if a.obj.targeted {
		res.Targets = append([]int(nil), a.obj.cls...)
	}
	res.Linf, res.L2 = norms(a.adv.Data, req.Images.Data, a.n)
	for _, v := range res.Linf {
		res.LinfMax = max(res.LinfMax, v)
	}
	if err := a.evaluate(ctx, res); err != nil {
		return nil, err
	}
	return res, nil
}

// newAttacker validates cfg and req, before any pass runs.
func newAttacker(cfg Config, req Request, onStep StepFunc) (*attacker, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &attacker{cfg: cfg, req: req, onStep: onStep, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15))}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// attack runs the method; prepare has run.
func (a *attacker) attack(ctx context.Context) error {
	switch a.cfg.Method {
	case Square:
		return a.square(ctx)
	case Noise:
		return a.noise(ctx)
	case APGDCE, APGDDLR, APGDT:
		return a.apgd(ctx)
	case FABT:
		return a.fab(ctx)
	case AutoAttack:
		return a.autoAttack(ctx)
	}
	return a.iterative(ctx)
}

// check validates the request before any pass runs.
func (a *attacker) check() error {
	x := a.req.Images
	if x == nil {
		return errors.New("no images to attack")
	}
	if err := x.Validate(); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if len(x.Shape) < 2 || x.Shape[0] < 1 || x.Numel() == 0 {
		return fmt.Errorf("images must be a non-empty batch [N, ...], got shape %v", x.Shape)
	}
	a.n = int(x.Shape[0])
	a.per = x.Numel() / a.n
	if len(a.req.Surrogates) == 0 {
		return errors.New("no model to attack")
	}
	seen := map[string]bool{}
	for _, m := range append(append([]Model(nil), a.req.Surrogates...), a.req.Others...) {
		if m.Net == nil || m.Name == "" {
			return errors.New("every model needs a name and a network")
		}
		if seen[m.Name] {
			return fmt.Errorf("model %s is listed twice", m.Name)
		}
		seen[m.Name] = true
	}
	if !a.cfg.Method.BlackBox() && a.cfg.Method != AutoAttack { // AutoAttack falls back to Square
		for _, m := range a.req.Surrogates {
			if _, ok := m.Net.(Differentiable); !ok {
				return fmt.Errorf("%s needs gradients, and model %s gives predictions only (use square or noise)", a.cfg.Method, m.Name)
			}
		}
	}
	if a.cfg.Method == DIFGSM || a.cfg.Method == MDI2FGSM || a.cfg.Method == Square || a.cfg.Method == AutoAttack {
		if _, err := newGeometry(x.Shape, a.cfg.Layout); err != nil {
			return fmt.Errorf("%s: %w", a.cfg.Method, err)
		}
	}
	if a.req.Labels != nil && len(a.req.Labels) != a.n {
		return fmt.Errorf("%d labels for %d images", len(a.req.Labels), a.n)
	}
	for _, l := range a.req.Labels {
		if l < 0 {
			return fmt.Errorf("label %d is negative", l)
		}
	}
	b, err := newBall(x.Data, a.cfg.Eps, a.cfg.Range, !a.cfg.NoQuantize)
	if err != nil {
		return err
	}
	a.ball = b
	return nil
}

// prepare learns the class count, the labels and targets, running a clean forward pass
// on the surrogates only when the attack needs one.
func (a *attacker) prepare(ctx context.Context) error {
	margin := a.cfg.Loss == LossMargin && !a.cfg.Method.BlackBox() // the seed needs the runner-up class
	needClean := a.req.Labels == nil || a.cfg.Target == LeastLikely || margin
	a.classes = -1
	for _, m := range a.req.Surrogates {
		cc, ok := m.Net.(classCounter)
		if !ok || cc.Classes() < 2 {
			needClean = true
			break
		}
		if a.classes >= 0 && cc.Classes() != a.classes {
			return fmt.Errorf("surrogates disagree on the number of classes (%d and %d)", a.classes, cc.Classes())
		}
		a.classes = cc.Classes()
	}
	if a.cfg.Method.BlackBox() || a.cfg.Method == AutoAttack {
		a.queries = make([]int, a.n)
	}
	if needClean && a.cfg.Method.BlackBox() && a.cfg.Queries < 2 {
		return fmt.Errorf("%s with %d query: the clean prediction (for the labels or the least likely class) takes one, so allow at least 2", a.cfg.Method, a.cfg.Queries)
	}
	if needClean {
		a.classes = -1
		ls, err := a.predictAll(ctx, a.req.Images, true)
		if err != nil {
			return err
		}
		a.cleanLogits = ls
		for i := range a.queries {
			a.queries[i]++ // black-box: the clean prediction is a query too
		}
	}
	cls := make([]int, a.n)
	if a.req.Labels != nil {
		copy(cls, a.req.Labels)
	} else {
		copy(cls, preds(meanLogits(a.cleanLogits)))
	}
	labels := append([]int(nil), cls...)
	for i, l := range cls {
		if l >= a.classes {
			return fmt.Errorf("label %d of image %d is not a class of the models (they have %d)", l, i, a.classes)
		}
	}
	targeted := a.cfg.Target != Untargeted
	switch a.cfg.Target {
	case TargetClass:
		if a.cfg.TargetClass >= a.classes {
			return fmt.Errorf("target class %d does not exist (the models have %d classes)", a.cfg.TargetClass, a.classes)
		}
		for i := range cls {
			cls[i] = a.cfg.TargetClass
		}
	case LeastLikely:
		mean := meanLogits(a.cleanLogits)
		for i := range cls {
			cls[i] = argmin(row(mean, i))
		}
	}
	a.obj = &objective{loss: a.cfg.Loss, targeted: targeted, cls: cls, labels: labels, classes: a.classes}
	if margin {
		a.runnerUp = make([][]int, len(a.req.Surrogates))
		for k, l := range a.cleanLogits {
			a.runnerUp[k] = make([]int, a.n)
			for i := range a.n {
				a.runnerUp[k][i] = runnerUp(row(l, i), cls[i])
			}
		}
	}
	return nil
}

// labels are the classes untargeted success is judged against.
func (a *attacker) labels() []int {
	if a.req.Labels != nil {
		return append([]int(nil), a.req.Labels...)
	}
	return preds(meanLogits(a.cleanLogits))
}

// predictAll runs every surrogate on x, counting the passes.
func (a *attacker) predictAll(ctx context.Context, x *inference.Tensor, count bool) ([]*inference.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := int(x.Shape[0])
	out := make([]*inference.Tensor, len(a.req.Surrogates))
	for k, m := range a.req.Surrogates {
		l, err := m.Net.Predict(ctx, x)
		if err != nil {
			return nil, wrapModelErr(ctx, m.Name, err)
		}
		if err := checkLogits(m.Name, l, n, max(a.classes, 0)); err != nil {
			return nil, err
		}
		if a.classes < 0 {
			a.classes = int(l.Shape[1])
		}
		out[k] = l
		if count {
			a.fwd += int64(n)
		}
	}
	return out, nil
}

func wrapModelErr(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("model %s: %w", name, err)
}

// report sends a step to the callback.
func (a *attacker) report(s Step) error {
	if a.onStep == nil {
		return nil
	}
	return a.onStep(s)
}

// meanObjective is the objective averaged over the surrogates' logits.
func (a *attacker) meanObjective(ls []*inference.Tensor) []float32 {
	out := make([]float32, a.n)
	for _, l := range ls {
		for i, v := range a.obj.values(l) {
			out[i] += v / float32(len(ls))
		}
	}
	return out
}

// evaluate fills in every model's verdict on the clean and final images.
func (a *attacker) evaluate(ctx context.Context, res *Result) error {
	labels := res.Labels
	add := func(m Model, surrogate bool, clean, adv *inference.Tensor) error {
		var err error
		if clean == nil {
			if clean, err = m.Net.Predict(ctx, a.req.Images); err != nil {
				return wrapModelErr(ctx, m.Name, err)
			}
		}
		if adv == nil {
			if adv, err = m.Net.Predict(ctx, a.adv); err != nil {
				return wrapModelErr(ctx, m.Name, err)
			}
		}
		for _, l := range []*inference.Tensor{clean, adv} {
			if err := checkLogits(m.Name, l, a.n, 0); err != nil {
				return err
			}
		}
		mr := ModelResult{Name: m.Name, Surrogate: surrogate, Clean: preds(clean), Adv: preds(adv), Success: make([]bool, a.n)}
		var succ, cc, ac int
		for i := range a.n {
			mr.Success[i] = a.obj.success(mr.Adv[i], i)
			if mr.Success[i] {
				succ++
			}
			if mr.Clean[i] == labels[i] {
				cc++
			}
			if mr.Adv[i] == labels[i] {
				ac++
			}
		}
		mr.SuccessRate = float64(succ) / float64(a.n)
		mr.CleanAccuracy = float64(cc) / float64(a.n)
		mr.AdvAccuracy = float64(ac) / float64(a.n)
		res.Models = append(res.Models, mr)
		return nil
	}
	for k, m := range a.req.Surrogates {
		var clean *inference.Tensor
		if a.cleanLogits != nil {
			clean = a.cleanLogits[k]
		}
		if err := add(m, true, clean, a.advLogits[k]); err != nil {
			return err
		}
	}
	for _, m := range a.req.Others {
		if err := add(m, false, nil, nil); err != nil {
			return err
		}
	}
	return nil
}
