package train

import (
	"context"
	"fmt"
	"math/rand/v2"

	"gibbon/inference"
	"gibbon/inference/mnist"
)

// gradFunc returns the logits at x and the gradient of the summed cross-entropy loss
// with respect to x.
type gradFunc func(ctx context.Context, x *inference.Tensor, labels []uint8) (logits, grad *inference.Tensor, err error)

// PGDConfig is an L∞ projected gradient ascent on the cross-entropy loss (Madry et al.
// 2018), pixels in [0,1].
type PGDConfig struct {
	Eps         float64 `json:"eps"`
	Step        float64 `json:"step"`
	Steps       int     `json:"steps"`
	RandomStart bool    `json:"random_start"`
}

func (c PGDConfig) validate() error {
	if !(c.Eps >= 0 && c.Eps <= 1) {
		return fmt.Errorf("attack eps %g must be in [0,1]", c.Eps)
	}
	if !(c.Step > 0) || c.Steps < 1 {
		return fmt.Errorf("attack needs a positive step size and at least one step (got step %g, %d steps)", c.Step, c.Steps)
	}
	return nil
}

// perturb runs the attack on a batch x (left unchanged) and returns the adversarial
// batch. rngs[i] draws sample i's random start.
//
// With stopEarly, a sample is frozen at the first point where the model misclassifies
// it, and fooled[i] reports that; only the samples still classified correctly are run
// at the next step. The sample then counts as broken: this is never weaker than
// scoring only the last iterate, and it saves most of the work on undefended models.
func perturb(ctx context.Context, fn gradFunc, x *inference.Tensor, labels []uint8, cfg PGDConfig, rngs []*rand.Rand, stopEarly bool) (adv *inference.Tensor, fooled []bool, err error) {
	const P = mnist.Pixels
	n := len(labels)
	adv = x.Clone()
	if cfg.RandomStart {
		for i := range n {
			r := rngs[i]
			a := adv.Data[i*P : (i+1)*P]
			for j := range a {
				a[j] = clamp01(a[j] + float32((2*r.Float64()-1)*cfg.Eps))
			}
		}
	}
	fooled = make([]bool, n)
	active := make([]int, n)
	for i := range active {
		active[i] = i
	}
	eps, step := float32(cfg.Eps), float32(cfg.Step)
	for it := 0; it <= cfg.Steps && len(active) > 0; it++ {
		if !stopEarly && it == cfg.Steps {
			break // the last iterate needs no gradient
		}
		batch := inference.NewTensor(int64(len(active)), 1, mnist.Rows, mnist.Cols)
		bl := make([]uint8, len(active))
		for k, i := range active {
			copy(batch.Data[k*P:(k+1)*P], adv.Data[i*P:(i+1)*P])
			bl[k] = labels[i]
		}
		logits, grad, err := fn(ctx, batch, bl)
		if err != nil {
			return nil, nil, err
		}
		pred := argmax(logits)
		next := active[:0]
		for k, i := range active {
			if stopEarly && pred[k] != int(labels[i]) {
				fooled[i] = true
				continue
			}
			if it == cfg.Steps {
				continue
			}
			a := adv.Data[i*P : (i+1)*P]
			x0 := x.Data[i*P : (i+1)*P]
			g := grad.Data[k*P : (k+1)*P]
			for j := range a {
				v := a[j]
				switch {
				case g[j] > 0:
					v += step
				case g[j] < 0:
					v -= step
				}
				v = min(max(v, x0[j]-eps), x0[j]+eps)
				a[j] = clamp01(v)
			}
			next = append(next, i)
		}
		active = next
	}
	return adv, fooled, nil
}

func clamp01(v float32) float32 { return min(max(v, 0), 1) }
