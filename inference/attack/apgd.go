package attack

import (
	"context"
	"fmt"
	"math"
	"slices"

	"gibbon/inference"
)

// APGD's constants (Croce & Hein, ICML 2020, Section 3): momentum α, the share ρ of
// improving steps a checkpoint expects, and the first step 2ε.
const (
	apgdMomentum  = 0.75
	apgdRho       = 0.75
	apgdFirstStep = 2.0
)

// apgdCheckpoints are the iterations after which APGD checks its progress: w_j =
// ⌈p_j·N⌉ with p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06),
// computed in whole iterations (the first interval ⌊0.22N⌋, each next one ⌊0.03N⌋
// shorter, never below ⌊0.06N⌋) as the paper's code does, so that N = 100 gives
// 22, 41, 57, 70, 80, 87, 93, 99. A checkpoint at N itself would change nothing.
func apgdCheckpoints(steps int) []int {
	size := max(int(0.22*float64(steps)), 1)
	shrink := max(int(0.03*float64(steps)), 1)
	least := max(int(0.06*float64(steps)), 1)
	var out []int
	for w := size; w < steps; w += size {
		out = append(out, w)
		size = max(size-shrink, least)
	}
	return out
}

// apgd runs APGD (Croce & Hein, ICML 2020, Algorithm 1) with L∞ sign steps:
// momentum 0.75 after a first plain step of 2ε; at each checkpoint an image whose loss
// rose in fewer than ρ = 0.75 of the steps since the last one, or whose step was not
// halved there and whose best loss has not moved since, halves its step and restarts
// from its best point. APGD-CE and APGD-DLR attack once per restart; APGD-T once per
// restart for each of the TargetClasses most likely wrong classes with the targeted
// DLR loss, counting any misclassification. Each run starts at x0 + ε·t/‖t‖∞, t
// uniform in [−1,1]^d, and attacks only the images not fooled yet; an image stops once
// a quantised iterate fools the surrogates (the paper's code runs on, keeping that
// point). Images never fooled end at the highest-loss point any run reached, quantised.
func (a *attacker) apgd(ctx context.Context) error {
	if err := a.checkDLRClasses(); err != nil {
		return err
	}
	targets := 1
	if a.cfg.Method == APGDT {
		n, err := a.targetCount()
		if err != nil {
			return err
		}
		targets = n
	}
	out, err := a.startOutcome(ctx)
	if err != nil {
		return err
	}
	v := a.newView()
	keep := &bestPoints{x: a.req.Images.Clone(), loss: make([]float32, a.n)}
	for i := range keep.loss {
		keep.loss[i] = float32(math.Inf(-1))
	}
	runs := targets * a.cfg.Restarts
	for r := range runs {
		rows := out.notFooled()
		if len(rows) == 0 {
			break
		}
		obj := a.obj.subset(rows)
		if a.cfg.Method == APGDT {
			obj.aim = a.rankedClass(rows, 1+r/a.cfg.Restarts)
		}
		run := a.newAPGDRun(rows, obj)
		if err := a.runAPGD(ctx, out, run, v, r, runs); err != nil {
			return err
		}
		keep.update(a, run, out)
	}
	if err := a.settleUnfooled(ctx, out, keep); err != nil {
		return err
	}
	a.offGrid = countOffGrid(a.ball, a.adv.Data)
	return a.reportOutcome(runs)
}

// checkDLRClasses: the DLR loss ranks 3 logits, its targeted form 4.
func (a *attacker) checkDLRClasses() error {
	need := 3
	if a.cfg.Method == APGDT || a.obj.targeted {
		need = 4
	}
	if a.cfg.Loss == LossDLR && a.classes < need {
		return fmt.Errorf("%s: the DLR loss needs at least %d classes, the models have %d (use apgd-ce)", a.cfg.Method, need, a.classes)
	}
	return nil
}

// bestPoints keeps, per image, the highest-loss point of any run.
type bestPoints struct {
	x    *inference.Tensor
	loss []float32
}

func (b *bestPoints) update(a *attacker, r *apgdRun, out *outcome) {
	for j, i := range r.rows {
		if !out.fooled[i] && r.bestLoss[j] > b.loss[i] {
			b.loss[i] = r.bestLoss[j]
			copy(b.x.Data[i*a.per:(i+1)*a.per], r.best[j*a.per:(j+1)*a.per])
		}
	}
}

// settleUnfooled puts each image never fooled at its highest-loss point, quantised,
// and judges it (it may fool the model after all).
func (a *attacker) settleUnfooled(ctx context.Context, out *outcome, keep *bestPoints) error {
	var rows []int
	for _, i := range out.notFooled() {
		if !math.IsInf(float64(keep.loss[i]), -1) {
			rows = append(rows, i)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	pts := gatherRows(keep.x, rows)
	for j, i := range rows {
		b := a.imageBall(i)
		b.Quantize(pts.Data[j*a.per : (j+1)*a.per])
	}
	ls, err := a.predictAll(ctx, pts, true)
	if err != nil {
		return err
	}
	scatterRows(a.adv, pts, rows)
	for k := range ls {
		scatterRows(a.advLogits[k], ls[k], rows)
	}
	mean := meanLogits(ls)
	for j, i := range rows {
		out.fooled[i] = a.obj.success(argmax(row(mean, j)), i)
	}
	return nil
}

// apgdRun is one APGD run's state over its images (local index j, batch row rows[j]).
type apgdRun struct {
	rows []int
	obj  *objective // per local index
	// x is the iterate, prev the one before it, best the highest-loss point so far.
	x, prev, best  []float32
	grad, gradBest []float32
	eta            []float64
	last, bestLoss []float32 // the loss at the iterate and the best loss
	// Per image since the last checkpoint: steps that raised the loss; whether the
	// step was halved at it; the best loss then.
	rises       []int
	halved      []bool
	bestAtCheck []float32
	live        []bool
}

func (a *attacker) newAPGDRun(rows []int, obj *objective) *apgdRun {
	m := len(rows)
	r := &apgdRun{rows: rows, obj: obj, x: make([]float32, m*a.per), eta: make([]float64, m),
		rises: make([]int, m), halved: make([]bool, m), live: make([]bool, m)}
	// The paper's start: x0 + ε·t/‖t‖∞ with t uniform in [−1,1]^d, in the ball.
	t := make([]float64, a.per)
	for j, i := range rows {
		var peak float64
		for v := range t {
			t[v] = 2*a.rng.Float64() - 1
			peak = math.Max(peak, math.Abs(t[v]))
		}
		b := a.imageBall(i)
		xs := r.x[j*a.per : (j+1)*a.per]
		for v := range xs {
			xs[v] = b.fit(v, float64(b.x0[v])+float64(a.cfg.Eps)*t[v]/math.Max(peak, 1e-12))
		}
		r.eta[j] = apgdFirstStep * float64(a.cfg.Eps)
		r.halved[j] = true // the first checkpoint judges progress only
		r.live[j] = true
	}
	r.prev = slices.Clone(r.x)
	r.best = slices.Clone(r.x)
	return r
}

// liveRows lists the local indices still attacked.
func (r *apgdRun) liveRows() []int {
	var out []int
	for j, l := range r.live {
		if l {
			out = append(out, j)
		}
	}
	return out
}

// runAPGD runs one run: the start point and cfg.Steps iterations.
func (a *attacker) runAPGD(ctx context.Context, out *outcome, r *apgdRun, v *view, run, runs int) error {
	steps := a.cfg.Steps
	checks := apgdCheckpoints(steps)
	all := make([]int, len(r.rows))
	for j := range all {
		all[j] = j
	}
	if err := a.apgdEvaluate(ctx, out, r, v, all, true, true); err != nil {
		return err
	}
	if err := a.reportRun(v, run, runs, 0); err != nil {
		return err
	}
	prevCheck := 0
	for k := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		live := r.liveRows()
		if len(live) == 0 {
			break
		}
		for _, j := range live {
			a.apgdStep(r, j, k == 0)
		}
		if err := a.apgdEvaluate(ctx, out, r, v, live, k+1 < steps, false); err != nil {
			return err
		}
		if err := a.reportRun(v, run, runs, k+1); err != nil {
			return err
		}
		if len(checks) > 0 && k+1 == checks[0] {
			r.checkpoint(a.per, k+1-prevCheck)
			prevCheck, checks = k+1, checks[1:]
		}
	}
	return nil
}

// apgdStep moves image j: z = P(x + η·sign(∇)), x' = P(x + α(z − x) + (1−α)(x − x_prev)),
// with α = 1 on the first step.
func (a *attacker) apgdStep(r *apgdRun, j int, first bool) {
	b := a.imageBall(r.rows[j])
	lo, hi := j*a.per, (j+1)*a.per
	x, prev, g := r.x[lo:hi], r.prev[lo:hi], r.grad[lo:hi]
	mom := apgdMomentum
	if first {
		mom = 1
	}
	eta := r.eta[j]
	for v, xv32 := range x {
		xv := float64(xv32)
		step := 0.0
		switch {
		case g[v] > 0:
			step = eta
		case g[v] < 0:
			step = -eta
		}
		z := float64(b.fit(v, xv+step))
		x[v] = b.fit(v, xv+mom*(z-xv)+(1-mom)*(xv-float64(prev[v])))
		prev[v] = xv32
	}
}

// apgdEvaluate takes the loss (and, when grad, its gradient) at the listed images'
// iterates, keeps each image's best point, and records iterates that fool the
// surrogates once quantised. start marks the run's start point.
func (a *attacker) apgdEvaluate(ctx context.Context, out *outcome, r *apgdRun, v *view, list []int, grad, start bool) error {
	xs := inference.NewTensor(append([]int64{int64(len(list))}, a.req.Images.Shape[1:]...)...)
	for n, j := range list {
		copy(xs.Data[n*a.per:(n+1)*a.per], r.x[j*a.per:(j+1)*a.per])
	}
	g, loss, logits, err := a.lossPass(ctx, xs, r.obj.subset(list), grad)
	if err != nil {
		return err
	}
	if start {
		r.grad, r.gradBest = make([]float32, len(r.x)), make([]float32, len(r.x))
		r.last, r.bestLoss, r.bestAtCheck = make([]float32, len(r.rows)), make([]float32, len(r.rows)), make([]float32, len(r.rows))
	}
	mean := meanLogits(logits)
	var cand []int
	for n, j := range list {
		lo, hi := j*a.per, (j+1)*a.per
		if g != nil {
			copy(r.grad[lo:hi], g.Data[n*a.per:(n+1)*a.per])
		}
		switch {
		case start:
			r.bestLoss[j], r.bestAtCheck[j] = loss[n], loss[n]
			copy(r.gradBest[lo:hi], r.grad[lo:hi])
		case loss[n] > r.bestLoss[j]:
			r.bestLoss[j] = loss[n]
			copy(r.best[lo:hi], r.x[lo:hi])
			copy(r.gradBest[lo:hi], r.grad[lo:hi])
		}
		if !start && loss[n] > r.last[j] {
			r.rises[j]++
		}
		r.last[j] = loss[n]
		if a.obj.success(argmax(row(mean, n)), r.rows[j]) {
			cand = append(cand, n)
		}
	}
	v.update(a, r.rows, list, xs, loss, logits)
	if len(cand) == 0 {
		return nil
	}
	batch := make([]int, len(cand))
	for c, n := range cand {
		batch[c] = r.rows[list[n]]
	}
	ok, err := a.confirm(ctx, out, gatherRows(xs, cand), batch)
	if err != nil {
		return err
	}
	for c, n := range cand {
		if ok[c] {
			r.live[list[n]] = false
			v.show(a, batch[c])
		}
	}
	return nil
}

// checkpoint applies the paper's two conditions to every live image after an
// interval of `interval` steps.
func (r *apgdRun) checkpoint(per, interval int) {
	for j, l := range r.live {
		if !l {
			continue
		}
		stalled := float64(r.rises[j]) < apgdRho*float64(interval)
		unmoved := !r.halved[j] && r.bestAtCheck[j] >= r.bestLoss[j]
		r.halved[j] = stalled || unmoved
		if r.halved[j] {
			r.eta[j] /= 2
			lo, hi := j*per, (j+1)*per
			copy(r.x[lo:hi], r.best[lo:hi])
			copy(r.grad[lo:hi], r.gradBest[lo:hi])
		}
		r.bestAtCheck[j] = r.bestLoss[j]
		r.rises[j] = 0
	}
}

// lossPass returns, for images xs judged by obj, the loss averaged over the
// surrogates, its gradient (nil unless grad) and each surrogate's logits. The
// cross-entropy takes one pass with gradients; the DLR loss a forward pass for the
// logits it depends on, then one with gradients from the logit seed.
func (a *attacker) lossPass(ctx context.Context, xs *inference.Tensor, obj *objective, grad bool) (*inference.Tensor, []float32, []*inference.Tensor, error) {
	n := int(xs.Shape[0])
	k := float32(len(a.req.Surrogates))
	loss := make([]float32, n)
	logits := make([]*inference.Tensor, len(a.req.Surrogates))
	var sum *inference.Tensor
	if grad {
		sum = inference.NewTensor(xs.Shape...)
	}
	for s, m := range a.req.Surrogates {
		var l []float32
		var g *inference.Tensor
		var err error
		if obj.loss == LossDLR {
			l, g, logits[s], err = a.dlrPass(ctx, s, m, xs, obj, grad)
		} else {
			l, g, logits[s], err = a.cePass(ctx, s, m, xs, obj, grad)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		for i, v := range l {
			loss[i] += v / k
		}
		if grad {
			for j, v := range g.Data {
				sum.Data[j] += v / k
			}
		}
	}
	return sum, loss, logits, nil
}

// cePass is one surrogate's cross-entropy (of the label, or minus that of the target).
func (a *attacker) cePass(ctx context.Context, s int, m Model, xs *inference.Tensor, obj *objective, grad bool) ([]float32, *inference.Tensor, *inference.Tensor, error) {
	if !grad {
		l, err := a.predictOne(ctx, s, xs)
		if err != nil {
			return nil, nil, nil, err
		}
		return obj.values(l), nil, l, nil
	}
	g, err := a.callGradient(ctx, m.Name, m.Net.(Differentiable), xs, CrossEntropy, obj.oneHot())
	if err != nil {
		return nil, nil, nil, err
	}
	if obj.targeted {
		for j := range g.Input.Data {
			g.Input.Data[j] = -g.Input.Data[j]
		}
	}
	return obj.values(g.Logits), g.Input, g.Logits, nil
}

// dlrPass is one surrogate's DLR loss: the loss needs the logits' values, so they are
// read first and the gradient follows from the seed built on them.
func (a *attacker) dlrPass(ctx context.Context, s int, m Model, xs *inference.Tensor, obj *objective, grad bool) ([]float32, *inference.Tensor, *inference.Tensor, error) {
	l, err := a.predictOne(ctx, s, xs)
	if err != nil {
		return nil, nil, nil, err
	}
	loss, seed := obj.dlrSeed(l)
	if !grad {
		return loss, nil, l, nil
	}
	g, err := a.callGradient(ctx, m.Name, m.Net.(Differentiable), xs, LogitSeed, seed)
	if err != nil {
		return nil, nil, nil, err
	}
	return loss, g.Input, l, nil
}

// predictOne runs surrogate s on x, counting the pass.
func (a *attacker) predictOne(ctx context.Context, s int, x *inference.Tensor) (*inference.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := a.req.Surrogates[s]
	l, err := m.Net.Predict(ctx, x)
	if err != nil {
		return nil, wrapModelErr(ctx, m.Name, err)
	}
	if err := checkLogits(m.Name, l, int(x.Shape[0]), a.classes); err != nil {
		return nil, err
	}
	a.fwd += x.Shape[0]
	return l, nil
}
