package train

import (
	"context"
	"math"
	"math/rand/v2"

	"gibbon/inference"
	"gibbon/inference/mnist"
)

// tradesStartNoise is the standard deviation of TRADES's start around the clean image.
const tradesStartNoise = 0.001

// tradesBatch builds the batch of the TRADES-style objective (Zhang et al., ICML 2019,
// "Theoretically principled trade-off between robustness and accuracy"): the clean
// images with one-hot label weights, then adversarial images x' with weights β·p, p
// the model's softmax at the clean image held fixed. The summed cross-entropy is then
// CE(f(x), y) + β·KL(p ‖ softmax f(x')) plus a constant (p's entropy). x' maximises
// that KL inside the ball: from x + N(0, 0.001²), cfg.Steps signed steps of cfg.Step,
// each projected onto the ball and [0,1]. Holding p fixed (the reference lets the
// gradient flow through it too) lets the cross-entropy graphs compute everything.
// It also returns β·Σ_i H(p_i), the constant to subtract from the summed loss.
func (t *Trainer) tradesBatch(ctx context.Context, x *inference.Tensor, labels []uint8, cfg PGDConfig, beta float64, rng *rand.Rand) (*inference.Tensor, *inference.Tensor, float64, error) {
	out, err := t.attack.run(ctx, x, labels)
	if err != nil {
		return nil, nil, 0, err
	}
	p := softmax(out[logitOutput])
	adv := x.Clone()
	eps, step := float32(cfg.Eps), float32(cfg.Step)
	for j := range adv.Data {
		adv.Data[j] = clamp01(adv.Data[j] + float32(rng.NormFloat64()*tradesStartNoise))
	}
	for range cfg.Steps {
		out, err := t.attack.runWeights(ctx, adv, p)
		if err != nil {
			return nil, nil, 0, err
		}
		g := out[inputGrad]
		for j, v := range adv.Data {
			switch {
			case g.Data[j] > 0:
				v += step
			case g.Data[j] < 0:
				v -= step
			}
			adv.Data[j] = clamp01(min(max(v, x.Data[j]-eps), x.Data[j]+eps))
		}
	}
	n := len(labels)
	batch := inference.NewTensor(int64(2*n), 1, mnist.Rows, mnist.Cols)
	copy(batch.Data, x.Data)
	copy(batch.Data[len(x.Data):], adv.Data)
	w := inference.NewTensor(int64(2*n), mnist.Classes)
	copy(w.Data, oneHot(labels).Data)
	var entropy float64
	for j, v := range p.Data {
		w.Data[n*mnist.Classes+j] = float32(beta) * v
		if v > 0 {
			entropy -= float64(v) * math.Log(float64(v))
		}
	}
	return batch, w, beta * entropy, nil
}

// softmax of each row of [N,C] logits, in float64.
func softmax(logits *inference.Tensor) *inference.Tensor {
	c := int(logits.Shape[1])
	out := inference.NewTensor(logits.Shape...)
	for i := range int(logits.Shape[0]) {
		z := logits.Data[i*c : (i+1)*c]
		m := math.Inf(-1)
		for _, v := range z {
			m = math.Max(m, float64(v))
		}
		var s float64
		for _, v := range z {
			s += math.Exp(float64(v) - m)
		}
		for j, v := range z {
			out.Data[i*c+j] = float32(math.Exp(float64(v)-m) / s)
		}
	}
	return out
}
