package attack

import (
	"context"
	"fmt"
	"math"
	"slices"

	"gibbon/inference"
)

// What APGD and FAB-T share: the per-image outcome they improve run by run, the
// check that a point still fools once quantised, the targets they sweep, and what
// their steps show.

// outcome is, per image, an attack's result so far, kept in a.adv and a.advLogits:
// the clean image until an adversarial point, checked after quantisation, replaces it.
type outcome struct {
	fooled []bool
	norm   []float64 // L∞ distance of the recorded point (+Inf until fooled)
}

// startOutcome sets the result to the clean images; images already misclassified
// (or already of the target class) count as fooled and are not attacked.
func (a *attacker) startOutcome(ctx context.Context) (*outcome, error) {
	if a.cleanLogits == nil {
		ls, err := a.predictAll(ctx, a.req.Images, true)
		if err != nil {
			return nil, err
		}
		a.cleanLogits = ls
	}
	a.adv = a.req.Images.Clone()
	a.advLogits = make([]*inference.Tensor, len(a.cleanLogits))
	for k, l := range a.cleanLogits {
		a.advLogits[k] = l.Clone()
	}
	out := &outcome{fooled: make([]bool, a.n), norm: make([]float64, a.n)}
	for i, p := range preds(meanLogits(a.cleanLogits)) {
		out.fooled[i] = a.obj.success(p, i)
		out.norm[i] = math.Inf(1)
		if out.fooled[i] {
			out.norm[i] = 0
		}
	}
	return out, nil
}

// imageBall is the ball of image i alone.
func (a *attacker) imageBall(i int) Ball {
	return a.ball.Span(i*a.per, (i+1)*a.per)
}

// confirm quantises the candidate points pts (one per listed image, inside its ball),
// judges them with one forward pass, and records those that fool the surrogates and
// lie closer (L∞) than the image's recorded point. It reports which were recorded.
func (a *attacker) confirm(ctx context.Context, out *outcome, pts *inference.Tensor, rows []int) ([]bool, error) {
	q := pts.Clone()
	for j, i := range rows {
		b := a.imageBall(i)
		b.Quantize(q.Data[j*a.per : (j+1)*a.per])
	}
	ls, err := a.predictAll(ctx, q, true)
	if err != nil {
		return nil, err
	}
	mean := meanLogits(ls)
	ok := make([]bool, len(rows))
	for j, i := range rows {
		if !a.obj.success(argmax(row(mean, j)), i) {
			continue
		}
		linf, _ := norms(q.Data[j*a.per:(j+1)*a.per], a.req.Images.Data[i*a.per:(i+1)*a.per], 1)
		if float64(linf[0]) >= out.norm[i] {
			continue
		}
		ok[j] = true
		out.fooled[i], out.norm[i] = true, float64(linf[0])
		copy(a.adv.Data[i*a.per:(i+1)*a.per], q.Data[j*a.per:(j+1)*a.per])
		for k := range ls {
			copy(row(a.advLogits[k], i), row(ls[k], j))
		}
	}
	return ok, nil
}

// notFooled lists the images without an adversarial point yet.
func (o *outcome) notFooled() []int {
	var rows []int
	for i, f := range o.fooled {
		if !f {
			rows = append(rows, i)
		}
	}
	return rows
}

// targetCount resolves Config.TargetClasses for the models' class count.
func (a *attacker) targetCount() (int, error) {
	most := a.classes - 1
	n := a.cfg.TargetClasses
	if n == 0 {
		n = min(9, most)
	}
	if n > most {
		return 0, fmt.Errorf("%s: %d target classes, but the models have %d classes (at most %d wrong ones)", a.cfg.Method, n, a.classes, most)
	}
	a.cfg.TargetClasses = n
	return n, nil
}

// rankedClass is, for each listed image, the class its clean logits (averaged over
// the surrogates) rank at place `rank` (0: the top).
func (a *attacker) rankedClass(rows []int, rank int) []int {
	mean := meanLogits(a.cleanLogits)
	out := make([]int, len(rows))
	for j, i := range rows {
		z := row(mean, i)
		order := make([]int, len(z))
		for c := range order {
			order[c] = c
		}
		slices.SortStableFunc(order, func(p, q int) int {
			switch {
			case z[p] > z[q]:
				return -1
			case z[p] < z[q]:
				return 1
			}
			return 0
		})
		out[j] = order[rank]
	}
	return out
}

// view is what steps show: per image the point under attack, its objective and each
// surrogate's logits there; images no run attacks show their outcome.
type view struct {
	adv    *inference.Tensor
	loss   []float32
	logits []*inference.Tensor
}

// newView starts from the outcome; it is nil (and every method a no-op) when nobody
// listens to the steps.
func (a *attacker) newView() *view {
	if a.onStep == nil {
		return nil
	}
	v := &view{adv: a.adv.Clone(), loss: a.meanObjective(a.advLogits), logits: make([]*inference.Tensor, len(a.advLogits))}
	for k, l := range a.advLogits {
		v.logits[k] = l.Clone()
	}
	return v
}

// update shows images xs (list[n] indexes rows) with their loss and logits.
func (v *view) update(a *attacker, rows, list []int, xs *inference.Tensor, loss []float32, logits []*inference.Tensor) {
	if v == nil {
		return
	}
	for n, j := range list {
		i := rows[j]
		copy(v.adv.Data[i*a.per:(i+1)*a.per], xs.Data[n*a.per:(n+1)*a.per])
		v.loss[i] = loss[n]
		for k := range logits {
			copy(row(v.logits[k], i), row(logits[k], n))
		}
	}
}

// show puts image i's outcome in the view.
func (v *view) show(a *attacker, i int) {
	if v == nil {
		return
	}
	copy(v.adv.Data[i*a.per:(i+1)*a.per], a.adv.Data[i*a.per:(i+1)*a.per])
	v.loss[i] = 0
	for k := range a.advLogits {
		copy(row(v.logits[k], i), row(a.advLogits[k], i))
		v.loss[i] += a.obj.value(row(a.advLogits[k], i), i) / float32(len(a.advLogits))
	}
}

// reportRun reports the view as step `step` of run `run`.
func (a *attacker) reportRun(v *view, run, runs, step int) error {
	if v == nil {
		return nil
	}
	return a.report(Step{Restart: run, Restarts: runs, Step: step, Steps: a.cfg.Steps, Adv: v.adv,
		Loss: slices.Clone(v.loss), Pred: preds(meanLogits(v.logits)), Logits: v.logits})
}

// reportOutcome reports the result as the final step.
func (a *attacker) reportOutcome(runs int) error {
	return a.report(Step{Restart: max(runs-1, 0), Restarts: runs, Step: a.cfg.Steps, Steps: a.cfg.Steps, Final: true, Best: runs > 1,
		Adv: a.adv, Loss: a.meanObjective(a.advLogits), Pred: preds(meanLogits(a.advLogits)), Logits: a.advLogits})
}

// setLoss shows the listed images' (list[n] indexes rows) objective values.
func (v *view) setLoss(rows, list []int, loss []float64) {
	if v == nil {
		return
	}
	for _, j := range list {
		v.loss[rows[j]] = float32(loss[j])
	}
}
