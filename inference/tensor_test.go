package inference

import (
	"math"
	"testing"
)

// AllFinite finds one NaN or ±Inf at any position, in slices of every length up to
// beyond its four-way unrolling, and passes numbers of any size.
func TestAllFinite(t *testing.T) {
	if !AllFinite(nil) {
		t.Fatal("an empty slice has no non-finite value")
	}
	for n := 1; n <= 11; n++ {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i) * 3e37 * float32(1-2*(i%2)) // up to 3e38, near MaxFloat32
		}
		v[0] = math.MaxFloat32
		if !AllFinite(v) {
			t.Fatalf("%v: reported non-finite", v)
		}
		for i := range v {
			for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
				w := append([]float32(nil), v...)
				w[i] = bad
				if AllFinite(w) {
					t.Fatalf("length %d: %v at %d not found", n, bad, i)
				}
			}
		}
	}
}
