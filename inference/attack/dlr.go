package attack

import "gibbon/inference"

// dlrDenominatorFloor keeps the DLR ratio finite when the top logits tie (as the
// paper's implementation does).
const dlrDenominatorFloor = 1e-12

// dlr is the untargeted Difference of Logits Ratio of logits z for label y,
// −(z_y − max_{j≠y} z_j)/(z_π1 − z_π3), with π ordering the logits from the largest. When
// seed is non-nil its len(z) values receive the loss's gradient with respect to z.
func dlr(z []float32, y int, seed []float32) float32 {
	top := top4(z)
	r := runnerUp(z, y)
	num := float64(z[y]) - float64(z[r])
	den := float64(z[top[0]]) - float64(z[top[2]]) + dlrDenominatorFloor
	if seed != nil {
		clear(seed)
		seed[y] -= float32(1 / den)
		seed[r] += float32(1 / den)
		seed[top[0]] += float32(num / (den * den))
		seed[top[2]] -= float32(num / (den * den))
	}
	return float32(-num / den)
}

// dlrTargeted is the targeted DLR loss of logits z for label y and target t,
// −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2); seed as for dlr.
func dlrTargeted(z []float32, y, t int, seed []float32) float32 {
	top := top4(z)
	num := float64(z[y]) - float64(z[t])
	den := float64(z[top[0]]) - (float64(z[top[2]])+float64(z[top[3]]))/2 + dlrDenominatorFloor
	if seed != nil {
		clear(seed)
		seed[y] -= float32(1 / den)
		seed[t] += float32(1 / den)
		seed[top[0]] += float32(num / (den * den))
		seed[top[2]] -= float32(num / (2 * den * den))
		seed[top[3]] -= float32(num / (2 * den * den))
	}
	return float32(-num / den)
}

// top4 returns the classes of the four largest logits, largest first (ties by the
// lower class). Callers check that there are enough classes: the missing places
// repeat the last class.
func top4(z []float32) [4]int {
	top := [4]int{-1, -1, -1, -1}
	for j, v := range z {
		for k := range top {
			if top[k] < 0 || v > z[top[k]] {
				copy(top[k+1:], top[k:3])
				top[k] = j
				break
			}
		}
	}
	for k := 1; k < 4; k++ {
		if top[k] < 0 {
			top[k] = top[k-1]
		}
	}
	return top
}

// dlrClasses says which label and target image i's DLR loss compares: untargeted
// (label only), targeted at Config.Target (cls holds the target), or aimed (APGD-T).
func (o *objective) dlrClasses(i int) (label, target int, targeted bool) {
	switch {
	case o.aim != nil:
		return o.cls[i], o.aim[i], true
	case o.targeted:
		return o.labels[i], o.cls[i], true
	}
	return o.cls[i], -1, false
}

// dlrSeed evaluates the DLR loss on every row of logits and returns the per-image loss
// and the logit seed [N,C] whose backward pass is the loss's input gradient.
func (o *objective) dlrSeed(logits *inference.Tensor) ([]float32, *inference.Tensor) {
	n, c := int(logits.Shape[0]), int(logits.Shape[1])
	loss := make([]float32, n)
	seed := inference.NewTensor(int64(n), int64(c))
	for i := range n {
		s := seed.Data[i*c : (i+1)*c]
		if y, t, targeted := o.dlrClasses(i); targeted {
			loss[i] = dlrTargeted(row(logits, i), y, t, s)
		} else {
			loss[i] = dlr(row(logits, i), y, s)
		}
	}
	return loss, seed
}

// subset is the objective of the listed images, in their order.
func (o *objective) subset(rows []int) *objective {
	pick := func(v []int) []int {
		if v == nil {
			return nil
		}
		out := make([]int, len(rows))
		for j, i := range rows {
			out[j] = v[i]
		}
		return out
	}
	return &objective{loss: o.loss, targeted: o.targeted, cls: pick(o.cls), classes: o.classes, labels: pick(o.labels), aim: pick(o.aim)}
}
