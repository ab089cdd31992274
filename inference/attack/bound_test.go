package attack

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// inBall is the bound every emitted value must meet, checked in float64.
func inBall(v, x0, eps, lo, hi float32) bool {
	d := math.Abs(float64(v) - float64(x0))
	return d <= float64(eps) && float64(v) >= float64(lo) && float64(v) <= float64(hi)
}

func onGrid(v, lo, hi float32) bool {
	step := (float64(hi) - float64(lo)) / 255
	k := math.Round((float64(v) - float64(lo)) / step)
	return float32(float64(lo)+k*step) == v
}

func TestQuantizeKeepsBoundAndGrid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name   string
		rng    [2]float32
		eps    float32
		onGrid bool // clean values on the 8-bit grid
	}{
		{"mnist eps 0.3", [2]float32{0, 1}, 0.3, true},
		{"8/255", [2]float32{0, 1}, 8.0 / 255, true},
		{"1/255", [2]float32{0, 1}, 1.0 / 255, true},
		{"half a level, grid clean", [2]float32{0, 1}, 0.4 / 255, true},
		{"off-grid clean", [2]float32{0, 1}, 3.3 / 255, false},
		{"0..255 range", [2]float32{0, 255}, 8, true},
		{"-1..1 range", [2]float32{-1, 1}, 0.1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := 5000
			x0 := make([]float32, n)
			for i := range x0 {
				if c.onGrid {
					x0[i] = c.rng[0] + float32(rng.IntN(256))*(c.rng[1]-c.rng[0])/255
					if i%7 == 0 {
						x0[i] = c.rng[rng.IntN(2)] // the range's ends
					}
				} else {
					x0[i] = c.rng[0] + rng.Float32()*(c.rng[1]-c.rng[0])
				}
			}
			b, err := newBall(x0, c.eps, c.rng, true)
			if err != nil {
				t.Fatal(err)
			}
			x := make([]float32, n)
			for i := range x {
				// Far outside, just outside, and inside the ball; NaN too.
				switch i % 4 {
				case 0:
					x[i] = x0[i] + (2*rng.Float32()-1)*3*c.eps
				case 1:
					x[i] = x0[i] + c.eps*float32(1+1e-7)
				case 2:
					x[i] = x0[i] - c.eps
				default:
					x[i] = float32(math.NaN())
				}
			}
			off := b.Quantize(x)
			gridMisses := 0
			for i, v := range x {
				if !inBall(v, x0[i], c.eps, c.rng[0], c.rng[1]) {
					t.Fatalf("value %d: %v is outside the ball around %v (eps %v)", i, v, x0[i], c.eps)
				}
				if !onGrid(v, c.rng[0], c.rng[1]) {
					gridMisses++
					if v != x0[i] {
						t.Fatalf("value %d: %v is neither on the grid nor the clean value %v", i, v, x0[i])
					}
				}
			}
			if gridMisses != off {
				t.Fatalf("quantize reported %d off-grid values, found %d", off, gridMisses)
			}
			if c.onGrid && off != 0 {
				t.Fatalf("%d values off the grid although the clean image is on it", off)
			}
			if c.eps > 1.0/255*(c.rng[1]-c.rng[0]) && off != 0 {
				t.Fatalf("%d values off the grid although eps spans a level", off)
			}
		})
	}
}

func TestQuantizeChoosesNearestLevelInside(t *testing.T) {
	x0 := []float32{100.0 / 255, 0, 1}
	b, err := newBall(x0, 0.3, [2]float32{0, 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{100.0/255 + 0.3, -0.5, 1.2}
	b.Quantize(x)
	// 0.3 is 76.5 levels: the nearest level inside is 76 up.
	if want := float32(176.0 / 255); x[0] != want {
		t.Fatalf("got %v (%v/255), want %v", x[0], x[0]*255, want)
	}
	if x[1] != 0 || x[2] != 1 {
		t.Fatalf("range ends not kept: %v", x[1:])
	}
}

// Quantize's fast path chooses what the careful scan chooses, value for value: on
// several ranges and budgets, for values anywhere, at level midpoints (ties) and a few
// ulps either side of them, at the interval's edges, and NaN and ±Inf.
func TestQuantizeFastPathMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct {
		rng [2]float32
		eps float32
	}{{[2]float32{0, 1}, 0.3}, {[2]float32{0, 1}, 0.4 / 255}, {[2]float32{0, 1}, 2.5 / 255}, {[2]float32{0, 255}, 8}, {[2]float32{-2.1179, 2.64}, 0.07}} {
		const n = 60000
		x0 := make([]float32, n)
		for i := range x0 {
			x0[i] = c.rng[0] + rng.Float32()*(c.rng[1]-c.rng[0])
			if i%3 == 0 { // on the grid
				x0[i] = float32(float64(c.rng[0]) + float64(rng.IntN(256))*(float64(c.rng[1])-float64(c.rng[0]))/255)
			}
		}
		b, err := newBall(x0, c.eps, c.rng, true)
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, n)
		for i := range x {
			switch i % 6 {
			case 0, 1:
				x[i] = x0[i] + (2*rng.Float32()-1)*2*c.eps
			case 2: // a level midpoint, nudged by a few ulps
				k := float64(rng.IntN(255)) + 0.5
				v, dir := float32(b.rlo+k*b.step), float32(math.Inf(2*rng.IntN(2)-1))
				for range rng.IntN(4) {
					v = math.Nextafter32(v, dir)
				}
				x[i] = v
			case 3: // the interval's edges
				x[i] = float32(b.lo[i])
				if rng.IntN(2) == 0 {
					x[i] = float32(b.hi[i])
				}
			case 4:
				x[i] = []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))}[rng.IntN(3)]
			default:
				x[i] = c.rng[0] + rng.Float32()*(c.rng[1]-c.rng[0])
			}
		}
		want := append([]float32(nil), x...)
		wantOff := 0
		for i := range want {
			if !b.quantizeOne(want, i) {
				wantOff++
			}
		}
		got := append([]float32(nil), x...)
		if off := b.Quantize(got); off != wantOff {
			t.Fatalf("range %v eps %v: %d values off the grid, the scan says %d", c.rng, c.eps, off, wantOff)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("range %v eps %v: value %v (clean %v) quantised to %v, the scan gives %v", c.rng, c.eps, x[i], x0[i], got[i], want[i])
			}
		}
	}
}

func TestProjectFloatEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 20000 {
		x0 := []float32{rng.Float32()}
		eps := rng.Float32() * 0.5
		if trial%3 == 0 {
			eps = float32(0.1) * float32(1+trial%5)
		}
		b, err := newBall(x0, eps, [2]float32{0, 1}, false)
		if err != nil {
			t.Fatal(err)
		}
		x := []float32{x0[0] + eps, x0[0] - eps}
		b.Project(x[:1])
		b2, _ := newBall(x0, eps, [2]float32{0, 1}, false)
		b2.Project(x[1:])
		for _, v := range x {
			if !inBall(v, x0[0], eps, 0, 1) {
				t.Fatalf("x0=%v eps=%v: projected %v is outside (|d|=%v)", x0[0], eps, v, math.Abs(float64(v)-float64(x0[0])))
			}
		}
	}
}

// TestProjectAndSignStepMatchFit: the float32 clamp of Project and the one-pass step
// of SignStep give, bit for bit, what the definition (nearestInside) gives after a
// branchy sign step, on values
// inside, outside and at the ends of the intervals, at zeros of either sign, NaN and
// infinities, in gradients and images alike.
func TestProjectAndSignStepMatchFit(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	negZero := float32(math.Copysign(0, -1))
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	for _, c := range []struct {
		name string
		rng  [2]float32
		eps  float32
	}{
		{"[0,1] eps 0.3", [2]float32{0, 1}, 0.3},
		{"[0,1] eps 8/255", [2]float32{0, 1}, 8.0 / 255},
		{"[-1,1] eps 0.1", [2]float32{-1, 1}, 0.1},
		{"[0,255] eps 8", [2]float32{0, 255}, 8},
		{"eps 0", [2]float32{-1, 1}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			const n = 4096
			x0 := make([]float32, n)
			for i := range x0 {
				switch i % 5 {
				case 0:
					x0[i] = c.rng[0]
				case 1:
					x0[i] = c.rng[1]
				default:
					x0[i] = c.rng[0] + rng.Float32()*(c.rng[1]-c.rng[0])
				}
				if x0[i] == 0 && i%2 == 0 {
					x0[i] = negZero
				}
			}
			b, err := newBall(x0, c.eps, c.rng, false)
			if err != nil {
				t.Fatal(err)
			}
			// values to project: near and at both ends, beyond them, specials
			x := make([]float32, n)
			d := make([]float32, n)
			for i := range x {
				lo, hi := b.flo[i], b.fhi[i]
				switch i % 11 {
				case 0:
					x[i] = lo
				case 1:
					x[i] = hi
				case 2:
					x[i] = math.Nextafter32(lo, -inf)
				case 3:
					x[i] = math.Nextafter32(hi, inf)
				case 4:
					x[i] = negZero
				case 5:
					x[i] = 0
				case 6:
					x[i] = nan
				case 7:
					x[i] = -inf
				case 8:
					x[i] = inf
				default:
					x[i] = x0[i] + (2*rng.Float32()-1)*2*(c.eps+1e-3)
				}
				switch i % 7 {
				case 0:
					d[i] = 0
				case 1:
					d[i] = negZero
				case 2:
					d[i] = nan
				case 3:
					d[i] = -inf
				case 4:
					d[i] = float32(math.SmallestNonzeroFloat32)
				default:
					d[i] = float32(rng.NormFloat64())
				}
			}
			want := make([]float32, n)
			for i, v := range x {
				want[i] = b.nearestInside(i, float64(v))
			}
			got := slices.Clone(x)
			b.Project(got)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("Project(%v) at %d (interval [%v, %v]) = %v, fit gives %v", x[i], i, b.lo[i], b.hi[i], got[i], want[i])
				}
			}
			for _, alpha := range []float32{c.eps / 4, 2.5 * c.eps, 1e-3} {
				for i, v := range x {
					switch g := d[i]; {
					case g > 0:
						v += alpha
					case g < 0:
						v -= alpha
					}
					want[i] = b.nearestInside(i, float64(v))
				}
				// the whole (vector form where there is one), a length with a tail of
				// odd values, and the plain loop alone
				whole, tail, plain := slices.Clone(x), slices.Clone(x), slices.Clone(x)
				b.SignStep(whole, d, alpha)
				b.SignStep(tail[:n-5], d, alpha)
				signStep(plain, d, b.flo, b.fhi, alpha)
				for form, got := range map[string][]float32{"SignStep": whole, "SignStep with a tail": tail[:n-5], "signStep": plain} {
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s(%v, grad %v, alpha %v) at %d = %v, step and fit give %v", form, x[i], d[i], alpha, i, got[i], want[i])
						}
					}
				}
				if !slices.Equal(tail[n-5:], x[n-5:]) {
					t.Fatal("SignStep changed values past the slice it was given")
				}
			}
		})
	}
}

// TestFitMatchesNearestInside: fit's clamp of the float32 gives the definition's
// answer for float64 values (APGD's steps are float64) inside, outside, at and
// within an ulp of either end, between an end and its float32, and for NaN and
// infinities.
func TestFitMatchesNearestInside(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []struct {
		rng [2]float32
		eps float32
	}{{[2]float32{0, 1}, 0.3}, {[2]float32{0, 1}, 8.0 / 255}, {[2]float32{-2.1179, 2.64}, 0.0313}, {[2]float32{0, 255}, 8}} {
		const n = 2000
		x0 := make([]float32, n)
		for i := range x0 {
			x0[i] = c.rng[0] + rng.Float32()*(c.rng[1]-c.rng[0])
		}
		x0[0], x0[1] = c.rng[0], c.rng[1]
		b, err := newBall(x0, c.eps, c.rng, false)
		if err != nil {
			t.Fatal(err)
		}
		for i := range x0 {
			lo, hi := b.lo[i], b.hi[i]
			ulp := math.Abs(float64(math.Nextafter32(float32(hi), 1e9)) - float64(float32(hi)))
			for _, v := range []float64{lo, hi, math.Nextafter(lo, -1e9), math.Nextafter(hi, 1e9),
				lo - ulp/3, hi + ulp/3, lo + ulp/3, hi - ulp/3, lo - 1, hi + 1, (lo + hi) / 2,
				lo + rng.Float64()*(hi-lo), float64(b.flo[i]), float64(b.fhi[i]),
				math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1)} {
				if got, want := b.fit(i, v), b.nearestInside(i, v); math.Float32bits(got) != math.Float32bits(want) {
					t.Fatalf("value %d, interval [%v, %v]: fit(%v) = %v, the definition gives %v", i, lo, hi, v, got, want)
				}
			}
		}
	}
}

func TestNewBallRejectsOutOfRangeImages(t *testing.T) {
	for _, v := range []float32{-0.01, 1.5, float32(math.NaN())} {
		if _, err := newBall([]float32{0.5, v}, 0.1, [2]float32{0, 1}, true); err == nil {
			t.Fatalf("value %v outside [0,1] was accepted", v)
		}
	}
}

func TestNewBallPerImageBudgets(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const per = 300
	eps := []float32{0.05, 0.3, 0, 8.0 / 255}
	x0 := make([]float32, per*len(eps))
	for i := range x0 {
		x0[i] = float32(rng.IntN(256)) / 255
	}
	b, err := NewBall(x0, per, eps, [2]float32{0, 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, len(x0))
	for i := range x {
		x[i] = x0[i] + (rng.Float32()*2-1)*0.5
	}
	b.Quantize(x)
	for i, v := range x {
		if e := eps[i/per]; !inBall(v, x0[i], e, 0, 1) || !onGrid(v, 0, 1) {
			t.Fatalf("value %d (image %d, eps %v): %v is outside the ball around %v or off the grid", i, i/per, e, v, x0[i])
		}
	}
	if _, err := NewBall(x0[:len(x0)-1], per, eps, [2]float32{0, 1}, true); err == nil {
		t.Fatal("a ball with fewer values than its images hold was accepted")
	}
}

func TestNorms(t *testing.T) {
	x0 := []float32{0, 0, 0, 0, 1, 1}
	x := []float32{0.3, -0.4, 0, 0, 1, 0.5}
	linf, l2 := norms(x, x0, 2)
	if math.Abs(float64(linf[0])-0.4) > 1e-7 || math.Abs(float64(l2[0])-0.5) > 1e-7 {
		t.Fatalf("image 0: linf %v l2 %v, want 0.4 0.5", linf[0], l2[0])
	}
	if math.Abs(float64(linf[1])-0.5) > 1e-7 || math.Abs(float64(l2[1])-0.5) > 1e-7 {
		t.Fatalf("image 1: linf %v l2 %v, want 0.5 0.5", linf[1], l2[1])
	}
}

// BenchmarkQuantize quantises a batch of 100 MNIST-sized images at ε 0.1 whose
// adversarial values sit, as an attack network's mostly do, near the ball's edges.
func BenchmarkQuantize(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	const n = 100 * 784
	x0 := make([]float32, n)
	for i := range x0 {
		if rng.IntN(5) == 0 {
			x0[i] = float32(rng.IntN(256)) / 255
		}
	}
	ball, err := newBall(x0, 0.1, [2]float32{0, 1}, true)
	if err != nil {
		b.Fatal(err)
	}
	adv := make([]float32, n)
	for i := range adv {
		adv[i] = x0[i] + 0.1*float32(math.Tanh(3*rng.NormFloat64()))
	}
	x := make([]float32, n)
	b.SetBytes(4 * n)
	for b.Loop() {
		copy(x, adv)
		ball.Quantize(x)
	}
}

// BenchmarkSignStep times one PGD step's update of a 224×224 colour image (sign
// step and projection) with gradients of random sign, in the vector form where the
// processor has one and in the plain loop:
//
//	go test -run '^$' -bench SignStep ./inference/attack/
func BenchmarkSignStep(b *testing.B) {
	const n = 3 * 224 * 224
	rng := rand.New(rand.NewPCG(7, 8))
	x0, d := make([]float32, n), make([]float32, n)
	for i := range x0 {
		x0[i], d[i] = rng.Float32(), float32(rng.NormFloat64())
	}
	ball, err := newBall(x0, 8.0/255, [2]float32{0, 1}, false)
	if err != nil {
		b.Fatal(err)
	}
	x := slices.Clone(x0)
	b.Run("SignStep", func(b *testing.B) {
		for b.Loop() {
			ball.SignStep(x, d, 2.0/255)
		}
	})
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			signStep(x, d, ball.flo, ball.fhi, 2.0/255)
		}
	})
}

// TestCountOffGrid: countOffGrid's product-and-Floor form counts what the plain
// definition (a quotient, Round, and the level's float32) counts, on every level,
// on values one ulp off, halfway between levels and just beside halfway.
func TestCountOffGrid(t *testing.T) {
	for _, rng := range [][2]float32{{0, 1}, {-1, 1}, {0, 255}, {-2.1179, 2.64}} {
		b, err := newBall([]float32{rng[0]}, 0, rng, true)
		if err != nil {
			t.Fatal(err)
		}
		var x []float32
		for k := range 256 {
			level := float32(b.rlo + float64(k)*b.step)
			half := b.rlo + (float64(k)+0.5)*b.step
			x = append(x, level, math.Nextafter32(level, 10), math.Nextafter32(level, -10),
				float32(half), math.Nextafter32(float32(half), 10), math.Nextafter32(float32(half), -10))
		}
		want := 0
		for i, v := range x {
			w := countOffGridPlain(b, v)
			if got := countOffGrid(b, x[i:i+1]); got != w {
				t.Fatalf("range %v: countOffGrid(%v) = %d, the plain definition %d", rng, v, got, w)
			}
			want += w
		}
		if got := countOffGrid(b, x); got != want || want < 256 {
			t.Fatalf("range %v: %d off the grid, want %d (at least the 256 halfway values)", rng, got, want)
		}
	}
}

func countOffGridPlain(b *Ball, v float32) int {
	k := math.Round((float64(v) - b.rlo) / b.step)
	if float32(b.rlo+k*b.step) != v {
		return 1
	}
	return 0
}
