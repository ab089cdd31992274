package attack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"gibbon/inference"
	"gibbon/inference/autodiff"
)

// autoAttackStages are the standard version's attacks, in the order it runs them.
var autoAttackStages = []Method{APGDCE, APGDT, FABT, Square}

// autoAttack runs AutoAttack's standard version (Croce & Hein, ICML 2020) the way its
// reference implementation does: APGD-CE, APGD-T (targeted DLR, TargetClasses
// targets), FAB-T (TargetClasses targets) and Square (Queries, p = SquareP on the
// unrescaled schedule), each with Steps iterations and Restarts runs, each only on
// the images still classified correctly; an image fooled by a stage keeps that
// stage's adversarial example, the others their clean image. The robust accuracy is
// the share that survives all four; each stage's share and time go to a.stages. A
// surrogate without gradients leaves the black-box Square stage only, and a.note says so.
func (a *attacker) autoAttack(ctx context.Context) error {
	out, err := a.startOutcome(ctx)
	if err != nil {
		return err
	}
	v := a.newView()
	withoutGrad, why, err := a.withoutGradients()
	if err != nil {
		return err
	}
	if withoutGrad == "" {
		if _, err := a.targetCount(); err != nil {
			return err
		}
	}
	for _, method := range autoAttackStages {
		st := Stage{Name: string(method)}
		if method != Square && withoutGrad != "" {
			st.Skipped = fmt.Sprintf("model %s %s", withoutGrad, why)
		} else if err := a.runStage(ctx, method, out, v, &st); err != nil {
			return err
		}
		robust := len(out.notFooled())
		st.RobustAccuracy = float64(robust) / float64(a.n)
		a.stages = append(a.stages, st)
	}
	if withoutGrad != "" {
		a.note = fmt.Sprintf("AutoAttack ran its black-box part only (Square, %d queries): model %s %s, so APGD-CE, APGD-T and FAB-T were skipped; gradient attacks may fool more images than this robust accuracy admits", a.cfg.Queries, withoutGrad, why)
	}
	a.offGrid = countOffGrid(a.ball, a.adv.Data)
	return a.report(Step{Step: a.cfg.Steps, Steps: a.cfg.Steps, Restarts: 1, Final: true, Adv: a.adv,
		Loss: a.meanObjective(a.advLogits), Pred: preds(meanLogits(a.advLogits)), Logits: a.advLogits, Queries: append([]int(nil), a.queries...)})
}

// withoutGradients names the first surrogate AutoAttack cannot take gradients of,
// and why: one that gives predictions only, or an ONNX graph with ops Gibbon
// cannot differentiate. Other failures to build a gradient graph are errors.
func (a *attacker) withoutGradients() (name, why string, err error) {
	for _, m := range a.req.Surrogates {
		d, ok := m.Net.(Differentiable)
		if !ok {
			return m.Name, "gives predictions only", nil
		}
		c, ok := d.(interface{ CheckGradient() error })
		if !ok {
			continue
		}
		if err := c.CheckGradient(); errors.Is(err, autodiff.ErrUnsupported) {
			return m.Name, "is a graph Gibbon cannot differentiate (" + err.Error() + ")", nil
		} else if err != nil {
			return "", "", fmt.Errorf("model %s: %w", m.Name, err)
		}
	}
	return "", "", nil
}

// stageConfig is the configuration AutoAttack gives one of its attacks.
func (a *attacker) stageConfig(method Method) Config {
	c := Config{Method: method, Eps: a.cfg.Eps, Range: a.cfg.Range, Layout: a.cfg.Layout, NoQuantize: a.cfg.NoQuantize, Seed: a.cfg.Seed}
	switch method {
	case Square:
		c.Queries, c.SquareP = a.cfg.Queries, a.cfg.SquareP
	default:
		c.Steps, c.Restarts = a.cfg.Steps, a.cfg.Restarts
		if method != APGDCE {
			c.TargetClasses = a.cfg.TargetClasses
		}
	}
	return c
}

// runStage attacks the images still robust with one method and keeps what it fools.
func (a *attacker) runStage(ctx context.Context, method Method, out *outcome, v *view, st *Stage) error {
	rows := out.notFooled()
	st.Attacked = len(rows)
	if len(rows) == 0 {
		return nil
	}
	start := time.Now()
	labels := make([]int, len(rows))
	for j, i := range rows {
		labels[j] = a.obj.cls[i]
	}
	req := Request{Images: gatherRows(a.req.Images, rows), Labels: labels, Surrogates: a.req.Surrogates}
	var onStep StepFunc
	if v != nil {
		onStep = func(s Step) error { return a.reportStage(v, string(method), rows, s) }
	}
	sub, err := newAttacker(a.stageConfig(method), req, onStep)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	sub.stopWhenFooled, sub.squareRawSchedule = true, true
	if err := sub.prepare(ctx); err != nil {
		return err
	}
	if sub.cleanLogits == nil {
		sub.cleanLogits = make([]*inference.Tensor, len(a.cleanLogits))
		for k, l := range a.cleanLogits {
			sub.cleanLogits[k] = gatherRows(l, rows)
		}
	}
	err = sub.attack(ctx)
	a.fwd, a.bwd = a.fwd+sub.fwd, a.bwd+sub.bwd
	if err != nil {
		return err
	}
	mean := meanLogits(sub.advLogits)
	for j, i := range rows {
		if sub.queries != nil {
			a.queries[i] += sub.queries[j]
		}
		if a.obj.success(argmax(row(mean, j)), i) {
			out.fooled[i] = true
			st.Fooled++
			copy(a.adv.Data[i*a.per:(i+1)*a.per], sub.adv.Data[j*a.per:(j+1)*a.per])
			for k := range sub.advLogits {
				copy(row(a.advLogits[k], i), row(sub.advLogits[k], j))
			}
		}
		v.show(a, i)
	}
	st.Forward, st.Backward, st.Wall = sub.fwd, sub.bwd, time.Since(start)
	return nil
}

// reportStage reports a stage's step on the whole batch: the stage's images (rows)
// as the stage shows them, the others as they stand.
func (a *attacker) reportStage(v *view, stage string, rows []int, s Step) error {
	per := a.per
	for j, i := range rows {
		copy(v.adv.Data[i*per:(i+1)*per], s.Adv.Data[j*per:(j+1)*per])
		v.loss[i] = s.Loss[j]
		for k := range s.Logits {
			copy(row(v.logits[k], i), row(s.Logits[k], j))
		}
	}
	var queries []int
	if s.Queries != nil {
		queries = append([]int(nil), a.queries...)
		for j, i := range rows {
			queries[i] += s.Queries[j]
		}
	}
	return a.report(Step{Stage: stage, Restart: s.Restart, Restarts: s.Restarts, Step: s.Step, Steps: s.Steps, Adv: v.adv,
		Loss: slices.Clone(v.loss), Pred: preds(meanLogits(v.logits)), Logits: v.logits, Queries: queries})
}

// AddStages adds the stages of a batch of n images to sum, the stages of the total
// images before it (nil for none): counts, passes and times add up, and each robust
// accuracy becomes the share of all total+n images.
func AddStages(sum []Stage, total int, batch []Stage, n int) []Stage {
	if sum == nil {
		sum = make([]Stage, len(batch))
		for k, s := range batch {
			sum[k] = Stage{Name: s.Name, Skipped: s.Skipped}
		}
	}
	for k, s := range batch {
		t := &sum[k]
		t.Attacked += s.Attacked
		t.Fooled += s.Fooled
		t.Forward += s.Forward
		t.Backward += s.Backward
		t.Wall += s.Wall
		t.RobustAccuracy = (t.RobustAccuracy*float64(total) + s.RobustAccuracy*float64(n)) / float64(total+n)
	}
	return sum
}

// Evaluation is AutoAttack's verdict on a data set attacked in batches.
type Evaluation struct {
	Config Config `json:"config"` // with defaults filled in
	Model  string `json:"model"`
	N      int    `json:"n"`
	Batch  int    `json:"batch"`
	// Workers is how many batches ran at once (the verdict does not depend on it).
	Workers int `json:"workers"`
	// Clean is the share classified correctly; Robust the share that survived every
	// stage, each stage's share in Stages.
	Clean    float64       `json:"clean_accuracy"`
	Robust   float64       `json:"robust_accuracy"`
	Stages   []Stage       `json:"stages"`
	Forward  int64         `json:"forward_passes"`
	Backward int64         `json:"backward_passes"`
	Wall     time.Duration `json:"wall_ns"` // from start to verdict (the stages' Wall add up each batch's own)
	Note     string        `json:"note,omitempty"`
}

// Evaluate runs AutoAttack with cfg on model m over images [N,...] and their labels,
// batch images at a time, batch b with seed cfg.Seed + b (as `gibbon attack --dataset`
// seeds its batches), up to workers batches at once (each batch is its own Run, so the
// verdict is the same for any number of workers; m must be safe for concurrent use, as
// ONNXModel is). progress, when non-nil, hears after each batch how many images are
// done and how many of them survived.
func Evaluate(ctx context.Context, cfg Config, m Model, images *inference.Tensor, labels []int, batch, workers int, progress func(done, robust int)) (*Evaluation, error) {
	if cfg.Method != AutoAttack {
		return nil, fmt.Errorf("evaluate runs autoattack, not %s", cfg.Method)
	}
	if images == nil || len(images.Shape) < 2 || int(images.Shape[0]) != len(labels) || len(labels) == 0 {
		return nil, fmt.Errorf("evaluate needs a batch of images with one label each")
	}
	if batch < 1 {
		return nil, fmt.Errorf("batch size %d must be at least 1", batch)
	}
	if workers < 1 || workers > MaxEvalWorkers {
		return nil, fmt.Errorf("%d workers: choose 1 to %d", workers, MaxEvalWorkers)
	}
	start := time.Now()
	n := len(labels)
	batches := (n + batch - 1) / batch
	results := make([]*Result, batches)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu                sync.Mutex
		next, done, alive int
		firstErr          error
		wg                sync.WaitGroup
	)
	for range min(workers, batches) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				b := next
				next++
				mu.Unlock()
				if b >= batches || ctx.Err() != nil {
					return
				}
				lo, hi := b*batch, min((b+1)*batch, n)
				rows := make([]int, hi-lo)
				for j := range rows {
					rows[j] = lo + j
				}
				c := cfg
				c.Seed = cfg.Seed + int64(b)
				res, err := Run(ctx, c, Request{Images: gatherRows(images, rows), Labels: labels[lo:hi], Surrogates: []Model{m}}, nil)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
					return
				}
				results[b] = res
				done += len(rows)
				for i, p := range res.Models[0].Adv {
					if p == res.Labels[i] {
						alive++
					}
				}
				if progress != nil {
					progress(done, alive)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ev := &Evaluation{Config: cfg.Defaults(), Model: m.Name, N: n, Batch: batch, Workers: workers}
	var clean int // the robust ones are alive, counted as batches finished
	for b, res := range results {
		for i, p := range res.Models[0].Clean {
			if p == res.Labels[i] {
				clean++
			}
		}
		ev.Stages = AddStages(ev.Stages, b*batch, res.Stages, len(res.Labels))
		ev.Forward, ev.Backward = ev.Forward+res.Forward, ev.Backward+res.Backward
		ev.Config.TargetClasses, ev.Note = res.Config.TargetClasses, res.Note
	}
	ev.Clean, ev.Robust = float64(clean)/float64(n), float64(alive)/float64(n)
	ev.Wall = time.Since(start)
	return ev, nil
}

// MaxEvalWorkers bounds Evaluate's concurrent batches: each holds a batch's
// activations and its attack state, and more workers than cores only queue.
const MaxEvalWorkers = 64
