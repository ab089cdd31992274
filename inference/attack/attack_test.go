package attack_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/internal/testrt"
)

// fixture is a surrogate and a transfer model on 28×28 gray images in [0,1].
type fixture struct {
	sur, other *attack.ONNXModel
	x          *inference.Tensor
	labels     []int
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	a, b, _ := shared(t)
	f := &fixture{sur: newModel(t, a, attack.ModelOptions{Name: "cnn-a"}), other: newModel(t, b, attack.ModelOptions{Name: "cnn-b"}),
		x: gridImages(42, int64(n), 1, 28, 28)}
	l, err := f.sur.Predict(context.Background(), f.x)
	if err != nil {
		t.Fatal(err)
	}
	// The surrogate's own clean predictions serve as labels: every image starts correct.
	for i := range n {
		f.labels = append(f.labels, argmax(l.Data[i*10:(i+1)*10]))
	}
	return f
}

func (f *fixture) request() attack.Request {
	return attack.Request{Images: f.x, Labels: f.labels,
		Surrogates: []attack.Model{{Name: f.sur.Name(), Net: f.sur}}, Others: []attack.Model{{Name: f.other.Name(), Net: f.other}}}
}

func argmax(z []float32) int {
	b := 0
	for i, v := range z {
		if v > z[b] {
			b = i
		}
	}
	return b
}

// run attacks and checks what holds for every attack: each reported step and the
// result stay in the ball and the range, the result is on the 8-bit grid, the norms
// and the pass counts are true, and steps arrive in order.
func run(t *testing.T, f *fixture, cfg attack.Config, req attack.Request) *attack.Result {
	t.Helper()
	n := int(f.x.Shape[0])
	def := cfg.Defaults()
	f0, b0 := f.sur.Passes()
	o0, _ := f.other.Passes()
	var steps []attack.Step
	res, err := attack.Run(context.Background(), cfg, req, func(s attack.Step) error {
		checkBall(t, fmt.Sprintf("step %d", s.Step), s.Adv, f.x, def.Eps, 0, 1, s.Final && !def.NoQuantize)
		if len(s.Loss) != n || len(s.Pred) != n || len(s.Logits) != len(req.Surrogates) {
			t.Fatalf("step %d reports %d losses, %d predictions, %d logits for %d images", s.Step, len(s.Loss), len(s.Pred), len(s.Logits), n)
		}
		for _, v := range s.Loss {
			if math.IsNaN(float64(v)) {
				t.Fatalf("step %d: NaN loss", s.Step)
			}
		}
		s.Adv = nil // not ours to keep
		steps = append(steps, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBall(t, "result", res.Adv, f.x, def.Eps, 0, 1, !def.NoQuantize)
	if res.Seed != cfg.Seed || res.Config.Method != def.Method {
		t.Fatalf("result seed %d / method %s, want %d / %s", res.Seed, res.Config.Method, cfg.Seed, def.Method)
	}
	var worst float64
	for i := range n {
		var m, s float64
		for j := i * 784; j < (i+1)*784; j++ {
			d := math.Abs(float64(res.Adv.Data[j]) - float64(f.x.Data[j]))
			m = math.Max(m, d)
			s += d * d
		}
		if float64(res.Linf[i]) != float64(float32(m)) || math.Abs(float64(res.L2[i])-math.Sqrt(s)) > 1e-5 {
			t.Fatalf("image %d: reported L∞ %v L2 %v, actual %v %v", i, res.Linf[i], res.L2[i], m, math.Sqrt(s))
		}
		worst = math.Max(worst, m)
	}
	if float64(res.LinfMax) != float64(float32(worst)) || res.LinfMax > def.Eps {
		t.Fatalf("reported max L∞ %v, actual %v, eps %v", res.LinfMax, worst, def.Eps)
	}
	// Pass counts: the attack's own count matches the model's, which also saw the
	// evaluation's clean pass when the attack did not need one.
	f1, b1 := f.sur.Passes()
	o1, _ := f.other.Passes()
	cleanEval := int64(0)
	if f1-f0 != res.Forward {
		cleanEval = int64(n)
	}
	if f1-f0 != res.Forward+cleanEval || b1-b0 != res.Backward {
		t.Fatalf("attack counted %d/%d passes, the model saw %d/%d", res.Forward, res.Backward, f1-f0, b1-b0)
	}
	if o1-o0 != 2*int64(n) {
		t.Fatalf("the transfer model ran %d images, want clean and adversarial (%d)", o1-o0, 2*n)
	}
	if len(res.Models) != 2 || !res.Models[0].Surrogate || res.Models[1].Surrogate {
		t.Fatalf("models %+v, want the surrogate then the transfer model", res.Models)
	}
	if !slices.IsSortedFunc(steps, func(a, b attack.Step) int { return (a.Restart*1000000 + a.Step) - (b.Restart*1000000 + b.Step) }) {
		t.Fatal("steps out of order")
	}
	if len(steps) == 0 || !steps[len(steps)-1].Final {
		t.Fatal("the last step is not marked final")
	}
	last := steps[len(steps)-1]
	if !slices.Equal(last.Pred, res.Models[0].Adv) {
		t.Fatalf("last step predictions %v differ from the result's %v", last.Pred, res.Models[0].Adv)
	}
	if def.Method.BlackBox() {
		var q int64
		for _, v := range res.Queries {
			if v < 1 || v > def.Queries {
				t.Fatalf("queries %v outside 1..%d", res.Queries, def.Queries)
			}
			q += int64(v)
		}
		if q != res.Forward || res.Backward != 0 {
			t.Fatalf("black-box attack: %d queries, %d forward and %d backward passes", q, res.Forward, res.Backward)
		}
	} else {
		r := int64(max(def.Restarts, 1))
		if res.Backward < int64(n)*r*int64(def.Steps) {
			t.Fatalf("%d backward passes for %d images × %d restarts × %d steps", res.Backward, n, r, def.Steps)
		}
		if res.Forward-res.Backward != int64(n)*r+cleanPass(cfg, n) {
			t.Fatalf("forward-only passes %d, want one per image and restart plus the clean pass (%d)", res.Forward-res.Backward, int64(n)*r+cleanPass(cfg, n))
		}
		want := (def.Steps + 1) * int(r)
		if r > 1 {
			want++ // the best of the restarts
		}
		if len(steps) != want {
			t.Fatalf("%d steps reported, want %d", len(steps), want)
		}
		if cfg.Loss != attack.LossMargin && res.Backward != int64(n)*r*int64(def.Steps) {
			t.Fatalf("%d backward passes, want %d", res.Backward, int64(n)*r*int64(def.Steps))
		}
	}
	return res
}

// cleanPass is the clean forward pass an attack needs for least-likely targets or the
// margin loss (labels are given in these tests).
func cleanPass(cfg attack.Config, n int) int64 {
	if cfg.Target == attack.LeastLikely || cfg.Loss == attack.LossMargin {
		return int64(n)
	}
	return 0
}

var gradientMethods = []attack.Method{attack.FGSM, attack.BIM, attack.PGD, attack.MIFGSM, attack.DIFGSM, attack.MDI2FGSM}

// Every attack, untargeted and targeted, keeps its bounds; untargeted ones fool the
// surrogate and targeted ones reach the target far more often than chance (10%).
func TestAttacksPropertiesAndSuccess(t *testing.T) {
	f := newFixture(t, 20)
	type tc struct {
		cfg      attack.Config
		minRate  float64
		describe string
	}
	var cases []tc
	for _, m := range gradientMethods {
		for _, loss := range []attack.Loss{attack.LossCE, attack.LossMargin} {
			base := attack.Config{Method: m, Eps: 0.3, Loss: loss, Seed: 7}
			if m == attack.PGD {
				base.Steps, base.Restarts = 10, 2
			}
			un := base
			cases = append(cases, tc{un, 0.8, "untargeted"})
			tg := base
			tg.Target, tg.TargetClass = attack.TargetClass, 3
			ll := base
			ll.Target = attack.LeastLikely
			rate := 0.5
			if m == attack.FGSM {
				rate = 0.3 // one step rarely lands on a chosen class
			}
			cases = append(cases, tc{tg, rate, "target 3"}, tc{ll, rate, "least likely"})
		}
	}
	cases = append(cases,
		tc{attack.Config{Method: attack.Square, Eps: 0.3, Queries: 300, SquareP: 0.3, Seed: 7}, 0.8, "untargeted"},
		tc{attack.Config{Method: attack.Square, Eps: 0.3, Queries: 300, SquareP: 0.3, Seed: 7, Target: attack.TargetClass, TargetClass: 3}, 0.5, "target 3"},
		tc{attack.Config{Method: attack.Noise, Eps: 0.3, Seed: 7}, -1, "untargeted"},
		tc{attack.Config{Method: attack.Noise, Eps: 0.3, Queries: 5, Seed: 7, Target: attack.LeastLikely}, -1, "least likely"},
	)
	for _, c := range cases {
		name := fmt.Sprintf("%s/%s/%s", c.cfg.Method, c.cfg.Defaults().Loss, c.describe)
		t.Run(name, func(t *testing.T) {
			res := run(t, f, c.cfg, f.request())
			rate := res.Models[0].SuccessRate
			if c.cfg.Target != attack.Untargeted {
				// Images already of the target class count as successes for free: leave them out.
				var hit, tried int
				for i, tg := range res.Targets {
					if f.labels[i] != tg {
						tried++
						if res.Models[0].Success[i] {
							hit++
						}
					}
				}
				rate = float64(hit) / float64(tried)
			}
			t.Logf("%s: surrogate success %.0f%%, transfer %.0f%%, L∞ %v, %d fwd %d bwd", name, 100*rate, 100*res.Models[1].SuccessRate, res.LinfMax, res.Forward, res.Backward)
			if rate < c.minRate {
				t.Fatalf("success %.0f%% on the surrogate, want at least %.0f%%", 100*rate, 100*c.minRate)
			}
			if c.cfg.Target != attack.Untargeted {
				if len(res.Targets) != len(f.labels) {
					t.Fatalf("%d targets for %d images", len(res.Targets), len(f.labels))
				}
				for i, tg := range res.Targets {
					if res.Models[0].Success[i] != (res.Models[0].Adv[i] == tg) {
						t.Fatalf("image %d: success %v, prediction %d, target %d", i, res.Models[0].Success[i], res.Models[0].Adv[i], tg)
					}
				}
			}
		})
	}
}

// The same seed gives the same result; another seed, for a randomised attack, another.
func TestSameSeedSameResult(t *testing.T) {
	f := newFixture(t, 6)
	for _, cfg := range []attack.Config{
		{Method: attack.PGD, Eps: 0.1, Steps: 5, Restarts: 2, Seed: 11},
		{Method: attack.MDI2FGSM, Eps: 0.1, Steps: 5, Seed: 11, Loss: attack.LossMargin},
		{Method: attack.Square, Eps: 0.1, Queries: 50, Seed: 11},
		{Method: attack.Noise, Eps: 0.1, Queries: 3, Seed: 11},
	} {
		a := run(t, f, cfg, f.request())
		b := run(t, f, cfg, f.request())
		if !slices.Equal(a.Adv.Data, b.Adv.Data) || a.Forward != b.Forward || a.Backward != b.Backward || !slices.Equal(a.Queries, b.Queries) {
			t.Fatalf("%s: same seed, different results", cfg.Method)
		}
		for k := range a.Models {
			if !slices.Equal(a.Models[k].Adv, b.Models[k].Adv) {
				t.Fatalf("%s: same seed, different predictions", cfg.Method)
			}
		}
		cfg.Seed++
		c := run(t, f, cfg, f.request())
		if slices.Equal(a.Adv.Data, c.Adv.Data) {
			t.Fatalf("%s: seeds %d and %d gave identical images", cfg.Method, cfg.Seed-1, cfg.Seed)
		}
	}
}

// cancelling wraps a model and cancels the run's context inside its k-th call, before
// passing the call on: the attack must stop within that step.
type cancelling struct {
	net    attack.Differentiable
	cancel context.CancelFunc
	at     int
	calls  int
}

func (c *cancelling) tick() {
	c.calls++
	if c.calls == c.at {
		c.cancel()
	}
}

func (c *cancelling) Predict(ctx context.Context, x *inference.Tensor) (*inference.Tensor, error) {
	c.tick()
	return c.net.Predict(ctx, x)
}

func (c *cancelling) Gradient(ctx context.Context, x *inference.Tensor, kind attack.LossKind, w *inference.Tensor) (*attack.Gradient, error) {
	c.tick()
	return c.net.Gradient(ctx, x, kind, w)
}

func TestCancellationWithinAStep(t *testing.T) {
	f := newFixture(t, 4)
	for _, m := range attack.Methods {
		t.Run(string(m), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w := &cancelling{net: f.sur, cancel: cancel, at: 3}
			req := attack.Request{Images: f.x, Labels: f.labels, Surrogates: []attack.Model{{Name: "w", Net: w}}}
			steps := 0
			_, err := attack.Run(ctx, attack.Config{Method: m, Eps: 0.01, Steps: 20, Queries: 100, Seed: 1}, req, func(attack.Step) error {
				steps++
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v, want context.Canceled", err)
			}
			if w.calls != 3 {
				t.Fatalf("the model was called %d times; cancelled in call 3, the attack went on", w.calls)
			}
			if m != attack.FGSM && steps > 2 {
				t.Fatalf("%d steps reported after cancellation in the third call", steps)
			}
		})
	}
}

func TestCallbackErrorStopsTheAttack(t *testing.T) {
	f := newFixture(t, 2)
	stop := errors.New("client went away")
	for _, m := range attack.Methods {
		calls := 0
		_, err := attack.Run(context.Background(), attack.Config{Method: m, Eps: 0.1, Queries: 50, Seed: 1}, f.request(), func(attack.Step) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("%s: err %v after %d callbacks, want the callback's error after 1", m, err, calls)
		}
	}
}

// predictOnly hides a model's gradients.
type predictOnly struct{ net attack.Classifier }

func (p predictOnly) Predict(ctx context.Context, x *inference.Tensor) (*inference.Tensor, error) {
	return p.net.Predict(ctx, x)
}

func TestRunRejectsBadRequests(t *testing.T) {
	f := newFixture(t, 2)
	ctx := context.Background()
	good := attack.Config{Method: attack.PGD, Eps: 0.1, Steps: 2, Seed: 1}
	outside := f.x.Clone()
	outside.Data[5] = 1.5
	for name, c := range map[string]struct {
		cfg attack.Config
		req attack.Request
	}{
		"no images":        {good, attack.Request{Surrogates: f.request().Surrogates}},
		"no surrogate":     {good, attack.Request{Images: f.x}},
		"bad shape":        {good, attack.Request{Images: &inference.Tensor{Shape: []int64{2, 1, 28, 28}, Data: make([]float32, 5)}, Surrogates: f.request().Surrogates}},
		"wrong size":       {good, attack.Request{Images: inference.NewTensor(1, 1, 20, 20), Surrogates: f.request().Surrogates}},
		"outside range":    {good, attack.Request{Images: outside, Surrogates: f.request().Surrogates}},
		"label count":      {good, attack.Request{Images: f.x, Labels: []int{1}, Surrogates: f.request().Surrogates}},
		"label too big":    {good, attack.Request{Images: f.x, Labels: []int{1, 10}, Surrogates: f.request().Surrogates}},
		"negative label":   {good, attack.Request{Images: f.x, Labels: []int{-1, 0}, Surrogates: f.request().Surrogates}},
		"target too big":   {attack.Config{Method: attack.BIM, Eps: 0.1, Target: attack.TargetClass, TargetClass: 10}, f.request()},
		"no gradients":     {good, attack.Request{Images: f.x, Surrogates: []attack.Model{{Name: "p", Net: predictOnly{f.sur}}}}},
		"duplicate name":   {good, attack.Request{Images: f.x, Surrogates: f.request().Surrogates, Others: []attack.Model{{Name: "cnn-a", Net: f.other}}}},
		"unnamed model":    {good, attack.Request{Images: f.x, Surrogates: []attack.Model{{Net: f.sur}}}},
		"zero eps":         {attack.Config{Method: attack.PGD}, f.request()},
		"DI on flat input": {attack.Config{Method: attack.DIFGSM, Eps: 0.1}, attack.Request{Images: inference.NewTensor(2, 784), Surrogates: f.request().Surrogates}},
	} {
		if _, err := attack.Run(ctx, c.cfg, c.req, nil); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// Black-box attacks need predictions only.
	req := attack.Request{Images: f.x, Surrogates: []attack.Model{{Name: "p", Net: predictOnly{f.sur}}}}
	if _, err := attack.Run(ctx, attack.Config{Method: attack.Square, Eps: 0.1, Queries: 10, Seed: 1}, req, nil); err != nil {
		t.Fatalf("square on a predict-only model: %v", err)
	}
}

// On a linear model the margin attack can be followed exactly: each BIM step moves
// every pixel by α against sign(W_y − W_j), j the runner-up class at the current point
// (which the attack learns only after each pass), then projects and, at the end,
// quantises.
func TestMarginBIMOnLinearModelIsExact(t *testing.T) {
	spec := newLinear(21, []int64{1, 8, 8}, 5)
	m := newModel(t, spec.model(), attack.ModelOptions{Name: "linear"})
	n, d := 6, 64
	x := gridImages(22, int64(n), 1, 8, 8)
	labels := make([]int, n)
	for i := range n {
		labels[i] = argmax64(spec.logits(x.Data[i*d : (i+1)*d]))
	}
	cfg := attack.Config{Method: attack.BIM, Eps: 0.2, Steps: 8, Alpha: 0.04, Loss: attack.LossMargin, Seed: 1}
	res, err := attack.Run(context.Background(), cfg, attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{{Name: "linear", Net: m}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		x0 := x.Data[i*d : (i+1)*d]
		cur := append([]float32(nil), x0...)
		for range cfg.Steps {
			z := spec.logits(cur)
			j := -1
			for c := range z {
				if c != labels[i] && (j < 0 || z[c] > z[j]) {
					j = c
				}
			}
			for p := range cur {
				g := spec.w[j*d+p] - spec.w[labels[i]*d+p]
				switch {
				case g > 0:
					cur[p] += cfg.Alpha
				case g < 0:
					cur[p] -= cfg.Alpha
				}
				lo := math.Max(0, float64(x0[p])-float64(cfg.Eps))
				hi := math.Min(1, float64(x0[p])+float64(cfg.Eps))
				cur[p] = float32(math.Min(math.Max(float64(cur[p]), lo), hi))
			}
		}
		for p := range cur {
			lo := math.Max(0, float64(x0[p])-float64(cfg.Eps))
			hi := math.Min(1, float64(x0[p])+float64(cfg.Eps))
			// The nearest 8-bit level whose float32 value lies in the ball.
			want := float32(math.NaN())
			for k := 0.0; k <= 255; k++ {
				v := float32(k / 255)
				if float64(v) >= lo && float64(v) <= hi && (math.IsNaN(float64(want)) ||
					math.Abs(float64(v)-float64(cur[p])) < math.Abs(float64(want)-float64(cur[p]))) {
					want = v
				}
			}
			if got := res.Adv.Data[i*d+p]; got != want {
				t.Fatalf("image %d pixel %d: got %v (%v/255), following the attack gives %v (%v/255) from %v (%v/255), x0 %v/255", i, p, got, got*255, want, want*255, cur[p], cur[p]*255, x0[p]*255)
			}
		}
	}
}

func argmax64(z []float64) int {
	b := 0
	for i, v := range z {
		if v > z[b] {
			b = i
		}
	}
	return b
}

// Ensembles: separate surrogates average their losses (a gradient pass each); a merged
// graph averages logits (one pass). Both fool both members.
func TestEnsembleSurrogates(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 12)
	ens, err := attack.NewEnsemble(ctx, testrt.Open(t), "a+b", []*attack.ONNXModel{f.sur, f.other})
	if err != nil {
		t.Fatal(err)
	}
	defer ens.Close()
	cfg := attack.Config{Method: attack.MIFGSM, Eps: 0.3, Steps: 6, Seed: 3}
	n := int64(len(f.labels))
	for _, c := range []struct {
		name       string
		surrogates []attack.Model
		others     []attack.Model
		backward   int64
	}{
		{"losses", []attack.Model{{Name: "a", Net: f.sur}, {Name: "b", Net: f.other}}, nil, 2 * n * 6},
		{"logits", []attack.Model{{Name: "a+b", Net: ens}}, []attack.Model{{Name: "a", Net: f.sur}, {Name: "b", Net: f.other}}, n * 6},
	} {
		logitsSeen := 0
		res, err := attack.Run(ctx, cfg, attack.Request{Images: f.x, Labels: f.labels, Surrogates: c.surrogates, Others: c.others}, func(s attack.Step) error {
			logitsSeen = len(s.Logits)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		checkBall(t, c.name, res.Adv, f.x, cfg.Eps, 0, 1, true)
		if res.Backward != c.backward || logitsSeen != len(c.surrogates) {
			t.Fatalf("%s: %d backward passes (want %d), %d logits per step (want %d)", c.name, res.Backward, c.backward, logitsSeen, len(c.surrogates))
		}
		for _, m := range res.Models {
			t.Logf("%s: %s success %.0f%%", c.name, m.Name, 100*m.SuccessRate)
			if m.SuccessRate < 0.8 {
				t.Errorf("%s ensemble: %s fooled on %.0f%% of images, want 80%%", c.name, m.Name, 100*m.SuccessRate)
			}
		}
	}
}

// Channels-last images: the input-diversity transform and Square Attack's squares
// follow the layout.
func TestChannelsLastLayout(t *testing.T) {
	spec := newLinear(31, []int64{10, 10, 3}, 6)
	m := newModel(t, spec.model(), attack.ModelOptions{Name: "nhwc"})
	x := gridImages(32, 8, 10, 10, 3)
	for _, cfg := range []attack.Config{
		{Method: attack.MDI2FGSM, Eps: 0.1, Steps: 5, DiversityProb: 1, Layout: "NHWC", Seed: 1},
		{Method: attack.Square, Eps: 0.1, Queries: 200, Layout: "NHWC", Seed: 1},
	} {
		res, err := attack.Run(context.Background(), cfg, attack.Request{Images: x, Surrogates: []attack.Model{{Name: "nhwc", Net: m}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkBall(t, string(cfg.Method), res.Adv, x, cfg.Eps, 0, 1, true)
		t.Logf("%s NHWC: success %.0f%%", cfg.Method, 100*res.Models[0].SuccessRate)
		if res.Models[0].SuccessRate < 0.5 {
			t.Errorf("%s NHWC: success %.0f%%", cfg.Method, 100*res.Models[0].SuccessRate)
		}
	}
	if _, err := attack.Run(context.Background(), attack.Config{Method: attack.Square, Eps: 0.1, Layout: "NCHW", Seed: 1},
		attack.Request{Images: inference.NewTensor(1, 10, 10), Surrogates: []attack.Model{{Name: "nhwc", Net: m}}}, nil); err == nil {
		t.Error("Square Attack on a 3-d batch was accepted")
	}
}
