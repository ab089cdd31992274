// Package train trains Gibbon's built-in MNIST classifiers on ONNX Runtime: gradient
// graphs from inference/autodiff, mini-batches in a seeded order, SGD with momentum or
// Adam(W), a learning-rate schedule, optional FGSM/PGD adversarial training and
// atomic checkpoints that resume bit for bit; Build trains a recipe into a models
// folder and Evaluate scores a model on the MNIST test set.
package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"time"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
	"gibbon/internal/progress"
)

// Config is one training run. Two runs with equal configs (and the same machine and
// thread count) produce the same weights.
type Config struct {
	Arch      string          `json:"arch"`
	Seed      uint64          `json:"seed"`
	Epochs    int             `json:"epochs"`
	BatchSize int             `json:"batch_size"`
	Optimizer OptimizerConfig `json:"optimizer"`
	Schedule  Schedule        `json:"schedule"`
	// Shift translates each training image by up to this many pixels (augmentation).
	Shift int `json:"shift,omitempty"`
	// Adversarial trains on attacked images instead of clean ones.
	Adversarial *AdvConfig `json:"adversarial,omitempty"`
	// TrainSubset uses only the first n training images (0: all).
	TrainSubset int `json:"train_subset,omitempty"`
}

// AdvConfig is adversarial training: each batch is replaced by a PGD attack on the
// current weights (Steps 1 with a random start is FGSM-RS, Wong et al. 2020).
type AdvConfig struct {
	PGDConfig
	// RampEpochs grows eps (and the step with it) linearly from 0 over this many epochs.
	RampEpochs float64 `json:"ramp_epochs,omitempty"`
	// Trades > 0 trains on the TRADES-style objective with this β instead of on PGD
	// examples alone (see tradesBatch).
	Trades float64 `json:"trades,omitempty"`
}

func (c Config) validate() error {
	if _, err := arch.Get(c.Arch); err != nil {
		return err
	}
	if c.Epochs < 1 {
		return fmt.Errorf("epochs %d must be at least 1", c.Epochs)
	}
	if c.BatchSize < 1 {
		return fmt.Errorf("batch size %d must be at least 1", c.BatchSize)
	}
	if c.Shift < 0 || c.Shift > 8 {
		return fmt.Errorf("shift %d must be in [0,8] pixels", c.Shift)
	}
	if c.TrainSubset < 0 {
		return fmt.Errorf("train subset %d is negative", c.TrainSubset)
	}
	if err := c.Optimizer.validate(); err != nil {
		return err
	}
	if err := c.Schedule.validate(); err != nil {
		return err
	}
	if c.Adversarial != nil {
		if err := c.Adversarial.validate(); err != nil {
			return err
		}
		if c.Adversarial.RampEpochs < 0 {
			return fmt.Errorf("eps ramp %g is negative", c.Adversarial.RampEpochs)
		}
		if !(c.Adversarial.Trades >= 0 && c.Adversarial.Trades <= 100) {
			return fmt.Errorf("TRADES β %g must be in [0,100]", c.Adversarial.Trades)
		}
	}
	return nil
}

func (c Config) canonical() []byte {
	b, _ := json.Marshal(c)
	return b
}

// Trainer runs one Config.
type Trainer struct {
	cfg    Config
	model  *onnx.ModelProto // forward graph; initializers hold the starting weights
	params []*Param
	opt    *optimizer
	data   *mnist.Set

	perEpoch int
	step     int
	wall     float64

	grad   *gradGraph // parameter gradients
	attack *gradGraph // input gradients at the current weights (adversarial training)

	order      []int
	orderEpoch int

	// History holds each epoch finished in this process: mean training loss and accuracy.
	History []EpochStats
}

// EpochStats summarise one epoch (on adversarial examples when training adversarially;
// TRADES: its objective, and the accuracy on the clean images).
type EpochStats struct {
	Epoch    int
	Loss     float64
	Accuracy float64
	// RobustAccuracy is the PGD-10 check of adversarial training (-1 otherwise).
	RobustAccuracy float64
}

// New builds the architecture with seeded initial weights and its gradient graphs.
func New(rt *inference.Runtime, cfg Config, data *mnist.Set) (*Trainer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.TrainSubset > 0 {
		data = data.Subset(cfg.TrainSubset)
	}
	if data.Len() < cfg.BatchSize {
		return nil, fmt.Errorf("training set has %d images, fewer than one batch of %d", data.Len(), cfg.BatchSize)
	}
	a, _ := arch.Get(cfg.Arch)
	model, names := a.Build(cfg.Seed)
	params, err := ParamsOf(model, names)
	if err != nil {
		return nil, err
	}
	opt, err := newOptimizer(cfg.Optimizer, params)
	if err != nil {
		return nil, err
	}
	t := &Trainer{cfg: cfg, model: model, params: params, opt: opt, data: data,
		perEpoch: data.Len() / cfg.BatchSize, orderEpoch: -1}
	if t.grad, err = newGradGraph(rt, model, params, false); err != nil {
		return nil, err
	}
	if cfg.Adversarial != nil {
		if t.attack, err = newGradGraph(rt, model, params, true); err != nil {
			t.Close()
			return nil, err
		}
	}
	return t, nil
}

// Close releases the sessions.
func (t *Trainer) Close() {
	t.grad.close()
	t.attack.close()
	t.grad, t.attack = nil, nil
}

// Step is the number of updates done; TotalSteps the number the config asks for.
func (t *Trainer) Step() int       { return t.step }
func (t *Trainer) TotalSteps() int { return t.perEpoch * t.cfg.Epochs }

// StepsPerEpoch is the number of full batches in the training set.
func (t *Trainer) StepsPerEpoch() int { return t.perEpoch }

// WallSeconds is the time spent training, summed over resumed runs.
func (t *Trainer) WallSeconds() float64 { return t.wall }

// Params are the current weights (live: they change as training runs).
func (t *Trainer) Params() []*Param { return t.params }

// Model is the forward graph with the current weights baked in.
func (t *Trainer) Model() (*onnx.ModelProto, error) { return Bake(t.model, t.params) }

// Save writes a checkpoint atomically.
func (t *Trainer) Save(path string) error {
	c := &checkpoint{Config: t.cfg.canonical(), Step: t.step, WallSeconds: t.wall, OptT: t.opt.t, OptM: t.opt.m, OptV: t.opt.v}
	for _, p := range t.params {
		c.Params = append(c.Params, *p)
	}
	return saveCheckpoint(path, c)
}

// Resume loads a checkpoint written by a run of the same config. It reports false
// (and no error) when the file does not exist.
func (t *Trainer) Resume(path string) (bool, error) {
	c, err := loadCheckpoint(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if string(c.Config) != string(t.cfg.canonical()) {
		return false, fmt.Errorf("%w: %s was written by a different training config (%s); delete it or train with the same settings", ErrBadCheckpoint, path, c.Config)
	}
	if len(c.Params) != len(t.params) || len(c.OptM) != len(t.params) || (t.opt.v != nil) != (c.OptV != nil) {
		return false, fmt.Errorf("%w: %s does not match the architecture", ErrBadCheckpoint, path)
	}
	for i, p := range t.params {
		q := c.Params[i]
		if q.Name != p.Name || len(q.Data) != len(p.Data) || len(c.OptM[i]) != len(p.Data) || (c.OptV != nil && len(c.OptV[i]) != len(p.Data)) {
			return false, fmt.Errorf("%w: %s: parameter %q does not match the architecture", ErrBadCheckpoint, path, p.Name)
		}
	}
	if c.Step < 0 || c.Step > t.TotalSteps() {
		return false, fmt.Errorf("%w: %s is at step %d of %d", ErrBadCheckpoint, path, c.Step, t.TotalSteps())
	}
	for i, p := range t.params {
		copy(p.Data, c.Params[i].Data)
	}
	t.opt.t, t.opt.m, t.opt.v = c.OptT, c.OptM, c.OptV
	t.step, t.wall = c.Step, c.WallSeconds
	return true, nil
}

// RunOptions control one call of Run.
type RunOptions struct {
	// StopAt ends the call after this many total steps (0: the end of training).
	StopAt int
	// Checkpoint is written every CheckpointEvery steps (0: at each epoch's end), when
	// the context is cancelled, and at the end. Empty: no checkpoints.
	Checkpoint      string
	CheckpointEvery int
	Progress        *progress.Bar
}

// Run trains from the current step to opts.StopAt (or the end). A cancelled context
// saves a checkpoint and returns the context's error.
func (t *Trainer) Run(ctx context.Context, opts RunOptions) error {
	total := t.TotalSteps()
	stop := total
	if opts.StopAt > 0 && opts.StopAt < total {
		stop = opts.StopAt
	}
	save := func() error {
		if opts.Checkpoint == "" {
			return nil
		}
		return t.Save(opts.Checkpoint)
	}
	p := opts.Progress
	p.Begin(t.cfg.Arch, t.step, total)
	var lossSum, seen, correct float64
	for t.step < stop {
		if err := ctx.Err(); err != nil {
			p.End()
			if serr := save(); serr != nil {
				return errors.Join(err, serr)
			}
			return err
		}
		start := time.Now()
		loss, ok, err := t.trainStep(ctx)
		if err != nil {
			p.End()
			if ctx.Err() != nil {
				if serr := save(); serr != nil {
					return errors.Join(ctx.Err(), serr)
				}
				return ctx.Err()
			}
			return fmt.Errorf("step %d: %w", t.step, err)
		}
		t.wall += time.Since(start).Seconds()
		t.step++
		lossSum += loss
		correct += float64(ok)
		seen += float64(t.cfg.BatchSize)
		epoch := (t.step-1)/t.perEpoch + 1
		p.Update(t.step, fmt.Sprintf("epoch %d/%d  loss %.4f  acc %.2f%%  lr %.2g", epoch, t.cfg.Epochs,
			lossSum/seen, 100*correct/seen, t.cfg.Schedule.At(t.step-1, total)))
		endOfEpoch := t.step%t.perEpoch == 0
		if endOfEpoch {
			st := EpochStats{Epoch: epoch, Loss: lossSum / seen, Accuracy: correct / seen, RobustAccuracy: -1}
			note := ""
			if t.cfg.Adversarial != nil {
				// Catastrophic overfitting (FGSM training suddenly stops resisting PGD)
				// shows here first.
				if st.RobustAccuracy, err = t.robustCheck(ctx); err != nil {
					p.End()
					return err
				}
				on := "on adversarial examples"
				if t.cfg.Adversarial.Trades > 0 {
					on = "TRADES: loss CE + β·KL, accuracy on the clean images"
				}
				note = fmt.Sprintf(" (%s); PGD-10 check on %d training images %.2f%%", on, robustCheckImages, 100*st.RobustAccuracy)
			}
			t.History = append(t.History, st)
			p.Printf("epoch %d/%d: train loss %.4f, train accuracy %.2f%%%s", epoch, t.cfg.Epochs, st.Loss, 100*st.Accuracy, note)
			lossSum, seen, correct = 0, 0, 0
		}
		due := endOfEpoch
		if opts.CheckpointEvery > 0 {
			due = t.step%opts.CheckpointEvery == 0
		}
		if due && t.step < stop {
			if err := save(); err != nil {
				return err
			}
		}
	}
	p.End()
	return save()
}

// lrAt is the schedule's rate for a step.
func (t *Trainer) lrAt(step int) float64 { return t.cfg.Schedule.At(step, t.TotalSteps()) }

// trainStep does one update and returns the batch's summed loss and correct count.
func (t *Trainer) trainStep(ctx context.Context) (float64, int, error) {
	epoch, within := t.step/t.perEpoch, t.step%t.perEpoch
	if t.orderEpoch != epoch {
		t.order, t.orderEpoch = epochOrder(t.cfg.Seed, epoch, t.data.Len()), epoch
	}
	B := t.cfg.BatchSize
	idx := t.order[within*B : (within+1)*B]
	x, labels := fillBatch(t.data, idx, t.cfg.Shift, rngFor(t.cfg.Seed, streamShift, uint64(t.step)))
	weights := oneHot(labels)
	var lossOffset float64 // TRADES: the constant in its summed loss
	if a := t.cfg.Adversarial; a != nil {
		cfg := a.PGDConfig
		if a.RampEpochs > 0 {
			f := math.Min(1, float64(t.step+1)/(a.RampEpochs*float64(t.perEpoch)))
			cfg.Eps *= f
			cfg.Step *= f
		}
		rng := rngFor(t.cfg.Seed, streamAttack, uint64(t.step))
		if a.Trades > 0 {
			var err error
			if x, weights, lossOffset, err = t.tradesBatch(ctx, x, labels, cfg, a.Trades, rng); err != nil {
				return 0, 0, err
			}
		} else {
			rngs := make([]*rand.Rand, len(labels))
			for i := range rngs {
				rngs[i] = rng
			}
			adv, _, err := perturb(ctx, t.attack.inputGradFunc(), x, labels, cfg, rngs, false)
			if err != nil {
				return 0, 0, err
			}
			x = adv
		}
	}
	out, err := t.grad.runWeights(ctx, x, weights)
	if err != nil {
		return 0, 0, err
	}
	grads := make([][]float32, len(t.params))
	inv := 1 / float32(B)
	for i, p := range t.params {
		g := out[gradPrefix+p.Name]
		if g == nil || len(g.Data) != len(p.Data) {
			return 0, 0, fmt.Errorf("gradient graph gives no gradient of %q's size", p.Name)
		}
		for j := range g.Data {
			g.Data[j] *= inv
		}
		grads[i] = g.Data
	}
	loss := -lossOffset
	for _, l := range out[lossOutput].Data {
		loss += float64(l)
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return 0, 0, fmt.Errorf("loss is %v: lower the learning rate", loss)
	}
	ok := 0
	for i, p := range argmax(out[logitOutput])[:B] { // TRADES: the clean half
		if p == int(labels[i]) {
			ok++
		}
	}
	t.opt.step(t.params, grads, t.lrAt(t.step))
	return loss, ok, nil
}

const robustCheckImages = 500

// robustCheck is the accuracy under PGD-10 (step eps/4, random start) on the first
// training images, at the current weights.
func (t *Trainer) robustCheck(ctx context.Context) (float64, error) {
	set := t.data.Subset(robustCheckImages)
	cfg := PGDConfig{Eps: t.cfg.Adversarial.Eps, Step: t.cfg.Adversarial.Eps / 4, Steps: 10, RandomStart: true}
	x := &inference.Tensor{Shape: []int64{int64(set.Len()), 1, mnist.Rows, mnist.Cols}, Data: set.Images}
	rngs := make([]*rand.Rand, set.Len())
	for i := range rngs {
		rngs[i] = rngFor(t.cfg.Seed, streamEval, uint64(i))
	}
	_, fooled, err := perturb(ctx, t.attack.inputGradFunc(), x, set.Labels, cfg, rngs, true)
	if err != nil {
		return 0, err
	}
	ok := 0
	for _, f := range fooled {
		if !f {
			ok++
		}
	}
	return float64(ok) / float64(set.Len()), nil
}
