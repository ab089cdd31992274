package attack

import (
	"context"
	"fmt"
	"math"

	"gibbon/inference"
)

// gradient returns the objective's gradient at x averaged over the surrogates, with
// the objective per image and each surrogate's logits at x.
func (a *attacker) gradient(ctx context.Context, x *inference.Tensor) (*inference.Tensor, []float32, []*inference.Tensor, error) {
	var sum *inference.Tensor
	if len(a.req.Surrogates) > 1 {
		sum = inference.NewTensor(x.Shape...)
	}
	loss := make([]float32, a.n)
	logits := make([]*inference.Tensor, len(a.req.Surrogates))
	k := float32(len(a.req.Surrogates))
	for s, m := range a.req.Surrogates {
		net := m.Net.(Differentiable)
		var g *Gradient
		var err error
		if a.obj.loss == LossMargin {
			g, err = a.marginGradient(ctx, s, m.Name, net, x)
		} else {
			if a.oneHot == nil {
				a.oneHot = a.obj.oneHot()
			}
			g, err = a.callGradient(ctx, m.Name, net, x, CrossEntropy, a.oneHot)
			if err == nil && a.obj.targeted {
				for j := range g.Input.Data {
					g.Input.Data[j] = -g.Input.Data[j]
				}
			}
		}
		if err != nil {
			return nil, nil, nil, err
		}
		if len(a.req.Surrogates) == 1 {
			sum = g.Input // the mean of one: no copy
		} else {
			for j, v := range g.Input.Data {
				sum.Data[j] += v / k
			}
		}
		for i, v := range a.obj.values(g.Logits) {
			loss[i] += v / k
		}
		logits[s] = g.Logits
	}
	return sum, loss, logits, nil
}

// callGradient runs one forward and backward pass and checks what comes back.
func (a *attacker) callGradient(ctx context.Context, name string, net Differentiable, x *inference.Tensor, kind LossKind, w *inference.Tensor) (*Gradient, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g, err := net.Gradient(ctx, x, kind, w)
	if err != nil {
		return nil, wrapModelErr(ctx, name, err)
	}
	n := int(x.Shape[0])
	a.fwd += int64(n)
	a.bwd += int64(n)
	if g == nil || g.Input == nil || g.Input.Validate() != nil || !sameShape(g.Input.Shape, x.Shape) {
		return nil, fmt.Errorf("model %s returned an input gradient that does not match the images %v", name, x.Shape)
	}
	if err := checkLogits(name, g.Logits, n, a.classes); err != nil {
		return nil, err
	}
	if !inference.AllFinite(g.Input.Data) {
		return nil, fmt.Errorf("model %s returned a non-finite gradient", name)
	}
	return g, nil
}

// marginGradient takes the margin's gradient through a logit seed. The seed needs the
// runner-up class at x, known only after the pass: it is guessed from the last pass
// and the images whose guess was wrong are passed again, so the gradient is exact.
func (a *attacker) marginGradient(ctx context.Context, s int, name string, net Differentiable, x *inference.Tensor) (*Gradient, error) {
	guess := a.runnerUp[s]
	g, err := a.callGradient(ctx, name, net, x, LogitSeed, a.obj.marginSeed(guess))
	if err != nil {
		return nil, err
	}
	var wrong []int
	for i := range a.n {
		if r := runnerUp(row(g.Logits, i), a.obj.cls[i]); r != guess[i] {
			guess[i] = r
			wrong = append(wrong, i)
		}
	}
	if len(wrong) == 0 {
		return g, nil
	}
	sub := &objective{loss: a.obj.loss, targeted: a.obj.targeted, classes: a.classes, cls: make([]int, len(wrong))}
	others := make([]int, len(wrong))
	for j, i := range wrong {
		sub.cls[j], others[j] = a.obj.cls[i], guess[i]
	}
	xs := gatherRows(x, wrong)
	g2, err := a.callGradient(ctx, name, net, xs, LogitSeed, sub.marginSeed(others))
	if err != nil {
		return nil, err
	}
	scatterRows(g.Input, g2.Input, wrong)
	scatterRows(g.Logits, g2.Logits, wrong)
	return g, nil
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// gatherRows copies the listed images of a batch into a new batch.
func gatherRows(x *inference.Tensor, rows []int) *inference.Tensor {
	per := x.Numel() / int(x.Shape[0])
	shape := append([]int64{int64(len(rows))}, x.Shape[1:]...)
	out := inference.NewTensor(shape...)
	for j, i := range rows {
		copy(out.Data[j*per:(j+1)*per], x.Data[i*per:(i+1)*per])
	}
	return out
}

// scatterRows writes src's images back into dst at the listed rows.
func scatterRows(dst, src *inference.Tensor, rows []int) {
	per := dst.Numel() / int(dst.Shape[0])
	for j, i := range rows {
		copy(dst.Data[i*per:(i+1)*per], src.Data[j*per:(j+1)*per])
	}
}

// iterative runs FGSM, BIM, PGD, MI-FGSM, DI-FGSM and M-DI²-FGSM: sign steps of size
// alpha on the gradient (or on the momentum of L1-normalised gradients), each followed
// by projection onto the ball; the end point is quantised and passed forward once to
// judge it. PGD restarts keep, per image, a successful end point, else the highest
// objective.
func (a *attacker) iterative(ctx context.Context) error {
	cfg := a.cfg
	x0 := a.req.Images
	var geo geometry
	diverse := cfg.DiversityProb > 0 && (cfg.Method == DIFGSM || cfg.Method == MDI2FGSM)
	if diverse {
		geo, _ = newGeometry(x0.Shape, cfg.Layout)
	}
	momentum := cfg.Momentum > 0 && (cfg.Method == MIFGSM || cfg.Method == MDI2FGSM)
	restarts := 1
	if cfg.Method == PGD {
		restarts = cfg.Restarts
	}
	var bestSucc []bool
	var bestLoss []float32
	for r := range restarts {
		x := x0.Clone()
		if cfg.Method == PGD && !cfg.NoRandomStart {
			for j := range x.Data {
				x.Data[j] += cfg.Eps * (2*a.rng.Float32() - 1)
			}
			a.ball.Project(x.Data)
		}
		var mom []float32
		if momentum {
			mom = make([]float32, len(x.Data))
		}
		for t := range cfg.Steps {
			if err := ctx.Err(); err != nil {
				return err
			}
			in := x
			var div *diversity
			if diverse {
				div = drawDiversity(a.rng, geo, cfg.DiversityProb, cfg.DiversityMin, cfg.Range[0])
				if div.any() {
					in = div.apply(x)
				} else {
					div = nil
				}
			}
			g, loss, logits, err := a.gradient(ctx, in)
			if err != nil {
				return err
			}
			if div != nil {
				div.adjoint(g)
			}
			if err := a.report(Step{Restart: r, Restarts: restarts, Step: t, Steps: cfg.Steps, Adv: x,
				Loss: loss, Pred: preds(meanLogits(logits)), Logits: logits, Diverse: div != nil}); err != nil {
				return err
			}
			dir := g.Data
			if momentum {
				for i := range a.n {
					gi := g.Data[i*a.per : (i+1)*a.per]
					var l1 float64
					for _, v := range gi {
						l1 += math.Abs(float64(v))
					}
					mi := mom[i*a.per : (i+1)*a.per]
					inv := float32(0)
					if l1 > 0 {
						inv = float32(1 / l1)
					}
					for j, v := range gi {
						mi[j] = cfg.Momentum*mi[j] + v*inv
					}
				}
				dir = mom
			}
			a.ball.SignStep(x.Data, dir, cfg.Alpha)
		}
		a.ball.Quantize(x.Data)
		logits, err := a.predictAll(ctx, x, true)
		if err != nil {
			return err
		}
		loss := a.meanObjective(logits)
		pred := preds(meanLogits(logits))
		if err := a.report(Step{Restart: r, Restarts: restarts, Step: cfg.Steps, Steps: cfg.Steps, Final: restarts == 1,
			Adv: x, Loss: loss, Pred: pred, Logits: logits}); err != nil {
			return err
		}
		if r == 0 {
			a.adv, a.advLogits = x, logits
			bestLoss = loss
			bestSucc = make([]bool, a.n)
			for i, p := range pred {
				bestSucc[i] = a.obj.success(p, i)
			}
			continue
		}
		for i, p := range pred {
			succ := a.obj.success(p, i)
			if (succ && !bestSucc[i]) || (succ == bestSucc[i] && loss[i] > bestLoss[i]) {
				bestSucc[i], bestLoss[i] = succ, loss[i]
				copy(a.adv.Data[i*a.per:(i+1)*a.per], x.Data[i*a.per:(i+1)*a.per])
				for k, l := range logits {
					copy(row(a.advLogits[k], i), row(l, i))
				}
			}
		}
	}
	a.offGrid = countOffGrid(a.ball, a.adv.Data)
	if restarts == 1 {
		return nil
	}
	return a.report(Step{Restart: restarts - 1, Restarts: restarts, Step: cfg.Steps, Steps: cfg.Steps, Final: true, Best: true,
		Adv: a.adv, Loss: bestLoss, Pred: preds(meanLogits(a.advLogits)), Logits: a.advLogits})
}

// countOffGrid counts values of x that are not on the quantisation grid.
func countOffGrid(b *Ball, x []float32) int {
	if b.step == 0 {
		return 0
	}
	// The level nearest v by a product and Floor, not a quotient and Round (under
	// a third of the time on an image): the two pick different levels only for v
	// about halfway between two, which is on neither (TestCountOffGrid).
	n := 0
	inv := 1 / b.step
	for _, v := range x {
		k := math.Floor((float64(v)-b.rlo)*inv + 0.5)
		if float32(b.rlo+k*b.step) != v {
			n++
		}
	}
	return n
}
