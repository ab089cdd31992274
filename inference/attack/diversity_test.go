package attack

import (
	"math"
	"math/rand/v2"
	"testing"

	"gibbon/inference"
)

// The gradient through the resize-and-pad must be its adjoint: for the linear part L
// of T(x) = Lx + c, <Lx, g> = <x, Lᵀg> for every x and g.
func TestDiversityAdjoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, layout := range []string{"NCHW", "NHWC"} {
		shape := []int64{3, 2, 11, 9}
		if layout == "NHWC" {
			shape = []int64{3, 11, 9, 2}
		}
		geo, err := newGeometry(shape, layout)
		if err != nil {
			t.Fatal(err)
		}
		for trial := range 30 {
			d := drawDiversity(rng, geo, 1, 0.5, 0)
			if !d.any() {
				t.Fatal("probability 1 transformed nothing")
			}
			x := randTensor(rng, shape)
			g := randTensor(rng, shape)
			lx := d.apply(x) // pad is 0, so T is linear here
			ltg := g.Clone()
			d.adjoint(ltg)
			a, b := dot(lx.Data, g.Data), dot(x.Data, ltg.Data)
			if math.Abs(a-b) > 1e-9*math.Max(1, math.Abs(a)) {
				t.Fatalf("%s trial %d: <Lx,g>=%v, <x,Lᵀg>=%v", layout, trial, a, b)
			}
		}
	}
}

func TestDiversityShapeAndPad(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	shape := []int64{4, 1, 28, 28}
	geo, _ := newGeometry(shape, "NCHW")
	x := inference.NewTensor(shape...)
	for i := range x.Data {
		x.Data[i] = 1
	}
	d := drawDiversity(rng, geo, 1, 0.9, 0.25)
	y := d.apply(x)
	for i := range 4 {
		if d.rh[i] < 25 || d.rh[i] > 28 {
			t.Fatalf("image %d resized to %d rows, want 25..28", i, d.rh[i])
		}
		var ones, pads int
		for _, v := range y.Data[i*784 : (i+1)*784] {
			switch v {
			case 1:
				ones++
			case 0.25:
				pads++
			default:
				t.Fatalf("unexpected value %v", v)
			}
		}
		if ones != d.rh[i]*d.rw[i] || pads != 784-ones {
			t.Fatalf("image %d: %d resized pixels and %d pad, want %d and %d", i, ones, pads, d.rh[i]*d.rw[i], 784-d.rh[i]*d.rw[i])
		}
	}
	none := drawDiversity(rng, geo, 0, 0.9, 0)
	if none.any() {
		t.Fatal("probability 0 transformed an image")
	}
}

func TestGeometryRejectsNon4D(t *testing.T) {
	if _, err := newGeometry([]int64{2, 784}, "NCHW"); err == nil {
		t.Fatal("2-d batch accepted as images")
	}
	if _, err := newGeometry([]int64{2, 0, 3, 3}, "NCHW"); err == nil {
		t.Fatal("empty channel dimension accepted")
	}
}

func randTensor(rng *rand.Rand, shape []int64) *inference.Tensor {
	x := inference.NewTensor(shape...)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	return x
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
