package attack_test

import (
	"context"
	"math"
	"testing"

	"gibbon/inference/attack"
)

// FAB-T is a minimum-norm attack: on the built-in small CNN the adversarial examples
// it returns lie well inside the ball, closer than APGD-CE's, which climb the loss to
// the ball's edge; success is any wrong class; images it does not fool keep their
// clean image; and its steps report z_target − z_label, at the start the clean
// image's margin to the second most likely class.
func TestFABTIsMinimumNorm(t *testing.T) {
	m := builtin(t, "mnist-cnn-small")
	x, labels := digits(t, 12)
	req := attack.Request{Images: x, Labels: labels, Surrogates: named([]*attack.ONNXModel{m})}
	const eps = 0.15
	fab, steps := runInBall(t, attack.Config{Method: attack.FABT, Eps: eps, Seed: 1}, req)
	apgd, _ := runInBall(t, attack.Config{Method: attack.APGDCE, Eps: eps, Seed: 1}, req)
	clean, err := m.Predict(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	var fabSum, apgdSum float64
	both := 0
	for i, y := range labels {
		r := fab.Models[0]
		if r.Success[i] != (r.Adv[i] != y) {
			t.Fatalf("image %d: label %d, prediction %d, success %v", i, y, r.Adv[i], r.Success[i])
		}
		if !r.Success[i] && fab.Linf[i] != 0 {
			t.Fatalf("image %d: not fooled, yet %v from its clean image", i, fab.Linf[i])
		}
		if r.Success[i] && apgd.Models[0].Success[i] {
			both++
			fabSum += float64(fab.Linf[i])
			apgdSum += float64(apgd.Linf[i])
		}
		z := clean.Data[i*10 : (i+1)*10]
		if argmax(z) == y {
			second := secondClass(z)
			if want := float64(z[second]) - float64(z[y]); math.Abs(want-float64(steps[0].Loss[i])) > 1e-4*math.Max(1, math.Abs(want)) {
				t.Fatalf("image %d: start loss %v, the margin to class %d is %v", i, steps[0].Loss[i], second, want)
			}
		}
	}
	t.Logf("ε %.2f: FAB-T fools %.0f%%, APGD-CE %.0f%%; on the %d both fool, mean L∞ %.3f (FAB-T) and %.3f (APGD-CE)",
		eps, 100*fab.Models[0].SuccessRate, 100*apgd.Models[0].SuccessRate, both, fabSum/float64(both), apgdSum/float64(both))
	if both < 3 || fabSum > 0.8*apgdSum {
		t.Fatalf("on %d images both fooled, FAB-T's mean L∞ %.3f is not well below APGD-CE's %.3f", both, fabSum/float64(max(both, 1)), apgdSum/float64(max(both, 1)))
	}
}

func secondClass(z []float32) int {
	first := argmax(z)
	second := -1
	for j, v := range z {
		if j != first && (second < 0 || v > z[second]) {
			second = j
		}
	}
	return second
}
