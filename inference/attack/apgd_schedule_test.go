package attack

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// With 100 iterations the checkpoints are the paper's p_j·100.
func TestAPGDCheckpoints(t *testing.T) {
	if got, want := apgdCheckpoints(100), []int{22, 41, 57, 70, 80, 87, 93, 99}; !slices.Equal(got, want) {
		t.Fatalf("checkpoints %v, want %v", got, want)
	}
	for _, n := range []int{1, 2, 10, 37, 1000} {
		w := apgdCheckpoints(n)
		for j, c := range w {
			if c < 1 || c >= n || (j > 0 && c <= w[j-1]) {
				t.Fatalf("%d iterations: checkpoints %v are not increasing within 1..%d", n, w, n-1)
			}
		}
	}
}

// FAB's projection is the smallest L∞ step onto the hyperplane inside the box: it
// reaches w·d = c, stays in [lo,hi], and no smaller step could reach it.
func TestProjectLinf(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const dim = 40
	w := newFabWork(dim)
	d := make([]float64, dim)
	for trial := range 500 {
		z, g := make([]float32, dim), make([]float32, dim)
		for k := range z {
			z[k] = float32(rng.IntN(256)) / 255
			if rng.IntN(5) > 0 {
				g[k] = float32(rng.NormFloat64())
			}
		}
		reach := reachable(z, g, math.Inf(1), 1)
		c := (2*rng.Float64() - 1) * reach * 1.2 // some beyond reach
		norm := projectLinf(w, d, z, g, c, 0, 1)
		var dot, peak float64
		for k := range d {
			dot += float64(g[k]) * d[k]
			peak = math.Max(peak, math.Abs(d[k]))
			if v := float64(z[k]) + d[k]; v < -1e-12 || v > 1+1e-12 {
				t.Fatalf("trial %d: coordinate %d leaves the box (%v)", trial, k, v)
			}
		}
		if math.Abs(peak-norm) > 1e-12 {
			t.Fatalf("trial %d: returned norm %v, step's norm %v", trial, norm, peak)
		}
		sign := math.Copysign(1, c)
		if math.Abs(c) > reachable(z, g, math.Inf(1), sign) {
			// Out of reach: the closest approach, every coordinate at its bound.
			if math.Abs(dot-sign*reachable(z, g, math.Inf(1), sign)) > 1e-9 {
				t.Fatalf("trial %d: c %v out of reach, w·d %v is not the most the box allows", trial, c, dot)
			}
			continue
		}
		if math.Abs(dot-c) > 1e-9*math.Max(1, math.Abs(c)) {
			t.Fatalf("trial %d: w·d = %v, want %v", trial, dot, c)
		}
		if reachable(z, g, norm*(1-1e-6), sign) >= math.Abs(c) && c != 0 {
			t.Fatalf("trial %d: a step of L∞ %v already reaches c %v; the projection took %v", trial, norm*(1-1e-6), c, norm)
		}
	}
}

// reachable is the most sign·w·d can be with ‖d‖∞ ≤ delta and z + d in [0,1].
func reachable(z, g []float32, delta, sign float64) float64 {
	var s float64
	for k, v := range g {
		u := sign * float64(v)
		room := 1 - float64(z[k])
		if u < 0 {
			room = float64(z[k])
		}
		s += math.Abs(u) * math.Min(delta, room)
	}
	return s
}
