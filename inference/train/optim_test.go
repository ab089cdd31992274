package train

import (
	"math"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*(1+math.Abs(b)) }

func TestSGDMomentumAndWeightDecay(t *testing.T) {
	w := &Param{Name: "w", Shape: []int64{1, 2}, Data: []float32{1, -2}}
	b := &Param{Name: "b", Shape: []int64{2}, Data: []float32{1, 1}}
	ps := []*Param{w, b}
	o, err := newOptimizer(OptimizerConfig{Kind: SGD, Momentum: 0.5, WeightDecay: 0.1}, ps)
	if err != nil {
		t.Fatal(err)
	}
	g := [][]float32{{1, 1}, {1, 1}}
	o.step(ps, g, 0.1)
	// w: g' = g + 0.1 w = (1.1, 0.8); m = g'; w -= 0.1 m. b: no decay.
	want := []float64{1 - 0.11, -2 - 0.08, 0.9, 0.9}
	got := []float32{w.Data[0], w.Data[1], b.Data[0], b.Data[1]}
	for i := range want {
		if !near(float64(got[i]), want[i], 1e-6) {
			t.Fatalf("after step 1: %v, want %v", got, want)
		}
	}
	o.step(ps, g, 0.1)
	// b: m = 0.5*1 + 1 = 1.5; b = 0.9 - 0.15.
	if !near(float64(b.Data[0]), 0.75, 1e-6) {
		t.Fatalf("momentum: b = %v, want 0.75", b.Data[0])
	}
	// Nesterov: update uses g + mu*m.
	n := &Param{Name: "n", Shape: []int64{1}, Data: []float32{0}}
	on, _ := newOptimizer(OptimizerConfig{Kind: SGD, Momentum: 0.5, Nesterov: true}, []*Param{n})
	on.step([]*Param{n}, [][]float32{{1}}, 1) // m=1, step = 1+0.5 = 1.5
	if n.Data[0] != -1.5 {
		t.Fatalf("nesterov step %v, want -1.5", n.Data[0])
	}
}

func TestAdamMatchesReference(t *testing.T) {
	// One coordinate, three steps, against the formulas of Kingma & Ba with AdamW decay.
	w := &Param{Name: "w", Shape: []int64{1, 1}, Data: []float32{0.5}}
	cfg := OptimizerConfig{Kind: Adam, WeightDecay: 0.01}
	o, err := newOptimizer(cfg, []*Param{w})
	if err != nil {
		t.Fatal(err)
	}
	ref, m, v := 0.5, 0.0, 0.0
	for k, g := range []float64{0.3, -0.1, 0.2} {
		lr := 0.01
		o.step([]*Param{w}, [][]float32{{float32(g)}}, lr)
		m = 0.9*m + 0.1*g
		v = 0.999*v + 0.001*g*g
		mh := m / (1 - math.Pow(0.9, float64(k+1)))
		vh := v / (1 - math.Pow(0.999, float64(k+1)))
		ref = ref*(1-lr*0.01) - lr*mh/(math.Sqrt(vh)+1e-8)
		if !near(float64(w.Data[0]), ref, 1e-5) {
			t.Fatalf("step %d: w = %v, want %v", k+1, w.Data[0], ref)
		}
	}
}

func TestOptimizerConfigErrors(t *testing.T) {
	for _, c := range []OptimizerConfig{
		{Kind: "rmsprop"},
		{Kind: SGD, Momentum: 1},
		{Kind: SGD, WeightDecay: -1},
		{Kind: Adam, Beta1: 1.5},
	} {
		if _, err := newOptimizer(c, nil); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestSchedules(t *testing.T) {
	const total = 1000
	cos := Schedule{Kind: Cosine, LR: 1, Warmup: 0.1, Final: 0.01}
	if got := cos.At(0, total); !near(got, 0.01, 1e-9) {
		t.Errorf("cosine warm-up start %v, want 0.01", got)
	}
	if got := cos.At(99, total); !near(got, 1, 1e-9) {
		t.Errorf("cosine warm-up end %v, want 1", got)
	}
	if got := cos.At(550, total); !near(got, 0.01+0.99*0.5, 1e-9) {
		t.Errorf("cosine midpoint %v", got)
	}
	if got := cos.At(total, total); !near(got, 0.01, 1e-9) {
		t.Errorf("cosine end %v, want 0.01", got)
	}
	for s := 100; s < total; s++ {
		if cos.At(s, total) > cos.At(s-1, total)+1e-12 && s > 100 {
			t.Fatalf("cosine rises at step %d", s)
		}
	}
	st := Schedule{Kind: Step, LR: 0.1, Milestones: []float64{0.5, 0.8}, Gamma: 0.1}
	for _, c := range []struct {
		step int
		want float64
	}{{0, 0.1}, {499, 0.1}, {500, 0.01}, {799, 0.01}, {800, 0.001}} {
		if got := st.At(c.step, total); !near(got, c.want, 1e-9) {
			t.Errorf("step schedule at %d: %v, want %v", c.step, got, c.want)
		}
	}
	oc := Schedule{Kind: OneCycle, LR: 2, Warmup: 0.4}
	if got := oc.At(399, total); !near(got, 2, 1e-9) {
		t.Errorf("one-cycle peak %v", got)
	}
	if got := oc.At(700, total); !near(got, 1, 1e-9) {
		t.Errorf("one-cycle descent %v, want 1", got)
	}
	for _, bad := range []Schedule{{Kind: Cosine}, {Kind: "linear", LR: 1}, {Kind: Step, LR: 1}, {Kind: Cosine, LR: 1, Warmup: 1}} {
		if bad.validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
