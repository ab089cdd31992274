package attacknet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
	"gibbon/inference/train"
	"gibbon/internal/progress"
)

// Config is one training run. Equal configs on the same images and targets give the
// same weights (on the same machine and thread count).
type Config struct {
	Spec Spec `json:"spec"`
	// Targets names the classifiers trained against, in order (for the record and to
	// match checkpoints; the networks themselves are passed to New).
	Targets []string `json:"targets"`
	// Kappa is the hinge's margin: an image counts as done once every other class's
	// log-sum-exp beats the label's logit by Kappa.
	Kappa float64 `json:"kappa"`
	// Calm weighs the mean squared tanh input of each head in the loss: a small
	// penalty that keeps heads from saturating early into a fixed pattern (where
	// tanh's gradient vanishes and training stalls).
	Calm      float64 `json:"calm"`
	Steps     int     `json:"steps"`
	BatchSize int     `json:"batch_size"`
	// LR is Adam's peak learning rate (cosine decay after a 3% warm-up).
	LR   float64 `json:"lr"`
	Seed uint64  `json:"seed"`
	// Diversity is the chance, per target and step, that the target sees the
	// adversarial batch zoomed by a factor in [1−DiversityZoom, 1+DiversityZoom] and
	// shifted by up to DiversityShift pixels each way (bilinear, zero outside) instead
	// of as is: input diversity, for perturbations that transfer to other classifiers.
	// 0: off.
	Diversity float64 `json:"diversity,omitempty"`
}

// Input diversity's range of random zooms and shifts (see Config.Diversity).
const (
	DiversityZoom  = 0.1
	DiversityShift = 2.0
)

// Defaults are the settings `gibbon train-attack` starts from.
var Defaults = Config{Kappa: 2, Calm: 0.01, Steps: 2000, BatchSize: 64, LR: 3e-3, Seed: 1}

func (c Config) validate() error {
	if _, err := c.Spec.Normalized(); err != nil {
		return err
	}
	switch {
	case len(c.Targets) == 0:
		return errors.New("no target classifiers")
	case !(c.Kappa >= 0) || c.Kappa > 100:
		return fmt.Errorf("kappa %g must be in [0,100]", c.Kappa)
	case !(c.Calm >= 0) || c.Calm > 100:
		return fmt.Errorf("saturation penalty %g must be in [0,100]", c.Calm)
	case c.Steps < 1 || c.Steps > 10_000_000:
		return fmt.Errorf("steps %d must be between 1 and 10000000", c.Steps)
	case c.BatchSize < 1 || c.BatchSize > 4096:
		return fmt.Errorf("batch size %d must be between 1 and 4096", c.BatchSize)
	case !(c.LR > 0) || c.LR > 1:
		return fmt.Errorf("learning rate %g must be in (0,1]", c.LR)
	case !(c.Diversity >= 0) || c.Diversity > 1:
		return fmt.Errorf("input diversity %g must be a probability in [0,1]", c.Diversity)
	}
	return nil
}

func (c Config) schedule() train.Schedule {
	return train.Schedule{Kind: train.Cosine, LR: c.LR, Warmup: 0.03, Final: 0.05}
}

func (c Config) canonical() []byte {
	b, _ := json.Marshal(c)
	return b
}

// Images is a training set: N images of one shape, in the targets' layout and range.
type Images struct {
	Data  []float32
	Shape []int64 // one image, e.g. [1 28 28]
}

// Len is the number of images.
func (d *Images) Len() int {
	per := 1
	for _, s := range d.Shape {
		per *= int(s)
	}
	if per == 0 {
		return 0
	}
	return len(d.Data) / per
}

func (d *Images) per() int { return len(d.Data) / max(d.Len(), 1) }

// Trainer trains one generator against frozen targets.
type Trainer struct {
	cfg    Config
	spec   Spec
	gen    *onnx.ModelProto // initializers hold the starting weights
	params []*train.Param
	opt    *train.Optimizer
	sess   *inference.Session
	data   *Images
	nt     int // targets

	perEpoch   int
	order      []int
	orderEpoch int
	step       int
	wall       float64

	// Recent is a moving average of the last batches: per head, the hinge loss and the
	// fraction of (image, target) pairs whose prediction changed.
	Recent struct {
		Loss, Fooled []float64
	}
}

// New builds the generator from cfg.Spec and cfg.Seed and the training graph against
// targets (whose order must match cfg.Targets).
func New(rt *inference.Runtime, cfg Config, targets []Target, data *Images) (*Trainer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(targets) != len(cfg.Targets) {
		return nil, fmt.Errorf("%d target networks for %d target names", len(targets), len(cfg.Targets))
	}
	for i, t := range targets {
		if t.Name != cfg.Targets[i] {
			return nil, fmt.Errorf("target %d is %s, the config says %s", i, t.Name, cfg.Targets[i])
		}
	}
	spec, _ := cfg.Spec.Normalized()
	if data == nil || data.Len() == 0 {
		return nil, errors.New("no training images")
	}
	want := []int64{int64(spec.Channels), int64(spec.Height), int64(spec.Width)}
	if spec.Layout == "NHWC" {
		want = []int64{int64(spec.Height), int64(spec.Width), int64(spec.Channels)}
	}
	if fmt.Sprint(data.Shape) != fmt.Sprint(want) || len(data.Data)%max(data.per(), 1) != 0 {
		return nil, fmt.Errorf("training images have shape %v, the generator takes %v", data.Shape, want)
	}
	if data.Len() < cfg.BatchSize {
		return nil, fmt.Errorf("%d training images, fewer than one batch of %d", data.Len(), cfg.BatchSize)
	}
	lo, hi := float32(spec.Range[0]), float32(spec.Range[1])
	for _, v := range data.Data {
		if !(v >= lo && v <= hi) {
			return nil, fmt.Errorf("training image value %g is outside the pixel range [%g,%g]", v, lo, hi)
		}
	}
	gen, names, err := BuildGenerator(spec, cfg.Seed)
	if err != nil {
		return nil, err
	}
	params, err := train.ParamsOf(gen, names)
	if err != nil {
		return nil, err
	}
	opt, err := train.NewOptimizer(train.OptimizerConfig{Kind: train.Adam}, params)
	if err != nil {
		return nil, err
	}
	comp, err := composeTraining(gen, spec, targets, cfg.Kappa, cfg.Diversity > 0)
	if err != nil {
		return nil, err
	}
	sess, err := trainingSession(rt, comp, names, len(targets), cfg.Diversity > 0)
	if err != nil {
		return nil, err
	}
	t := &Trainer{cfg: cfg, spec: spec, gen: gen, params: params, opt: opt, sess: sess, data: data, nt: len(targets),
		perEpoch: data.Len() / cfg.BatchSize, orderEpoch: -1}
	t.Recent.Loss = make([]float64, len(spec.Eps))
	t.Recent.Fooled = make([]float64, len(spec.Eps))
	return t, nil
}

// Close releases the session.
func (t *Trainer) Close() {
	if t.sess != nil {
		t.sess.Close()
		t.sess = nil
	}
}

// Step is the number of updates done; TotalSteps the number the config asks for.
func (t *Trainer) Step() int       { return t.step }
func (t *Trainer) TotalSteps() int { return t.cfg.Steps }

// Epochs is how many passes over the training images the config makes.
func (t *Trainer) Epochs() float64 {
	return float64(t.cfg.Steps*t.cfg.BatchSize) / float64(t.data.Len())
}

// WallSeconds is the time spent training, summed over resumed runs.
func (t *Trainer) WallSeconds() float64 { return t.wall }

// Spec is the generator's spec with defaults filled in.
func (t *Trainer) Spec() Spec { return t.spec }

// Model is the generator with the current weights, in the form for inference
// (BuildInferenceGenerator's).
func (t *Trainer) Model() (*onnx.ModelProto, error) {
	m, _, err := BuildInferenceGenerator(t.spec, t.cfg.Seed)
	if err != nil {
		return nil, err
	}
	return train.Bake(m, inferenceParams(t.params))
}

// RunOptions control one call of Run.
type RunOptions struct {
	// StopAt ends the call after this many total steps (0: the end of training).
	StopAt int
	// Checkpoint is written every CheckpointEvery steps (0: every 200), when the
	// context ends, and at the end. Empty: no checkpoints.
	Checkpoint      string
	CheckpointEvery int
	Progress        *progress.Bar
}

// Run trains from the current step to opts.StopAt (or the end). A cancelled context
// saves a checkpoint and returns the context's error.
func (t *Trainer) Run(ctx context.Context, opts RunOptions) error {
	stop := t.cfg.Steps
	if opts.StopAt > 0 && opts.StopAt < stop {
		stop = opts.StopAt
	}
	every := opts.CheckpointEvery
	if every <= 0 {
		every = 200
	}
	save := func() error {
		if opts.Checkpoint == "" {
			return nil
		}
		return t.Save(opts.Checkpoint)
	}
	p := opts.Progress
	p.Begin("attack-network", t.step, t.cfg.Steps)
	for t.step < stop {
		start := time.Now()
		err := t.trainStep(ctx)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			p.End()
			if ctx.Err() != nil {
				return errors.Join(ctx.Err(), save())
			}
			return fmt.Errorf("step %d: %w", t.step, err)
		}
		t.wall += time.Since(start).Seconds()
		t.step++
		p.Update(t.step, t.progressLine())
		if t.step%every == 0 && t.step < stop {
			if err := save(); err != nil {
				p.End()
				return err
			}
		}
	}
	p.End()
	return save()
}

func (t *Trainer) progressLine() string {
	var b strings.Builder
	var loss float64
	for _, l := range t.Recent.Loss {
		loss += l
	}
	fmt.Fprintf(&b, "loss %.3f  fooled", loss/float64(len(t.Recent.Loss)))
	for k, e := range t.spec.Eps {
		fmt.Fprintf(&b, " %s %.0f%%", HeadName(e), 100*t.Recent.Fooled[k])
	}
	fmt.Fprintf(&b, "  lr %.2g", t.cfg.schedule().At(max(t.step-1, 0), t.cfg.Steps))
	return b.String()
}

// trainStep does one update on the next batch.
func (t *Trainer) trainStep(ctx context.Context) error {
	epoch, within := t.step/t.perEpoch, t.step%t.perEpoch
	if t.orderEpoch != epoch {
		rng := rand.New(rand.NewPCG(t.cfg.Seed^0x7a11ed, uint64(epoch)))
		t.order, t.orderEpoch = rng.Perm(t.data.Len()), epoch
	}
	B, per := t.cfg.BatchSize, t.data.per()
	x := inference.NewTensor(append([]int64{int64(B)}, t.data.Shape...)...)
	for j, i := range t.order[within*B : (within+1)*B] {
		copy(x.Data[j*per:(j+1)*per], t.data.Data[i*per:(i+1)*per])
	}
	K := len(t.spec.Eps)
	cols := 2*t.nt*K + K
	seed := inference.NewTensor(int64(B), int64(cols))
	// Mean over images, sum over heads and targets; then the saturation penalty.
	for i := range B {
		for c := range t.nt * K {
			seed.Data[i*cols+c] = 1 / float32(B)
		}
		for k := range K {
			seed.Data[i*cols+2*t.nt*K+k] = float32(t.cfg.Calm) / float32(B)
		}
	}
	feed := map[string]*inference.Tensor{Input: x, autodiff.InputLogitSeed: seed}
	for _, p := range t.params {
		feed[p.Name] = &inference.Tensor{Shape: p.Shape, Data: p.Data}
	}
	if t.cfg.Diversity > 0 {
		t.feedDiversity(feed)
	}
	out, err := t.sess.Run(ctx, feed)
	if err != nil {
		return err
	}
	obj := out[autodiff.OutputLogits]
	if obj == nil || len(obj.Data) != B*cols {
		return fmt.Errorf("training graph returned no objective of shape [%d %d]", B, cols)
	}
	if !inference.AllFinite(obj.Data) {
		return errors.New("the loss is not finite: lower the learning rate")
	}
	grads := make([][]float32, len(t.params))
	for i, p := range t.params {
		g := out[autodiff.GradPrefix+p.Name]
		if g == nil || len(g.Data) != len(p.Data) {
			return fmt.Errorf("training graph gives no gradient of %q's size", p.Name)
		}
		if !inference.AllFinite(g.Data) {
			return fmt.Errorf("the gradient of %s is not finite: lower the learning rate", p.Name)
		}
		grads[i] = g.Data
	}
	t.opt.Step(t.params, grads, t.cfg.schedule().At(t.step, t.cfg.Steps))
	// Per head: mean hinge and fooled fraction over images and targets.
	const keep = 0.95
	for k := range K {
		var l, f float64
		for i := range B {
			for m := range t.nt {
				l += float64(obj.Data[i*cols+m*K+k])
				f += float64(obj.Data[i*cols+t.nt*K+m*K+k])
			}
		}
		l /= float64(B * t.nt)
		f /= float64(B * t.nt)
		if t.step == 0 {
			t.Recent.Loss[k], t.Recent.Fooled[k] = l, f
		} else {
			t.Recent.Loss[k] = keep*t.Recent.Loss[k] + (1-keep)*l
			t.Recent.Fooled[k] = keep*t.Recent.Fooled[k] + (1-keep)*f
		}
	}
	return nil
}

// feedDiversity draws this step's resampling for each target: with probability
// cfg.Diversity a random zoom and shift, else the identity. The draws depend only on
// the seed and the step, so resumed runs see the same ones.
func (t *Trainer) feedDiversity(feed map[string]*inference.Tensor) {
	rng := rand.New(rand.NewPCG(t.cfg.Seed^0xd1e55, uint64(t.step)))
	H, W := t.spec.Height, t.spec.Width
	for i := range t.nt {
		rows, cols := identity(H), identity(W)
		if rng.Float64() < t.cfg.Diversity {
			zoom := 1 + DiversityZoom*(2*rng.Float64()-1)
			rows = resampleMatrix(H, zoom, DiversityShift*(2*rng.Float64()-1), false)
			cols = resampleMatrix(W, zoom, DiversityShift*(2*rng.Float64()-1), true)
		}
		feed[DiversityRows(i)] = &inference.Tensor{Shape: []int64{int64(H), int64(H)}, Data: rows}
		feed[DiversityCols(i)] = &inference.Tensor{Shape: []int64{int64(W), int64(W)}, Data: cols}
	}
}

// Checkpoints.

const checkpointMagic = "gibbon-attacknet-checkpoint-v1\n"

type checkpoint struct {
	Config      []byte
	Step        int
	WallSeconds float64
	Params      []train.Param
	OptT        int64
	OptM, OptV  [][]float32
	Loss        []float64
	Fooled      []float64
}

// Save writes a checkpoint atomically.
func (t *Trainer) Save(path string) error {
	ot, om, ov := t.opt.State()
	c := &checkpoint{Config: t.cfg.canonical(), Step: t.step, WallSeconds: t.wall, OptT: ot, OptM: om, OptV: ov,
		Loss: t.Recent.Loss, Fooled: t.Recent.Fooled}
	for _, p := range t.params {
		c.Params = append(c.Params, *p)
	}
	return saveCheckpoint(path, c)
}

// ErrBadCheckpoint marks a checkpoint that cannot be used (the same error as train's).
var ErrBadCheckpoint = train.ErrBadCheckpoint

// Resume loads a checkpoint written by a run of the same config. It reports false (and
// no error) when the file does not exist.
func (t *Trainer) Resume(path string) (bool, error) {
	c, err := loadCheckpoint(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if string(c.Config) != string(t.cfg.canonical()) {
		return false, fmt.Errorf("%w: %s was written by a different training config (%s); delete it, pass --fresh, or train with the same settings", ErrBadCheckpoint, path, c.Config)
	}
	if len(c.Params) != len(t.params) || c.Step < 0 || c.Step > t.cfg.Steps {
		return false, fmt.Errorf("%w: %s does not match the generator", ErrBadCheckpoint, path)
	}
	for i, p := range t.params {
		if q := c.Params[i]; q.Name != p.Name || len(q.Data) != len(p.Data) {
			return false, fmt.Errorf("%w: %s: parameter %q does not match the generator", ErrBadCheckpoint, path, p.Name)
		}
	}
	if err := t.opt.SetState(c.OptT, c.OptM, c.OptV); err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrBadCheckpoint, path, err)
	}
	for i, p := range t.params {
		copy(p.Data, c.Params[i].Data)
	}
	t.step, t.wall = c.Step, c.WallSeconds
	if len(c.Loss) == len(t.Recent.Loss) && len(c.Fooled) == len(t.Recent.Fooled) {
		t.Recent.Loss, t.Recent.Fooled = c.Loss, c.Fooled
	}
	return true, nil
}

// fooledMean is the mean over heads of the recent fooled fraction.
func (t *Trainer) fooledMean() float64 {
	var s float64
	for _, f := range t.Recent.Fooled {
		s += f
	}
	return s / math.Max(1, float64(len(t.Recent.Fooled)))
}

// trainingSession loads the gradient graph of the composed training graph comp: the
// gradients of the generator's parameters (names) under a logit seed, no input
// gradient. With diversity the resampling matrices of each of the nTargets targets
// are fed like parameters every step (their gradients are computed and ignored: two
// small matrix products).
func trainingSession(rt *inference.Runtime, comp *onnx.ModelProto, names []string, nTargets int, diverse bool) (*inference.Session, error) {
	fed := slices.Clone(names)
	if diverse {
		for i := range nTargets {
			fed = append(fed, DiversityRows(i), DiversityCols(i))
		}
	}
	gg, err := autodiff.Build(rt, comp, autodiff.Options{Input: Input, Loss: autodiff.LogitSeed, Params: fed, NoInputGrad: true})
	if err != nil {
		return nil, fmt.Errorf("training graph: %w", err)
	}
	enc, err := onnx.Encode(gg)
	if err != nil {
		return nil, err
	}
	sess, err := rt.NewSession(enc)
	if err != nil {
		return nil, fmt.Errorf("training graph: %w", err)
	}
	return sess, nil
}
