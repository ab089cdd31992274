package sweep_test

import (
	"context"
	"math"
	"slices"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/sweep"
)

// The batched loop must be the attack package's arithmetic: with one budget for all
// rows, FGSM, BIM and MI-FGSM give attack.Run's images bit for bit, and PGD does for
// a batch of one (attack.Run draws a whole batch's random start from one seed).
func TestBatchedLoopGivesAttackRunsImages(t *testing.T) {
	ctx := context.Background()
	m := model(t, "mlp")
	x, labels := testImages(t, 24)
	const eps = float32(0.1)
	for _, method := range []attack.Method{attack.FGSM, attack.BIM, attack.MIFGSM} {
		cfg := attack.Config{Method: method, Eps: eps, Steps: 5, Seed: 3}
		want, err := attack.Run(ctx, cfg, attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{m}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		a := &sweep.Attack{Name: string(method), Config: attack.Config{Method: method, Steps: 5}, Surrogates: []attack.Model{m}}
		eps := slices.Repeat([]float32{eps}, 24)
		got, err := a.Generate(ctx, x, labels, eps, seedsFrom(0, 24))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Data, want.Adv.Data) {
			t.Errorf("%s: the batched loop's images differ from attack.Run's", method)
		}
	}
	for i := range 3 {
		xi := &inference.Tensor{Shape: []int64{1, 1, 28, 28}, Data: x.Data[i*784 : (i+1)*784]}
		cfg := attack.Config{Method: attack.PGD, Eps: eps, Steps: 5, Seed: int64(40 + i)}
		want, err := attack.Run(ctx, cfg, attack.Request{Images: xi, Labels: labels[i : i+1], Surrogates: []attack.Model{m}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgd(5, m).Generate(ctx, xi, labels[i:i+1], []float32{eps}, []int64{cfg.Seed})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Data, want.Adv.Data) {
			t.Errorf("PGD image %d: the batched loop's image differs from attack.Run's", i)
		}
	}
}

// Rows of different budgets in one pass give the images each budget gives alone, and
// every image stays on the 8-bit grid inside its own ball.
func TestMixedBudgetsInOnePass(t *testing.T) {
	ctx := context.Background()
	m := model(t, "lin-a")
	x, labels := testImages(t, 6)
	grid := []float32{0, 0.05, 0.1, 0.2}
	a := pgd(7, m)
	all, err := a.Grid(ctx, x, labels, grid, seedsFrom(100, 6))
	if err != nil {
		t.Fatal(err)
	}
	for k, e := range grid {
		alone, err := a.Grid(ctx, x, labels, []float32{e}, seedsFrom(100, 6))
		if err != nil {
			t.Fatal(err)
		}
		part := all.Data[k*6*784 : (k+1)*6*784]
		if d := differing(part, alone.Data); d > 0 {
			t.Errorf("ε %g: %d of %d values differ between the mixed pass and the pass at ε %g alone", e, d, len(part), e)
		}
		for i := range 6 {
			adv := part[i*784 : (i+1)*784]
			clean := x.Data[i*784 : (i+1)*784]
			if d := linf(adv, clean); d > float64(e)+1e-6 {
				t.Errorf("ε %g image %d: L∞ %g is outside the ball", e, i, d)
			}
			for _, v := range adv {
				if lv := float64(v) * 255; math.Abs(lv-math.Round(lv)) > 1e-3 {
					t.Fatalf("ε %g image %d: value %g is off the 8-bit grid", e, i, v)
				}
			}
		}
	}
	if !slices.Equal(all.Data[:6*784], x.Data) {
		t.Error("ε 0 changed the images")
	}
}

// differing counts positions where a and b differ.
func differing(a, b []float32) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// An attack network takes the largest head within each image's budget, and leaves
// images with no such head clean.
func TestAttackNetworkHeadsWithinBudget(t *testing.T) {
	ctx := context.Background()
	net := pushNet(t)
	a := &sweep.Attack{Name: "pushnet", Network: net}
	x, labels := testImages(t, 4)
	grid := []float32{0.05, 0.1, 0.15, 0.3, 0.4}
	adv, err := a.Grid(ctx, x, labels, grid, seedsFrom(0, 4))
	if err != nil {
		t.Fatal(err)
	}
	wantLinf := []float64{0, 0.1, 0.1, 0.3, 0.3} // the head used, measured on the 8-bit grid
	for k := range grid {
		for i := range 4 {
			got := linf(adv.Data[(k*4+i)*784:(k*4+i+1)*784], x.Data[i*784:(i+1)*784])
			if got > wantLinf[k]+1e-6 || (wantLinf[k] > 0 && got < wantLinf[k]-1.0/255-1e-6) {
				t.Errorf("ε %g image %d: L∞ %g, want the %g head's", grid[k], i, got, wantLinf[k])
			}
		}
	}
	// Per-row budgets give the same images as the grid.
	rowEps := []float32{0.3, 0.05, 0.15, 0.1}
	rows, err := a.Generate(ctx, x, labels, rowEps, seedsFrom(0, 4))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range rowEps {
		k := slices.Index(grid, e)
		if !slices.Equal(rows.Data[i*784:(i+1)*784], adv.Data[(k*4+i)*784:(k*4+i+1)*784]) {
			t.Errorf("image %d at ε %g: Generate and Grid disagree", i, e)
		}
	}
}

func TestGenerateRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	m := model(t, "lin-a")
	x, labels := testImages(t, 2)
	a := pgd(3, m)
	cases := map[string]func() error{
		"budget count": func() error {
			_, err := a.Generate(ctx, x, labels, []float32{0.1}, seedsFrom(0, 2))
			return err
		},
		"negative budget": func() error {
			_, err := a.Generate(ctx, x, labels, []float32{0.1, -0.1}, seedsFrom(0, 2))
			return err
		},
		"label out of range": func() error {
			_, err := a.Generate(ctx, x, []int{1, 10}, []float32{0.1, 0.1}, seedsFrom(0, 2))
			return err
		},
		"no images": func() error {
			_, err := a.Generate(ctx, nil, nil, nil, nil)
			return err
		},
		"targeted": func() error {
			b := *a
			b.Config.Target = attack.LeastLikely
			return b.Check()
		},
		"no surrogate": func() error {
			return (&sweep.Attack{Name: "pgd", Config: attack.Config{Method: attack.PGD}}).Check()
		},
		"gradients from a black box": func() error {
			return (&sweep.Attack{Name: "pgd", Config: attack.Config{Method: attack.PGD}, Surrogates: []attack.Model{{Name: "bb", Net: predictOnly{m.Net}}}}).Check()
		},
	}
	for name, f := range cases {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.Generate(cctx, x, labels, []float32{0.1, 0.1}, seedsFrom(0, 2)); err != context.Canceled {
		t.Errorf("cancelled: %v", err)
	}
}

type predictOnly struct{ c attack.Classifier }

func (p predictOnly) Predict(ctx context.Context, x *inference.Tensor) (*inference.Tensor, error) {
	return p.c.Predict(ctx, x)
}
