package inference

import (
	"context"
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

// Probabilities runs the classifier on one preprocessed image (batch 1) and returns
// a probability per class (softmax of the logits, or the graph's own output when
// the manifest says it ends in a softmax).
func (m *Model) Probabilities(ctx context.Context, x *Tensor) ([]float32, error) {
	if m.Task != TaskClassifier {
		return nil, fmt.Errorf("model %q is a %s, not a classifier", m.Name, m.Task)
	}
	out, err := m.session.Run(ctx, map[string]*Tensor{m.input: x})
	if err != nil {
		return nil, err
	}
	y := out[m.output]
	if y == nil {
		return nil, fmt.Errorf("model %q returned no output %q", m.Name, m.output)
	}
	if len(y.Data) != m.classes {
		return nil, fmt.Errorf("model %q returned %d scores for one image, its manifest has %d labels", m.Name, len(y.Data), m.classes)
	}
	p := append([]float32(nil), y.Data...)
	if m.OutputsLogits {
		Softmax(p)
	}
	return p, nil
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

// TopK is the k most probable classes, most probable first (ties by index).
func (m *Model) TopK(probs []float32, k int) []Prediction {
	idx := make([]int, len(probs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
	k = min(k, len(idx))
	out := make([]Prediction, k)
	for i, j := range idx[:k] {
		label := fmt.Sprint(j)
		if j < len(m.Labels) {
			label = m.Labels[j]
		}
		out[i] = Prediction{Index: j, Label: label, Prob: probs[j]}
	}
	return out
}
