package inference

import (
	"fmt"
	"math"
	"sort"
)

// Prediction is one class and its probability.
type Prediction struct {
	Index int
	Label string
	Prob  float32
}

// Softmax turns logits into probabilities in place (max-shifted, so large logits
// do not overflow).
func Softmax(v []float32) {
	if len(v) == 0 {
		return
	}
	hi := v[0]
	for _, x := range v {
		hi = max(hi, x)
	}
	var sum float64
	for i, x := range v {
		e := math.Exp(float64(x - hi))
		v[i] = float32(e)
		sum += e
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / sum)
	}
}

// TopK is the k most probable classes, most probable first (ties by index), named
// by labels (a class without a label is named by its index).
func TopK(probs []float32, labels []string, k int) []Prediction {
	idx := make([]int, len(probs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
	k = min(k, len(idx))
	out := make([]Prediction, k)
	for i, j := range idx[:k] {
		label := fmt.Sprint(j)
		if j < len(labels) {
			label = labels[j]
		}
		out[i] = Prediction{Index: j, Label: label, Prob: probs[j]}
	}
	return out
}
