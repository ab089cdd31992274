package attack

import (
	"context"
	"math"

	"gibbon/inference"
)

// FAB's constants (Croce & Hein, ICML 2020, "Minimally distorted adversarial examples
// with a fast adaptive boundary attack", the values AutoAttack runs): the largest
// pull towards the original image α_max, the overshoot η and the backward step β.
const (
	fabAlphaMax  = 0.1
	fabOvershoot = 1.05
	fabBackward  = 0.9
)

// fab runs the targeted L∞ FAB attack: for each of the TargetClasses most likely wrong
// classes t in turn, on the images not fooled yet, each iteration linearises the
// boundary f_t − f_y = 0 at the iterate x, projects both x and the original x0 onto
// it inside the input range (the smallest L∞ steps d1, d2), and moves to
// (x + η·d1)(1−α) + (x0 + η·d2)α with α = min(‖d1‖/(‖d1‖+‖d2‖), α_max). An iterate
// that is misclassified is recorded when it lies within ε (checked once quantised)
// and closer than the image's recorded point, and pulled back towards x0 by β. It is
// a minimum-norm attack: its iterates may leave the ball; its result never does
// (the closest adversarial found within ε, else the clean image). Restarts after the
// first start at a random point within half the smaller of ε and the best distance.
func (a *attacker) fab(ctx context.Context) error {
	targets, err := a.targetCount()
	if err != nil {
		return err
	}
	out, err := a.startOutcome(ctx)
	if err != nil {
		return err
	}
	v := a.newView()
	runs := targets * a.cfg.Restarts
	for r := range runs {
		rows := out.notFooled()
		if len(rows) == 0 {
			break
		}
		aim := a.rankedClass(rows, 1+r/a.cfg.Restarts)
		if err := a.fabRun(ctx, out, v, rows, aim, r%a.cfg.Restarts > 0, r, runs); err != nil {
			return err
		}
	}
	a.offGrid = countOffGrid(a.ball, a.adv.Data)
	return a.reportOutcome(runs)
}

// fabRunState is one FAB run over its images (local index j, batch row rows[j]).
type fabRunState struct {
	rows, aim []int
	x0, x     *inference.Tensor // originals and iterates
	grad      []float32         // of the margin at x
	margin    []float64         // f_t − f_y at x (the surrogates' mean logits)
	wrong     []bool            // x is misclassified
	live      []bool
}

// fabRun is one run: the start point and cfg.Steps iterations.
func (a *attacker) fabRun(ctx context.Context, out *outcome, v *view, rows, aim []int, randomStart bool, run, runs int) error {
	m := len(rows)
	r := &fabRunState{rows: rows, aim: aim, x0: gatherRows(a.req.Images, rows), margin: make([]float64, m),
		wrong: make([]bool, m), live: make([]bool, m)}
	r.x = r.x0.Clone()
	r.grad = make([]float32, len(r.x.Data))
	if randomStart {
		a.fabRandomStart(r.x, out, rows)
	}
	all := make([]int, m)
	for j := range r.live {
		r.live[j], all[j] = true, j
	}
	if randomStart {
		if err := a.fabPass(ctx, r, all, false); err != nil {
			return err
		}
	} else {
		clean := meanLogits(a.cleanLogits)
		for j, i := range rows {
			r.margin[j] = float64(row(clean, i)[aim[j]]) - float64(row(clean, i)[a.obj.cls[i]])
		}
	}
	v.setLoss(rows, all, r.margin)
	if err := a.reportRun(v, run, runs, 0); err != nil {
		return err
	}
	work := newFabWork(a.per)
	for it := range a.cfg.Steps {
		var list []int
		for j, l := range r.live {
			if l {
				list = append(list, j)
			}
		}
		if len(list) == 0 {
			break
		}
		// As the paper's code does: a gradient pass at the iterate, the step, then a
		// forward pass to judge the new iterate.
		if err := a.fabPass(ctx, r, list, true); err != nil {
			return err
		}
		for _, j := range list {
			lo, hi := j*a.per, (j+1)*a.per
			a.fabStep(work, r.x.Data[lo:hi], r.x0.Data[lo:hi], r.grad[lo:hi], r.margin[j])
		}
		if err := a.fabPass(ctx, r, list, false); err != nil {
			return err
		}
		v.setLoss(rows, list, r.margin)
		if err := a.fabRecord(ctx, out, v, r, list); err != nil {
			return err
		}
		if err := a.reportRun(v, run, runs, it+1); err != nil {
			return err
		}
	}
	return nil
}

// fabRandomStart moves each image to x0 + r·t/‖t‖∞, t uniform in [−1,1]^d, r half
// the smaller of ε and its best distance so far, inside the input range.
func (a *attacker) fabRandomStart(x *inference.Tensor, out *outcome, rows []int) {
	lo, hi := float64(a.cfg.Range[0]), float64(a.cfg.Range[1])
	t := make([]float64, a.per)
	for j, i := range rows {
		radius := math.Min(out.norm[i], float64(a.cfg.Eps)) / 2
		var peak float64
		for k := range t {
			t[k] = 2*a.rng.Float64() - 1
			peak = math.Max(peak, math.Abs(t[k]))
		}
		xs := x.Data[j*a.per : (j+1)*a.per]
		for k := range xs {
			xs[k] = float32(math.Min(hi, math.Max(lo, float64(xs[k])+radius*t[k]/math.Max(peak, 1e-12))))
		}
	}
}

// fabRecord judges the listed iterates: a misclassified one is offered as the image's
// result when within ε, and pulled back towards x0 by β.
func (a *attacker) fabRecord(ctx context.Context, out *outcome, v *view, r *fabRunState, list []int) error {
	var adv, within []int
	for _, j := range list {
		if !r.wrong[j] {
			continue
		}
		adv = append(adv, j)
		lo, hi := j*a.per, (j+1)*a.per
		if linf, _ := norms(r.x.Data[lo:hi], r.x0.Data[lo:hi], 1); linf[0] <= a.cfg.Eps {
			within = append(within, j)
		}
	}
	if len(within) > 0 {
		batch := make([]int, len(within))
		for c, j := range within {
			batch[c] = r.rows[j]
		}
		ok, err := a.confirm(ctx, out, gatherRows(r.x, within), batch)
		if err != nil {
			return err
		}
		for c, j := range within {
			if ok[c] {
				v.show(a, batch[c])
				if a.stopWhenFooled {
					r.live[j] = false
				}
			}
		}
	}
	for _, j := range adv {
		for k := j * a.per; k < (j+1)*a.per; k++ {
			r.x.Data[k] = float32(float64(r.x0.Data[k]) + fabBackward*(float64(r.x.Data[k])-float64(r.x0.Data[k])))
		}
	}
	return nil
}

// fabPass takes, at the listed iterates, the margin f_t − f_y of the surrogates' mean
// logits, whether they are misclassified, and (when grad) the margin's gradient: one
// pass per surrogate with the logit seed (e_t − e_y)/K.
func (a *attacker) fabPass(ctx context.Context, r *fabRunState, list []int, grad bool) error {
	xs := gatherRows(r.x, list)
	var logits []*inference.Tensor
	var sum []float32
	if grad {
		k := float32(len(a.req.Surrogates))
		seed := inference.NewTensor(int64(len(list)), int64(a.classes))
		for n, j := range list {
			s := row(seed, n)
			s[r.aim[j]] += 1 / k
			s[a.obj.cls[r.rows[j]]] -= 1 / k
		}
		sum = make([]float32, len(xs.Data))
		for _, m := range a.req.Surrogates {
			g, err := a.callGradient(ctx, m.Name, m.Net.(Differentiable), xs, LogitSeed, seed)
			if err != nil {
				return err
			}
			for q, v := range g.Input.Data {
				sum[q] += v
			}
			logits = append(logits, g.Logits)
		}
	} else {
		ls, err := a.predictAll(ctx, xs, true)
		if err != nil {
			return err
		}
		logits = ls
	}
	mean := meanLogits(logits)
	for n, j := range list {
		z := row(mean, n)
		i := r.rows[j]
		r.margin[j] = float64(z[r.aim[j]]) - float64(z[a.obj.cls[i]])
		r.wrong[j] = a.obj.success(argmax(z), i)
		if grad {
			copy(r.grad[j*a.per:(j+1)*a.per], sum[n*a.per:(n+1)*a.per])
		}
	}
	return nil
}

// fabWork is scratch space for the projections of one image.
type fabWork struct {
	d1, d2 []float64
	caps   []capWeight
}

type capWeight struct{ cap, weight float64 }

func newFabWork(per int) *fabWork {
	return &fabWork{d1: make([]float64, per), d2: make([]float64, per), caps: make([]capWeight, 0, per)}
}

// fabStep moves one image's iterate x (original x0, margin f and its gradient w at x).
func (a *attacker) fabStep(w *fabWork, x, x0, grad []float32, f float64) {
	lo, hi := float64(a.cfg.Range[0]), float64(a.cfg.Range[1])
	// The linearised margin is f + w·(z − x); at x0 it is f + w·(x0 − x).
	f0 := f
	for k, g := range grad {
		f0 += float64(g) * (float64(x0[k]) - float64(x[k]))
	}
	n1 := projectLinf(w, w.d1, x, grad, -f, lo, hi)
	n2 := projectLinf(w, w.d2, x0, grad, -f0, lo, hi)
	n1, n2 = max(n1, 1e-8), max(n2, 1e-8)
	alpha := min(max(n1/(n1+n2), 0), fabAlphaMax)
	for k := range x {
		v := (float64(x[k])+fabOvershoot*w.d1[k])*(1-alpha) + (float64(x0[k])+fabOvershoot*w.d2[k])*alpha
		x[k] = float32(min(hi, max(lo, v)))
	}
}

// projectLinf writes into d the smallest L∞ step from z with w·d = c and z + d in
// [lo,hi], and returns ‖d‖∞. Along the best direction each coordinate moves
// sign(c·w_k)·min(δ, cap_k), cap_k the room to its bound, so w·d grows piecewise
// linearly in δ (smallestReach finds δ). When the range cannot reach the
// hyperplane, every coordinate goes to its bound (the closest approach).
func projectLinf(w *fabWork, d []float64, z, grad []float32, c, lo, hi float64) float64 {
	clear(d)
	if c == 0 {
		return 0
	}
	sgn := 1.0
	if c < 0 {
		sgn, c = -1, -c
	}
	w.caps = w.caps[:0]
	for k, g := range grad {
		u := sgn * float64(g)
		if u == 0 {
			continue
		}
		room := hi - float64(z[k])
		if u < 0 {
			room = float64(z[k]) - lo
		}
		if room > 0 {
			w.caps = append(w.caps, capWeight{room, math.Abs(u)})
		}
	}
	delta := smallestReach(w.caps, c)
	var norm float64
	for k, g := range grad {
		u := sgn * float64(g)
		if u == 0 {
			continue
		}
		room := hi - float64(z[k])
		dir := 1.0
		if u < 0 {
			room, dir = float64(z[k])-lo, -1
		}
		step := max(min(delta, room), 0)
		d[k] = dir * step
		norm = max(norm, step)
	}
	return norm
}

// smallestReach is the smallest δ with h(δ) = Σ weight·min(δ, cap) ≥ c > 0, +Inf when
// even every cap falls short. It partitions around pivots as quickselect does
// (expected linear time, where sorting the caps cost FAB most of its own time):
// caps known to lie below δ add weight·cap, those above add weight to the slope.
// It reorders caps.
func smallestReach(caps []capWeight, c float64) float64 {
	var below, slope float64
	items := caps
	for len(items) > 0 {
		p := items[len(items)/2].cap
		lt, gt := 0, len(items) // items[:lt] < p, items[gt:] > p
		for i := 0; i < gt; {
			switch {
			case items[i].cap < p:
				items[lt], items[i] = items[i], items[lt]
				lt++
				i++
			case items[i].cap > p:
				gt--
				items[gt], items[i] = items[i], items[gt]
			default:
				i++
			}
		}
		var less, atLeast float64
		for _, it := range items[:lt] {
			less += it.weight * it.cap
		}
		for _, it := range items[lt:] {
			atLeast += it.weight
		}
		if below+less+p*(slope+atLeast) >= c {
			slope += atLeast // δ ≤ p: these caps are not reached
			items = items[:lt]
			continue
		}
		below += less // δ > p: these caps are all reached
		for _, it := range items[lt:gt] {
			below += it.weight * it.cap
		}
		items = items[gt:]
	}
	if slope == 0 {
		return math.Inf(1)
	}
	return (c - below) / slope
}
