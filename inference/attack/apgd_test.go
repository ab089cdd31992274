package attack_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/internal/testzoo"
)

// recorded is a step kept past its callback.
type recorded struct {
	attack.Step
	adv *inference.Tensor
}

// runInBall runs an attack, checking what every attack owes: each step and the result
// inside the ε-ball and the input range (the result, unless NoQuantize, on the 8-bit
// grid), true norms, and a last step marked final whose predictions are the result's.
// It returns the result and every step, with copies of its image and logits.
func runInBall(t *testing.T, cfg attack.Config, req attack.Request) (*attack.Result, []recorded) {
	t.Helper()
	def := cfg.Defaults()
	x0 := req.Images
	var steps []recorded
	res, err := attack.Run(context.Background(), cfg, req, func(s attack.Step) error {
		checkBall(t, fmt.Sprintf("%s step %d of run %d", s.Stage, s.Step, s.Restart), s.Adv, x0, def.Eps, 0, 1, s.Final && !def.NoQuantize)
		for i, v := range s.Loss {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("step %d: image %d has loss %v", s.Step, i, v)
			}
		}
		kept := recorded{Step: s, adv: s.Adv.Clone()}
		kept.Logits = make([]*inference.Tensor, len(s.Logits))
		for k, l := range s.Logits {
			kept.Logits[k] = l.Clone()
		}
		steps = append(steps, kept)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkBall(t, "result", res.Adv, x0, def.Eps, 0, 1, !def.NoQuantize)
	linf, _ := distances(res.Adv, x0)
	for i, v := range linf {
		if res.Linf[i] != v {
			t.Fatalf("image %d: reported L∞ %v, actual %v", i, res.Linf[i], v)
		}
	}
	if len(steps) == 0 || !steps[len(steps)-1].Final || !slices.Equal(steps[len(steps)-1].Pred, res.Models[0].Adv) {
		t.Fatal("the last step is not final or its predictions differ from the result's")
	}
	return res, steps
}

// builtin is the built-in classifier called name.
func builtin(t testing.TB, name string) *attack.ONNXModel { return testzoo.Classifier(t, name) }

func distances(x, x0 *inference.Tensor) (linf []float32, l2 []float64) {
	n := int(x.Shape[0])
	per := len(x.Data) / n
	for i := range n {
		var m, s float64
		for j := i * per; j < (i+1)*per; j++ {
			d := math.Abs(float64(x.Data[j]) - float64(x0.Data[j]))
			m, s = math.Max(m, d), s+d*d
		}
		linf, l2 = append(linf, float32(m)), append(l2, math.Sqrt(s))
	}
	return linf, l2
}

// crossEntropies is −log softmax(z)_y per row, in float64.
func crossEntropies(z *inference.Tensor, labels []int) []float64 {
	c := int(z.Shape[1])
	out := make([]float64, len(labels))
	for i, y := range labels {
		r := z.Data[i*c : (i+1)*c]
		m := math.Inf(-1)
		for _, v := range r {
			m = math.Max(m, float64(v))
		}
		var s float64
		for _, v := range r {
			s += math.Exp(float64(v) - m)
		}
		out[i] = m + math.Log(s) - float64(r[y])
	}
	return out
}

// APGD-CE on the robust built-in model, where most digits survive all 100 iterations:
// every iterate stays in the ball, the loss each step reports is the model's
// cross-entropy at the image it reports, the best loss is monotone over the
// checkpoints (22, 41, …, 99) and ends above the start, and an image never fooled
// ends exactly at its best point (floats kept, so the result is the point itself).
func TestAPGDLossMonotoneAtCheckpoints(t *testing.T) {
	m := builtin(t, "mnist-cnn-robust")
	x, labels := digits(t, 6)
	cfg := attack.Config{Method: attack.APGDCE, Eps: 0.3, Seed: 3, NoQuantize: true}
	res, steps := runInBall(t, cfg, attack.Request{Images: x, Labels: labels, Surrogates: named([]*attack.ONNXModel{m})})
	fooled := res.Models[0].Success
	best := make([]float64, len(labels))
	for i := range best {
		best[i] = math.Inf(-1)
	}
	checkpoints := []int{22, 41, 57, 70, 80, 87, 93, 99}
	var atChecks [][]float64
	for _, s := range steps {
		if s.Final {
			continue
		}
		z, err := m.Predict(context.Background(), s.adv)
		if err != nil {
			t.Fatal(err)
		}
		for i, ce := range crossEntropies(z, labels) {
			if math.Abs(ce-float64(s.Loss[i])) > 1e-3*math.Max(1, ce) {
				t.Fatalf("step %d image %d: reported loss %v, the model's cross-entropy there %v", s.Step.Step, i, s.Loss[i], ce)
			}
			best[i] = math.Max(best[i], float64(s.Loss[i]))
		}
		if slices.Contains(checkpoints, s.Step.Step) {
			atChecks = append(atChecks, slices.Clone(best))
		}
	}
	robust := 0
	for i := range labels {
		if fooled[i] {
			continue
		}
		robust++
		for j := 1; j < len(atChecks); j++ {
			if atChecks[j][i] < atChecks[j-1][i] {
				t.Fatalf("image %d: best loss fell from %v to %v between checkpoints %d and %d", i, atChecks[j-1][i], atChecks[j][i], checkpoints[j-1], checkpoints[j])
			}
		}
		if best[i] <= float64(steps[0].Loss[i]) {
			t.Fatalf("image %d: best loss %v, no higher than at the start (%v)", i, best[i], steps[0].Loss[i])
		}
		z, err := m.Predict(context.Background(), res.Adv)
		if err != nil {
			t.Fatal(err)
		}
		if ce := crossEntropies(z, labels)[i]; math.Abs(ce-best[i]) > 1e-4*math.Max(1, ce) {
			t.Fatalf("image %d ends at loss %v, its best was %v", i, ce, best[i])
		}
	}
	if len(atChecks) != len(checkpoints) || robust == 0 {
		t.Fatalf("%d checkpoints seen, %d digits robust: the test needs all 8 and some robust digits", len(atChecks), robust)
	}
	t.Logf("%s ε 0.3: %d of %d digits survive APGD-CE; best losses %.3f", m.Name(), robust, len(labels), best)
}

// dlrOf is the DLR loss of logits rows in float64, straight from the definition.
func dlrOf(z []float32, y, target int) float64 {
	s := slices.Clone(z)
	slices.SortFunc(s, func(a, b float32) int { return -cmpF(a, b) })
	if target >= 0 {
		return -(float64(z[y]) - float64(z[target])) / (float64(s[0]) - (float64(s[2])+float64(s[3]))/2 + 1e-12)
	}
	other := math.Inf(-1)
	for j, v := range z {
		if j != y {
			other = math.Max(other, float64(v))
		}
	}
	return -(float64(z[y]) - other) / (float64(s[0]) - float64(s[2]) + 1e-12)
}

func cmpF(a, b float32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Each variant does what it claims on the built-in small CNN: untargeted ones fool it,
// targeted ones reach the target (far more often than an untargeted attack happens to
// land there) and count only the target, APGD-T counts any wrong class, and the
// losses reported are the ones named.
func TestAPGDVariants(t *testing.T) {
	m := builtin(t, "mnist-cnn-small")
	x, labels := digits(t, 16)
	req := attack.Request{Images: x, Labels: labels, Surrogates: named([]*attack.ONNXModel{m})}
	for _, c := range []struct {
		cfg     attack.Config
		minRate float64
	}{
		{attack.Config{Method: attack.APGDCE, Eps: 0.1, Steps: 30, Seed: 2}, 0.6},
		{attack.Config{Method: attack.APGDDLR, Eps: 0.1, Steps: 30, Seed: 2}, 0.6},
		{attack.Config{Method: attack.APGDCE, Eps: 0.15, Steps: 30, Seed: 2, Target: attack.TargetClass, TargetClass: 3}, 0.6},
		{attack.Config{Method: attack.APGDDLR, Eps: 0.15, Steps: 30, Seed: 2, Target: attack.TargetClass, TargetClass: 3}, 0.6},
		{attack.Config{Method: attack.APGDT, Eps: 0.1, Steps: 30, Seed: 2, TargetClasses: 3}, 0.6},
	} {
		def := c.cfg.Defaults()
		name := fmt.Sprintf("%s/%s/target%d", def.Method, def.Loss, def.TargetClass)
		t.Run(name, func(t *testing.T) {
			res, steps := runInBall(t, c.cfg, req)
			r := res.Models[0]
			targeted := def.Target != attack.Untargeted
			var hit, tried int
			for i, y := range labels {
				wrong := r.Adv[i] != y
				if targeted {
					if res.Targets[i] != 3 || r.Success[i] != (r.Adv[i] == 3) {
						t.Fatalf("image %d: target %d, prediction %d, success %v", i, res.Targets[i], r.Adv[i], r.Success[i])
					}
					wrong = r.Adv[i] == 3
				} else if r.Success[i] != wrong {
					t.Fatalf("image %d: label %d, prediction %d, success %v", i, y, r.Adv[i], r.Success[i])
				}
				if !targeted || y != 3 {
					tried++
					if wrong {
						hit++
					}
				}
			}
			rate := float64(hit) / float64(tried)
			t.Logf("%s: success %.0f%% (%d fwd, %d bwd)", name, 100*rate, res.Forward, res.Backward)
			if rate < c.minRate {
				t.Fatalf("success %.0f%%, want at least %.0f%%", 100*rate, 100*c.minRate)
			}
			if targeted {
				un := c.cfg
				un.Target, un.TargetClass = attack.Untargeted, 0
				res, err := attack.Run(context.Background(), un, req, nil)
				if err != nil {
					t.Fatal(err)
				}
				landed := 0
				for i, p := range res.Models[0].Adv {
					if p == 3 && labels[i] != 3 {
						landed++
					}
				}
				if by := float64(landed) / float64(tried); rate < by+0.3 {
					t.Fatalf("targeted success %.0f%%; untargeted, %.0f%% land on class 3 anyway", 100*rate, 100*by)
				}
			}
			// The reported loss is the named one, at the reported logits.
			s := steps[0]
			for i, y := range labels {
				z := s.Logits[0].Data[i*10 : (i+1)*10]
				var want float64
				switch {
				case def.Loss == attack.LossCE && targeted:
					want = -crossEntropies(&inference.Tensor{Shape: []int64{1, 10}, Data: z}, []int{3})[0]
				case def.Loss == attack.LossCE:
					want = crossEntropies(&inference.Tensor{Shape: []int64{1, 10}, Data: z}, []int{y})[0]
				case targeted:
					want = dlrOf(z, y, 3)
				case def.Method == attack.APGDT:
					continue // the aimed class is the attack's own (checked through success above)
				default:
					want = dlrOf(z, y, -1)
				}
				if math.Abs(want-float64(s.Loss[i])) > 1e-4*math.Max(1, math.Abs(want)) {
					t.Fatalf("image %d: start loss %v, the %s loss at its logits is %v", i, s.Loss[i], def.Loss, want)
				}
			}
		})
	}
}

// The same seed gives the same result, another seed another.
func TestAPGDAndFABSameSeedSameResult(t *testing.T) {
	f := newFixture(t, 6)
	req := attack.Request{Images: f.x, Labels: f.labels, Surrogates: []attack.Model{{Name: f.sur.Name(), Net: f.sur}}}
	for _, cfg := range []attack.Config{
		{Method: attack.APGDT, Eps: 0.05, Steps: 10, TargetClasses: 2, Seed: 4},
		{Method: attack.FABT, Eps: 0.05, Steps: 10, TargetClasses: 2, Restarts: 2, Seed: 4},
		{Method: attack.AutoAttack, Eps: 0.05, Steps: 10, TargetClasses: 2, Queries: 50, Seed: 4},
	} {
		a, err := attack.Run(context.Background(), cfg, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := attack.Run(context.Background(), cfg, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Adv.Data, b.Adv.Data) || a.Forward != b.Forward || a.Backward != b.Backward {
			t.Fatalf("%s: same seed, different results", cfg.Method)
		}
		cfg.Seed++
		c, err := attack.Run(context.Background(), cfg, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Equal(a.Adv.Data, c.Adv.Data) {
			t.Fatalf("%s: seeds %d and %d gave identical images", cfg.Method, cfg.Seed-1, cfg.Seed)
		}
	}
}
