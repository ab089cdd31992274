package attack

import (
	"fmt"
	"math"

	"gibbon/inference"
)

// objective is what an attack maximises, per image: cls holds the label (untargeted)
// or the target (targeted).
type objective struct {
	loss     Loss
	targeted bool
	cls      []int
	classes  int
	// labels are the true classes (targeted DLR compares the target with them).
	labels []int
	// aim, when set, holds per image the class a targeted DLR loss aims at while
	// success stays untargeted (APGD-T: any wrong class counts).
	aim []int
}

// value is the objective for one image's logits.
func (o *objective) value(z []float32, i int) float32 {
	c := o.cls[i]
	switch o.loss {
	case LossDLR:
		y, t, targeted := o.dlrClasses(i)
		if targeted {
			return dlrTargeted(z, y, t, nil)
		}
		return dlr(z, y, nil)
	case LossMargin:
		other := runnerUp(z, c)
		if o.targeted {
			return z[c] - z[other]
		}
		return z[other] - z[c]
	default:
		ce := crossEntropy(z, c)
		if o.targeted {
			return -ce
		}
		return ce
	}
}

// values is the objective for every image of a logits batch.
func (o *objective) values(logits *inference.Tensor) []float32 {
	out := make([]float32, len(o.cls))
	for i := range o.cls {
		out[i] = o.value(row(logits, i), i)
	}
	return out
}

// success is whether prediction p counts as a successful attack on image i.
func (o *objective) success(p, i int) bool {
	if o.targeted {
		return p == o.cls[i]
	}
	return p != o.cls[i]
}

// seed is the logit seed whose gradient is the margin's, given the runner-up class of
// each image (negated later for nothing: the seed already points uphill).
func (o *objective) marginSeed(others []int) *inference.Tensor {
	w := inference.NewTensor(int64(len(o.cls)), int64(o.classes))
	for i, c := range o.cls {
		r := w.Data[i*o.classes : (i+1)*o.classes]
		if o.targeted {
			r[c], r[others[i]] = 1, -1
		} else {
			r[c], r[others[i]] = -1, 1
		}
	}
	return w
}

// oneHot is the label-weight tensor of cls.
func (o *objective) oneHot() *inference.Tensor {
	w := inference.NewTensor(int64(len(o.cls)), int64(o.classes))
	for i, c := range o.cls {
		w.Data[i*o.classes+c] = 1
	}
	return w
}

// runnerUp is the largest logit's class other than c.
func runnerUp(z []float32, c int) int {
	best := -1
	for j, v := range z {
		if j != c && (best < 0 || v > z[best]) {
			best = j
		}
	}
	return best
}

// crossEntropy is −log softmax(z)_c, computed stably in float64.
func crossEntropy(z []float32, c int) float32 {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range z {
		s += math.Exp(float64(v) - m)
	}
	return float32(m + math.Log(s) - float64(z[c]))
}

func row(t *inference.Tensor, i int) []float32 {
	c := int(t.Shape[1])
	return t.Data[i*c : (i+1)*c]
}

func argmax(z []float32) int {
	best := 0
	for j, v := range z {
		if v > z[best] {
			best = j
		}
	}
	return best
}

func argmin(z []float32) int {
	best := 0
	for j, v := range z {
		if v < z[best] {
			best = j
		}
	}
	return best
}

// preds is the argmax of each row.
func preds(logits *inference.Tensor) []int {
	n := int(logits.Shape[0])
	out := make([]int, n)
	for i := range n {
		out[i] = argmax(row(logits, i))
	}
	return out
}

// meanLogits averages logits tensors of equal shape.
func meanLogits(ls []*inference.Tensor) *inference.Tensor {
	if len(ls) == 1 {
		return ls[0]
	}
	m := inference.NewTensor(ls[0].Shape...)
	for _, l := range ls {
		for j, v := range l.Data {
			m.Data[j] += v
		}
	}
	inv := 1 / float32(len(ls))
	for j := range m.Data {
		m.Data[j] *= inv
	}
	return m
}

// checkLogits verifies a model returned [n, classes] logits, all finite.
func checkLogits(name string, l *inference.Tensor, n, classes int) error {
	if l == nil || len(l.Shape) != 2 || int(l.Shape[0]) != n || (classes > 0 && int(l.Shape[1]) != classes) || l.Validate() != nil {
		var shape []int64
		if l != nil {
			shape = l.Shape
		}
		if classes > 0 {
			return fmt.Errorf("model %s returned logits of shape %v, want [%d %d]", name, shape, n, classes)
		}
		return fmt.Errorf("model %s returned logits of shape %v, want [%d classes]", name, shape, n)
	}
	if l.Shape[1] < 2 {
		return fmt.Errorf("model %s returns %d class, need at least 2", name, l.Shape[1])
	}
	for _, v := range l.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("model %s returned a non-finite logit (%g)", name, v)
		}
	}
	return nil
}
