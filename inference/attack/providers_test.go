package attack_test

import (
	"context"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
)

// Providers names the forward session's provider at once and the gradient graph's
// once an attack has built it (the test runtime runs on the CPU).
func TestONNXModelProviders(t *testing.T) {
	spec := newLinear(3, []int64{1, 4, 4}, 3)
	m := newModel(t, spec.model(), attack.ModelOptions{Name: "linear"})
	fwd, grad := m.Providers()
	if fwd != inference.EPCPU || grad != "" {
		t.Fatalf("before any gradient: providers %q, %q; want cpu and none", fwd, grad)
	}
	w := inference.NewTensor(1, 3)
	w.Data[0] = 1
	if _, err := m.Gradient(context.Background(), gridImages(1, 1, 1, 4, 4), attack.CrossEntropy, w); err != nil {
		t.Fatal(err)
	}
	if fwd, grad = m.Providers(); fwd != inference.EPCPU || grad != inference.EPCPU {
		t.Fatalf("after a gradient: providers %q, %q; want cpu for both", fwd, grad)
	}
}
