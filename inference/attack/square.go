package attack

import (
	"context"
	"math"

	"gibbon/inference"
)

// square is the L∞ Square Attack (Andriushchenko et al., ECCV 2020): random search
// over square patches of ±ε, using predictions only. It starts from vertical stripes of
// ±ε, then each query changes one random square (its side shrinking on the paper's
// schedule) to a random ±ε per channel and keeps the change if the loss drops: the
// margin z_y − max_{j≠y} z_j untargeted, cross-entropy of the target targeted. Images
// stop once fooled; each image gets at most Queries predictions, every one quantised.
func (a *attacker) square(ctx context.Context) error {
	cfg := a.cfg
	x0 := a.req.Images
	geo, _ := newGeometry(x0.Shape, cfg.Layout)
	eps := float64(cfg.Eps)

	// delta holds the perturbation as ±ε per value before clipping to the ball.
	delta := make([]float64, len(x0.Data))
	for i := range a.n {
		for c := range geo.c {
			for xx := range geo.w {
				s := eps
				if a.rng.IntN(2) == 0 {
					s = -eps
				}
				for y := range geo.h {
					delta[geo.at(i, c, y, xx)] = s
				}
			}
		}
	}
	best := inference.NewTensor(x0.Shape...)
	a.compose(best.Data, delta, nil)
	logits, err := a.predictAll(ctx, best, true)
	if err != nil {
		return err
	}
	for i := range a.queries {
		a.queries[i]++
	}
	fused := meanLogits(logits)
	bestLoss := make([]float64, a.n)
	done := make([]bool, a.n)
	for i := range a.n {
		bestLoss[i] = a.squareLoss(row(fused, i), i)
		done[i] = a.obj.success(argmax(row(fused, i)), i)
	}
	a.adv, a.advLogits = best, logits
	last := 0
	if err := a.reportBlackBox(0, false, logits); err != nil {
		return err
	}

	side := func(it int) int {
		budget := cfg.Queries
		if a.squareRawSchedule {
			budget = 10000 // the schedule's own scale: no rescaling
		}
		p := squareP(float64(cfg.SquareP), it, budget)
		s := int(math.Round(math.Sqrt(p * float64(geo.h*geo.w))))
		return min(max(s, 1), max(geo.h-1, 1), max(geo.w-1, 1))
	}
	cand := best.Clone()
	for it := 1; ; it++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		var active []int
		for i := range a.n {
			if !done[i] && a.queries[i] < cfg.Queries {
				active = append(active, i)
			}
		}
		if len(active) == 0 {
			break
		}
		s := side(it - 1)
		// Only the square changes: each active image's values there (delta before this
		// query, kept to undo it) are composed again, the rest of cand equals best.
		wins := make([]squareWindow, len(active))
		saved := make([][]float64, len(active))
		for j, i := range active {
			w := squareWindow{y: a.rng.IntN(geo.h - s + 1), x: a.rng.IntN(geo.w - s + 1), side: s}
			wins[j] = w
			w.each(geo, i, func(_, k int) { saved[j] = append(saved[j], delta[k]) })
			// Draw until the square changes the image (a patch can repeat the current one).
			for try := 0; try < 10; try++ {
				for c := range geo.c {
					v := eps
					if a.rng.IntN(2) == 0 {
						v = -eps
					}
					w.each(geo, i, func(ch, k int) {
						if ch == c {
							delta[k] = v
						}
					})
				}
				changed := false
				w.each(geo, i, func(_, k int) {
					cand.Data[k] = a.composeAt(k, delta[k])
					changed = changed || cand.Data[k] != best.Data[k]
				})
				if changed {
					break
				}
			}
		}
		xs := gatherRows(cand, active)
		ls, err := a.predictAll(ctx, xs, true)
		if err != nil {
			return err
		}
		f := meanLogits(ls)
		for j, i := range active {
			a.queries[i]++
			loss := a.squareLoss(row(f, j), i)
			if loss < bestLoss[i] {
				bestLoss[i] = loss
				wins[j].each(geo, i, func(_, k int) { best.Data[k] = cand.Data[k] })
				for k := range logits {
					copy(row(logits[k], i), row(ls[k], j))
				}
				done[i] = a.obj.success(argmax(row(f, j)), i)
			} else {
				n := 0
				wins[j].each(geo, i, func(_, k int) {
					delta[k], cand.Data[k] = saved[j][n], best.Data[k]
					n++
				})
			}
		}
		last = it
		if err := a.reportBlackBox(it, false, logits); err != nil {
			return err
		}
	}
	a.offGrid = countOffGrid(a.ball, best.Data)
	return a.reportBlackBox(last, true, logits)
}

type span struct{ lo, hi int }

// compose writes x0 + delta, put into the ball and quantised, into dst (the values
// dst covers: all, or one image's span).
func (a *attacker) compose(dst []float32, delta []float64, sp *span) {
	lo := 0
	if sp != nil {
		lo = sp.lo
	}
	for j := range dst {
		dst[j] = float32(float64(a.req.Images.Data[lo+j]) + delta[j])
	}
	b := *a.ball
	if sp != nil {
		b = a.ball.Span(sp.lo, sp.hi)
	}
	b.Quantize(dst)
}

// composeAt is value k of x0 + d, put into the ball and quantised.
func (a *attacker) composeAt(k int, d float64) float32 {
	v := [1]float32{float32(float64(a.req.Images.Data[k]) + d)}
	b := a.ball.Span(k, k+1)
	b.Quantize(v[:])
	return v[0]
}

// squareWindow is a square of side pixels at row y, column x.
type squareWindow struct{ y, x, side int }

// each calls fn with the channel and flat index of every value of image i in the
// window, channel by channel.
func (w squareWindow) each(geo geometry, i int, fn func(c, k int)) {
	for c := range geo.c {
		for y := w.y; y < w.y+w.side; y++ {
			for x := w.x; x < w.x+w.side; x++ {
				fn(c, geo.at(i, c, y, x))
			}
		}
	}
}

// squareLoss is what Square Attack minimises for image i's logits z: the margin
// untargeted, the target's cross-entropy targeted.
func (a *attacker) squareLoss(z []float32, i int) float64 {
	c := a.obj.cls[i]
	if a.obj.targeted {
		return float64(crossEntropy(z, c))
	}
	return float64(z[c] - z[runnerUp(z, c)])
}

// squareP is the paper's schedule for the fraction of pixels a square covers,
// rescaled from 10,000 iterations to the budget.
func squareP(pInit float64, it, budget int) float64 {
	it = int(float64(it) / float64(budget) * 10000)
	switch {
	case it <= 10:
		return pInit
	case it <= 50:
		return pInit / 2
	case it <= 200:
		return pInit / 4
	case it <= 500:
		return pInit / 8
	case it <= 1000:
		return pInit / 16
	case it <= 2000:
		return pInit / 32
	case it <= 4000:
		return pInit / 64
	case it <= 6000:
		return pInit / 128
	case it <= 8000:
		return pInit / 256
	default:
		return pInit / 512
	}
}

// reportBlackBox reports the best images so far (a.adv, with the surrogates' logits).
func (a *attacker) reportBlackBox(it int, final bool, logits []*inference.Tensor) error {
	if a.onStep == nil {
		return nil
	}
	return a.report(Step{Step: it, Steps: a.cfg.Queries - 1, Restarts: 1, Final: final, Adv: a.adv,
		Loss: a.meanObjective(logits), Pred: preds(meanLogits(logits)), Logits: logits, Queries: append([]int(nil), a.queries...)})
}
