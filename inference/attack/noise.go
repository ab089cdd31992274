package attack

import (
	"context"

	"gibbon/inference"
)

// noise is the baseline: random ±ε per value (the corners of the L∞ ball, where
// random noise of that budget is strongest), quantised. With Queries > 1 each image
// gets up to that many draws, stopping at the first that fools the surrogates, else
// keeping the one with the highest objective.
func (a *attacker) noise(ctx context.Context) error {
	eps := float64(a.cfg.Eps)
	done := make([]bool, a.n)
	bestLoss := make([]float32, a.n)
	delta := make([]float64, len(a.req.Images.Data))
	cand := a.req.Images.Clone()
	last := 0
	for q := 0; ; q++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var active []int
		for i := range a.n {
			if !done[i] && a.queries[i] < a.cfg.Queries {
				active = append(active, i)
			}
		}
		if len(active) == 0 {
			break
		}
		for _, i := range active {
			lo, hi := i*a.per, (i+1)*a.per
			for j := lo; j < hi; j++ {
				delta[j] = eps
				if a.rng.IntN(2) == 0 {
					delta[j] = -eps
				}
			}
			a.compose(cand.Data[lo:hi], delta[lo:hi], &span{lo, hi})
		}
		xs := gatherRows(cand, active)
		ls, err := a.predictAll(ctx, xs, true)
		if err != nil {
			return err
		}
		f := meanLogits(ls)
		if q == 0 {
			a.adv = cand.Clone()
			a.advLogits = make([]*inference.Tensor, len(ls))
			for k, l := range ls {
				a.advLogits[k] = l.Clone()
			}
		}
		for j, i := range active {
			a.queries[i]++
			var loss float32
			for _, l := range ls {
				loss += a.obj.value(row(l, j), i) / float32(len(ls))
			}
			succ := a.obj.success(argmax(row(f, j)), i)
			if q == 0 || succ || loss > bestLoss[i] {
				bestLoss[i] = loss
				lo, hi := i*a.per, (i+1)*a.per
				copy(a.adv.Data[lo:hi], cand.Data[lo:hi])
				for k := range ls {
					copy(row(a.advLogits[k], i), row(ls[k], j))
				}
			}
			done[i] = succ
		}
		last = q
		if err := a.reportNoise(q, false); err != nil {
			return err
		}
	}
	a.offGrid = countOffGrid(a.ball, a.adv.Data)
	return a.reportNoise(last, true)
}

func (a *attacker) reportNoise(q int, final bool) error {
	if a.onStep == nil {
		return nil
	}
	return a.report(Step{Step: q, Steps: a.cfg.Queries - 1, Restarts: 1, Final: final, Adv: a.adv,
		Loss: a.meanObjective(a.advLogits), Pred: preds(meanLogits(a.advLogits)), Logits: a.advLogits,
		Queries: append([]int(nil), a.queries...)})
}
