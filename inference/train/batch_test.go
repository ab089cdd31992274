package train

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"gibbon/inference"
	"gibbon/inference/mnist"
)

func TestShuffleAndShiftAreSeeded(t *testing.T) {
	a, b := epochOrder(1, 3, 100), epochOrder(1, 3, 100)
	if !slices.Equal(a, b) {
		t.Fatal("same seed and epoch gave different orders")
	}
	if slices.Equal(a, epochOrder(1, 4, 100)) || slices.Equal(a, epochOrder(2, 3, 100)) {
		t.Fatal("order ignores the epoch or the seed")
	}
	s := slices.Clone(a)
	slices.Sort(s)
	for i, v := range s {
		if v != i {
			t.Fatal("order is not a permutation")
		}
	}

	// A single lit pixel moves by the drawn offset.
	set := &mnist.Set{Images: make([]float32, mnist.Pixels), Labels: []uint8{3}}
	set.Images[14*28+14] = 1
	x, labels := fillBatch(set, []int{0}, 0, nil)
	if labels[0] != 3 || x.Data[14*28+14] != 1 {
		t.Fatal("unshifted copy wrong")
	}
	moved := 0
	for seed := range uint64(20) {
		x, _ := fillBatch(set, []int{0}, 2, rngFor(seed, streamShift, 0))
		lit := slices.Index(x.Data, 1)
		dy, dx := lit/28-14, lit%28-14
		if dy < -2 || dy > 2 || dx < -2 || dx > 2 {
			t.Fatalf("pixel moved by (%d,%d), more than 2", dx, dy)
		}
		if dx != 0 || dy != 0 {
			moved++
		}
		x2, _ := fillBatch(set, []int{0}, 2, rngFor(seed, streamShift, 0))
		if !slices.Equal(x.Data, x2.Data) {
			t.Fatal("same seed, different shift")
		}
	}
	if moved < 10 {
		t.Fatalf("only %d of 20 draws moved the image", moved)
	}
	oh := oneHot([]uint8{2, 0})
	if oh.Data[2] != 1 || oh.Data[10] != 1 || oh.Data[0] != 0 {
		t.Fatalf("one-hot %v", oh.Data)
	}
}

// A linear model with known input gradient: logits_c = sum_j W[c][j] x_j, where W's rows
// are +1 or -1 on every pixel. The attack must move each pixel against the true class.
func TestPerturbStaysInTheBoxAndStopsEarly(t *testing.T) {
	const P = mnist.Pixels
	sign := func(c, j int) float32 {
		if (c+j)%2 == 0 {
			return 1
		}
		return -1
	}
	fn := func(_ context.Context, x *inference.Tensor, labels []uint8) (*inference.Tensor, *inference.Tensor, error) {
		n := len(labels)
		logits := inference.NewTensor(int64(n), 10)
		grad := inference.NewTensor(x.Shape...)
		for i := range n {
			for c := range 10 {
				var s float32
				for j := range P {
					s += sign(c, j) * x.Data[i*P+j]
				}
				logits.Data[i*10+c] = s
			}
			for j := range P {
				grad.Data[i*P+j] = -sign(int(labels[i]), j) // d(-logit_y)/dx
			}
		}
		return logits, grad, nil
	}
	x := inference.NewTensor(2, 1, 28, 28)
	for i := range x.Data {
		x.Data[i] = 0.5
	}
	labels := []uint8{0, 1}
	cfg := PGDConfig{Eps: 0.3, Step: 0.01, Steps: 60, RandomStart: true}
	rngs := []*rand.Rand{rngFor(1, streamEval, 0), rngFor(1, streamEval, 1)}
	adv, fooled, err := perturb(context.Background(), fn, x, labels, cfg, rngs, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range adv.Data {
		if d := v - x.Data[i]; d > 0.3+1e-6 || d < -0.3-1e-6 || v < 0 || v > 1 {
			t.Fatalf("pixel %d left the box: %v from %v", i, v, x.Data[i])
		}
	}
	// 60 steps of 0.01 from a random start in ±0.3 reach the box's edge that lowers the
	// true logit on every pixel.
	atEdge := 0
	for j := range P {
		if d := adv.Data[j] - 0.5; d*sign(0, j) < -0.29 {
			atEdge++
		}
	}
	if atEdge < P*9/10 {
		t.Fatalf("only %d of %d pixels pushed to the edge", atEdge, P)
	}
	if fooled[0] || fooled[1] {
		t.Fatal("without early stopping nothing is reported fooled")
	}
	_, fooled, err = perturb(context.Background(), fn, x, labels, cfg, rngs, true)
	if err != nil {
		t.Fatal(err)
	}
	if !fooled[0] || !fooled[1] {
		t.Fatalf("fooled %v: the linear model is broken within a few steps", fooled)
	}
	if x.Data[0] != 0.5 {
		t.Fatal("perturb changed its input")
	}
	if (PGDConfig{Eps: 2, Step: 0.1, Steps: 1}).validate() == nil || (PGDConfig{Eps: 0.3, Steps: 0, Step: 0.1}).validate() == nil {
		t.Fatal("bad attack configs accepted")
	}
}
