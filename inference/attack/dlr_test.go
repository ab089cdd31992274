package attack

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The DLR losses' seeds are their gradients with respect to the logits (checked
// against central differences), and the losses do not change when the logits are
// shifted or scaled, the property the paper chose them for.
func TestDLRGradientAndInvariance(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const h = 1e-3
	for trial := range 200 {
		z := make([]float32, 10)
		for j := range z {
			z[j] = float32(rng.NormFloat64() * 3)
		}
		if !gapsAbove(z, 4*h) {
			continue // a rank could change within the difference step
		}
		y, tg := rng.IntN(10), rng.IntN(10)
		for tg == y {
			tg = rng.IntN(10)
		}
		losses := map[string]func(z []float32, seed []float32) float32{
			"dlr":          func(z, s []float32) float32 { return dlr(z, y, s) },
			"dlr-targeted": func(z, s []float32) float32 { return dlrTargeted(z, y, tg, s) },
		}
		for name, f := range losses {
			seed := make([]float32, len(z))
			v := f(z, seed)
			for j := range z {
				up, down := append([]float32(nil), z...), append([]float32(nil), z...)
				up[j] += h
				down[j] -= h
				num := (float64(f(up, nil)) - float64(f(down, nil))) / (2 * h)
				if math.Abs(num-float64(seed[j])) > 2e-2*math.Max(1, math.Abs(num)) {
					t.Fatalf("trial %d %s: d/dz_%d is %v by differences, the seed says %v", trial, name, j, num, seed[j])
				}
			}
			moved := make([]float32, len(z))
			for j, v := range z {
				moved[j] = 2.5*v - 7
			}
			if w := f(moved, nil); math.Abs(float64(w-v)) > 1e-5*math.Max(1, math.Abs(float64(v))) {
				t.Fatalf("trial %d %s: %v on the logits, %v on 2.5·z − 7", trial, name, v, w)
			}
		}
	}
}

func gapsAbove(z []float32, gap float64) bool {
	for i := range z {
		for j := range i {
			if math.Abs(float64(z[i])-float64(z[j])) < gap {
				return false
			}
		}
	}
	return true
}

// The untargeted loss compares the label with the best other class over the gap
// between the first and third logits; top4 orders ties by class.
func TestDLRValues(t *testing.T) {
	z := []float32{1, 5, 3, 4, 0}
	// Label 1 is on top: −(5 − 4)/(5 − 3).
	if v := dlr(z, 1, nil); math.Abs(float64(v)+0.5) > 1e-6 {
		t.Fatalf("dlr = %v, want −0.5", v)
	}
	// Label 2 is not: −(3 − 5)/(5 − 3) = 1.
	if v := dlr(z, 2, nil); math.Abs(float64(v)-1) > 1e-6 {
		t.Fatalf("dlr = %v, want 1", v)
	}
	// Targeted, label 1, target 3: −(5 − 4)/(5 − (3 + 1)/2).
	if v := dlrTargeted(z, 1, 3, nil); math.Abs(float64(v)+1.0/3) > 1e-6 {
		t.Fatalf("targeted dlr = %v, want −1/3", v)
	}
	if got := top4([]float32{2, 7, 7, 1, 7}); got != [4]int{1, 2, 4, 0} {
		t.Fatalf("top4 = %v, want [1 2 4 0]", got)
	}
}
