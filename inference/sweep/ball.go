package sweep

import (
	"fmt"
	"math"
)

// rowBall is the feasible set around clean images whose budget differs per image:
// per value the interval [max(lo, x0−ε_i), min(hi, x0+ε_i)], checked in float64 as the
// attack package does, so |float64(x)−float64(x0)| ≤ ε_i holds for every float32.
type rowBall struct {
	x0     []float32
	lo, hi []float64
	rlo    float64
	step   float64 // quantisation level spacing; 0 disables quantisation
}

func newRowBall(x0 []float32, per int, eps []float32, rng [2]float32, quantize bool) (*rowBall, error) {
	if len(x0) != per*len(eps) {
		return nil, fmt.Errorf("%d values for %d images of %d", len(x0), len(eps), per)
	}
	b := &rowBall{x0: x0, lo: make([]float64, len(x0)), hi: make([]float64, len(x0)), rlo: float64(rng[0])}
	if quantize {
		b.step = (float64(rng[1]) - float64(rng[0])) / 255
	}
	for r, ef := range eps {
		e := float64(ef)
		for i := r * per; i < (r+1)*per; i++ {
			f := float64(x0[i])
			if !(f >= float64(rng[0]) && f <= float64(rng[1])) {
				return nil, fmt.Errorf("image value %g is outside the input range [%g,%g]", x0[i], rng[0], rng[1])
			}
			b.lo[i] = math.Max(float64(rng[0]), f-e)
			b.hi[i] = math.Min(float64(rng[1]), f+e)
		}
	}
	return b, nil
}

// fit returns the float32 nearest v inside value i's interval.
func (b *rowBall) fit(i int, v float64) float32 {
	lo, hi := b.lo[i], b.hi[i]
	if !(v >= lo) {
		v = lo
	}
	if v > hi {
		v = hi
	}
	f := float32(v)
	if float64(f) > hi {
		f = math.Nextafter32(f, float32(math.Inf(-1)))
	}
	if float64(f) < lo {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	if float64(f) < lo || float64(f) > hi {
		f = b.x0[i]
	}
	return f
}

func (b *rowBall) project(x []float32) {
	for i, v := range x {
		x[i] = b.fit(i, float64(v))
	}
}

// quantize puts x on the 256-level grid inside the ball (the level nearest x among
// those inside); a value whose interval holds no level keeps its clean value.
func (b *rowBall) quantize(x []float32) {
	if b.step == 0 {
		b.project(x)
		return
	}
	for i, v := range x {
		lo, hi := b.lo[i], b.hi[i]
		kLo := math.Floor((lo - b.rlo) / b.step)
		kHi := math.Ceil((hi - b.rlo) / b.step)
		if v != v {
			v = b.x0[i]
		}
		kc := math.Round((float64(v) - b.rlo) / b.step)
		kc = math.Min(math.Max(kc, kLo), kHi)
		best, bestD := float32(0), math.Inf(1)
		for k := kc - 2; k <= kc+2; k++ {
			q := float32(b.rlo + k*b.step)
			if float64(q) < lo || float64(q) > hi {
				continue
			}
			if d := math.Abs(float64(q) - float64(v)); d < bestD {
				best, bestD = q, d
			}
		}
		if math.IsInf(bestD, 1) {
			x[i] = b.x0[i]
			continue
		}
		x[i] = best
	}
}
