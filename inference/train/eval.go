package train

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
	"gibbon/internal/progress"
)

// Evaluator measures a trained classifier: clean accuracy and accuracy under PGD.
type Evaluator struct {
	fwd  *inference.Session
	grad *gradGraph // input gradients with the model's own weights; nil until needed
	rt   *inference.Runtime
	m    *onnx.ModelProto
}

// NewEvaluator loads a forward model (input "image" [N,1,28,28], output "logits" [N,10]).
func NewEvaluator(rt *inference.Runtime, model []byte) (*Evaluator, error) {
	m, err := onnx.Decode(model)
	if err != nil {
		return nil, err
	}
	s, err := rt.NewSession(model)
	if err != nil {
		return nil, err
	}
	if err := checkClassifier(s); err != nil {
		s.Close()
		return nil, err
	}
	return &Evaluator{fwd: s, rt: rt, m: m}, nil
}

// Close releases the sessions.
func (e *Evaluator) Close() {
	e.fwd.Close()
	e.grad.close()
}

// Predict returns the predicted class of each image in the set (batches of batch).
func (e *Evaluator) Predict(ctx context.Context, set *mnist.Set, batch int, p *progress.Bar) ([]int, error) {
	if batch < 1 {
		return nil, fmt.Errorf("batch size %d must be at least 1", batch)
	}
	n := set.Len()
	out := make([]int, 0, n)
	p.Begin("clean", 0, n)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		x := &inference.Tensor{Shape: []int64{int64(hi - lo), 1, mnist.Rows, mnist.Cols}, Data: set.Images[lo*mnist.Pixels : hi*mnist.Pixels]}
		res, err := e.fwd.Run(ctx, map[string]*inference.Tensor{arch.Input: x})
		if err != nil {
			return nil, err
		}
		out = append(out, argmax(res[logitOutput])...)
		p.Update(hi, "")
	}
	p.End()
	return out, nil
}

// Accuracy is the fraction of the set classified correctly.
func (e *Evaluator) Accuracy(ctx context.Context, set *mnist.Set, batch int, p *progress.Bar) (float64, error) {
	pred, err := e.Predict(ctx, set, batch, p)
	if err != nil {
		return 0, err
	}
	return fractionCorrect(pred, set.Labels), nil
}

func fractionCorrect(pred []int, labels []uint8) float64 {
	if len(labels) == 0 {
		return 0
	}
	ok := 0
	for i, l := range labels {
		if pred[i] == int(l) {
			ok++
		}
	}
	return float64(ok) / float64(len(labels))
}

// PGDAccuracy is the fraction of the set still classified correctly under the attack.
// A sample counts as broken when its clean image is misclassified or once any iterate
// (the random start included) is. Sample i's random start is drawn from (seed, i): the
// first k images get the same starts whatever follows them.
func (e *Evaluator) PGDAccuracy(ctx context.Context, set *mnist.Set, cfg PGDConfig, seed uint64, batch int, p *progress.Bar) (float64, error) {
	if err := cfg.validate(); err != nil {
		return 0, err
	}
	if batch < 1 {
		return 0, fmt.Errorf("batch size %d must be at least 1", batch)
	}
	if e.grad == nil {
		g, err := newGradGraph(e.rt, e.m, nil, true)
		if err != nil {
			return 0, err
		}
		e.grad = g
	}
	n := set.Len()
	robust := 0
	p.Begin(fmt.Sprintf("PGD-%d", cfg.Steps), 0, n)
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		x := &inference.Tensor{Shape: []int64{int64(hi - lo), 1, mnist.Rows, mnist.Cols}, Data: set.Images[lo*mnist.Pixels : hi*mnist.Pixels]}
		// Misclassified clean images count as broken without being attacked.
		res, err := e.fwd.Run(ctx, map[string]*inference.Tensor{arch.Input: x})
		if err != nil {
			return 0, err
		}
		var keep []int
		for i, pr := range argmax(res[logitOutput]) {
			if pr == int(set.Labels[lo+i]) {
				keep = append(keep, lo+i)
			}
		}
		sub := &mnist.Set{Images: make([]float32, 0, len(keep)*mnist.Pixels), Labels: make([]uint8, 0, len(keep))}
		rngs := make([]*rand.Rand, len(keep))
		for k, i := range keep {
			sub.Images = append(sub.Images, set.Image(i)...)
			sub.Labels = append(sub.Labels, set.Labels[i])
			rngs[k] = rngFor(seed, streamEval, uint64(i))
		}
		if len(keep) > 0 {
			xs := &inference.Tensor{Shape: []int64{int64(len(keep)), 1, mnist.Rows, mnist.Cols}, Data: sub.Images}
			_, fooled, err := perturb(ctx, e.grad.inputGradFunc(), xs, sub.Labels, cfg, rngs, true)
			if err != nil {
				return 0, err
			}
			for _, f := range fooled {
				if !f {
					robust++
				}
			}
		}
		p.Update(hi, fmt.Sprintf("robust %.2f%%", 100*float64(robust)/float64(hi)))
	}
	p.End()
	if n == 0 {
		return 0, nil
	}
	return float64(robust) / float64(n), nil
}

// Standard evaluation settings: PGD-40 with random start, step 0.01, eps 0.3 (Madry et
// al.'s MNIST protocol), on the full test set; the first CleanSubset (clean) and
// PGDSubset (attacked) test images are also scored on their own, as quick checks that
// tests can repeat.
const (
	CleanSubset = 500
	PGDSubset   = 100
	EvalBatch   = 500
)

// DefaultPGD is the attack `gibbon eval` reports.
var DefaultPGD = PGDConfig{Eps: 0.3, Step: 0.01, Steps: 40, RandomStart: true}

// CleanMetric names the clean accuracy on the first n test images (0 or 10000: all).
func CleanMetric(n int) string { return "clean_accuracy" + subsetSuffix(n) }

// PGDMetric names the accuracy under an attack on the first n test images.
func PGDMetric(c PGDConfig, n int) string {
	name := fmt.Sprintf("pgd%d_eps%g", c.Steps, c.Eps)
	if c.Step != DefaultPGD.Step {
		name += fmt.Sprintf("_step%g", c.Step)
	}
	if !c.RandomStart {
		name += "_nostart"
	}
	return name + "_accuracy" + subsetSuffix(n)
}

// AutoAttackMetric names the accuracy under AutoAttack (standard version) at budget
// eps on the first n test images.
func AutoAttackMetric(eps float64, n int) string {
	return fmt.Sprintf("autoattack_eps%g_accuracy", eps) + subsetSuffix(n)
}

// TestDigits is the size of the MNIST test set: a metric without a subset suffix
// was measured on all of it.
const TestDigits = 10000

func subsetSuffix(n int) string {
	if n <= 0 || n >= TestDigits {
		return ""
	}
	return fmt.Sprintf("_first%d", n)
}

// AccuracyMetric is an accuracy key of CleanMetric, PGDMetric (DefaultPGD's step
// size, random start) or AutoAttackMetric, read back.
type AccuracyMetric struct {
	Attack string  // "clean", "pgd" or "autoattack"
	Steps  int     // PGD's iterations
	Eps    float64 // 0 for clean
	N      int     // test digits scored: the first N (TestDigits: all)
}

var accuracyKey = regexp.MustCompile(`^(?:clean|pgd([0-9]+)_eps([0-9.]+(?:e[-+]?[0-9]+)?)|autoattack_eps([0-9.]+(?:e[-+]?[0-9]+)?))_accuracy(?:_first([0-9]+))?$`)

// ParseAccuracyMetric reads an accuracy key; false for any other metric (and for
// PGD variants with their own step size or no random start).
func ParseAccuracyMetric(key string) (AccuracyMetric, bool) {
	p := accuracyKey.FindStringSubmatch(key)
	if p == nil {
		return AccuracyMetric{}, false
	}
	m := AccuracyMetric{Attack: "clean", N: TestDigits}
	if p[4] != "" {
		n, err := strconv.Atoi(p[4])
		if err != nil || n < 1 || n >= TestDigits {
			return AccuracyMetric{}, false
		}
		m.N = n
	}
	eps := ""
	switch {
	case p[1] != "":
		steps, err := strconv.Atoi(p[1])
		if err != nil || steps < 1 {
			return AccuracyMetric{}, false
		}
		m.Attack, m.Steps, eps = "pgd", steps, p[2]
	case p[3] != "":
		m.Attack, eps = "autoattack", p[3]
	}
	if eps != "" {
		v, err := strconv.ParseFloat(eps, 64)
		if err != nil || v <= 0 {
			return AccuracyMetric{}, false
		}
		m.Eps = v
	}
	return m, true
}

// EvalOptions say how Evaluate scores a model.
type EvalOptions struct {
	N        int       // the first N test images (0: all)
	PGD      PGDConfig // the attack; Steps 0 scores clean accuracy only
	Seed     uint64    // of the random starts
	Progress *progress.Bar
}

// Evaluation is what Evaluate measured: metrics by their manifest names, for the
// model file with checksum SHA256.
type Evaluation struct {
	Name, SHA256 string
	Metrics      map[string]float64
}

// Evaluate scores dir's model name on the MNIST test set: clean accuracy, and
// accuracy under opts.PGD; with more images than the subsets (and seed 0 for the
// attack) also on the first CleanSubset and PGDSubset images, the numbers tests
// recompute. The file must match the manifest's checksum.
func Evaluate(ctx context.Context, rt *inference.Runtime, dir, name string, opts EvalOptions) (*Evaluation, error) {
	man, err := inference.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	entry, err := man.Entry(name)
	if err != nil {
		return nil, inference.Invalidf("%v (in %s)", err, dir)
	}
	model, err := inference.ReadModelFile(dir, entry)
	if err != nil {
		return nil, err
	}
	test, err := mnist.LoadTest(ctx)
	if err != nil {
		return nil, err
	}
	if opts.N > 0 {
		test = test.Subset(opts.N)
	}
	ev, err := NewEvaluator(rt, model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer ev.Close()
	res := &Evaluation{Name: name, SHA256: entry.SHA256, Metrics: map[string]float64{}}
	return res, ev.metrics(ctx, test, opts, res.Metrics)
}

// metrics fills m with the clean and attacked accuracies of Evaluate.
func (e *Evaluator) metrics(ctx context.Context, test *mnist.Set, opts EvalOptions, m map[string]float64) error {
	var err error
	if m[CleanMetric(test.Len())], err = e.Accuracy(ctx, test, EvalBatch, opts.Progress); err != nil {
		return err
	}
	if test.Len() > CleanSubset {
		if m[CleanMetric(CleanSubset)], err = e.Accuracy(ctx, test.Subset(CleanSubset), EvalBatch, nil); err != nil {
			return err
		}
	}
	if opts.PGD.Steps == 0 {
		return nil
	}
	if m[PGDMetric(opts.PGD, test.Len())], err = e.PGDAccuracy(ctx, test, opts.PGD, opts.Seed, EvalBatch, opts.Progress); err != nil {
		return err
	}
	if test.Len() > PGDSubset && opts.Seed == 0 {
		m[PGDMetric(opts.PGD, PGDSubset)], err = e.PGDAccuracy(ctx, test.Subset(PGDSubset), opts.PGD, opts.Seed, EvalBatch, nil)
	}
	return err
}
