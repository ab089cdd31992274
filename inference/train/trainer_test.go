package train

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/internal/progress"
	"gibbon/internal/testrt"
)

var (
	dataOnce          sync.Once
	trainSet, testSet *mnist.Set
	dataErr           error
)

func data(t testing.TB) (*mnist.Set, *mnist.Set) {
	t.Helper()
	dataOnce.Do(func() { trainSet, testSet, dataErr = mnist.Load(context.Background()) })
	if dataErr != nil {
		t.Fatal(dataErr)
	}
	return trainSet, testSet
}

// meanLoss is the model's mean loss on the first n training images.
func meanLoss(t *testing.T, tr *Trainer, set *mnist.Set, n int) float64 {
	t.Helper()
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	x, labels := fillBatch(set, idx, 0, nil)
	out, err := tr.grad.run(context.Background(), x, labels)
	if err != nil {
		t.Fatal(err)
	}
	var s float64
	for _, l := range out[lossOutput].Data {
		s += float64(l)
	}
	return s / float64(n)
}

func TestShortTrainingLearns(t *testing.T) {
	rt := testrt.Open(t)
	train, test := data(t)
	cfg := Config{Arch: "mlp", Seed: 11, Epochs: 2, BatchSize: 64, TrainSubset: 2048,
		Optimizer: OptimizerConfig{Kind: Adam, WeightDecay: 0.01},
		Schedule:  Schedule{Kind: Cosine, LR: 2e-3, Warmup: 0.05}, Shift: 1}
	tr, err := New(rt, cfg, train)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	before := meanLoss(t, tr, train, 512)
	var log bytes.Buffer
	if err := tr.Run(context.Background(), RunOptions{Progress: progress.New(&log)}); err != nil {
		t.Fatal(err)
	}
	after := meanLoss(t, tr, train, 512)
	if before < 1.5 || before > 4 {
		t.Errorf("initial loss %.3f, want about ln 10 = 2.3", before)
	}
	if after > before/4 {
		t.Errorf("loss %.3f -> %.3f after 64 steps: want it well below its start", before, after)
	}
	if len(tr.History) != 2 || tr.History[1].Loss >= tr.History[0].Loss {
		t.Errorf("epoch history %+v: want two epochs, loss falling", tr.History)
	}
	m, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	ev := evaluator(t, rt, m)
	acc, err := ev.Accuracy(context.Background(), test.Subset(1000), 250, nil)
	if err != nil {
		t.Fatal(err)
	}
	if acc < 0.8 {
		t.Errorf("test accuracy %.3f after 64 steps on 2048 images, want well above chance (> 0.8)", acc)
	}
	if !strings.Contains(log.String(), "epoch 2/2: train loss") || !strings.Contains(log.String(), "ETA") {
		t.Errorf("progress output lacks the epoch summary or ETA:\n%s", log.String())
	}
	t.Logf("loss %.3f -> %.3f, test accuracy (1000 images) %.3f", before, after, acc)
}

// Stopping at a checkpoint and resuming in a fresh trainer gives exactly the weights of
// an unbroken run: shuffling, augmentation and attacks are functions of (seed, step).
func TestResumeContinuesBitForBit(t *testing.T) {
	rt := testrt.Open(t)
	train, _ := data(t)
	configs := map[string]Config{
		"sgd-step-shift": {Arch: "cnn-small", Seed: 3, Epochs: 2, BatchSize: 32, TrainSubset: 320,
			Optimizer: OptimizerConfig{Kind: SGD, Momentum: 0.9, Nesterov: true, WeightDecay: 5e-4},
			Schedule:  Schedule{Kind: Step, LR: 0.02, Warmup: 0.1, Milestones: []float64{0.5}, Gamma: 0.1}, Shift: 2},
		"adam-adversarial": {Arch: "cnn-robust", Seed: 4, Epochs: 2, BatchSize: 32, TrainSubset: 320,
			Optimizer:   OptimizerConfig{Kind: Adam},
			Schedule:    Schedule{Kind: OneCycle, LR: 2e-3, Warmup: 0.4},
			Adversarial: &AdvConfig{PGDConfig: PGDConfig{Eps: 0.3, Step: 0.375, Steps: 1, RandomStart: true}, RampEpochs: 0.5}},
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			whole, err := New(rt, cfg, train)
			if err != nil {
				t.Fatal(err)
			}
			defer whole.Close()
			if err := whole.Run(context.Background(), RunOptions{}); err != nil {
				t.Fatal(err)
			}

			ckpt := filepath.Join(t.TempDir(), "run.ckpt")
			first, err := New(rt, cfg, train)
			if err != nil {
				t.Fatal(err)
			}
			if err := first.Run(context.Background(), RunOptions{StopAt: 13, Checkpoint: ckpt, CheckpointEvery: 5}); err != nil {
				t.Fatal(err)
			}
			first.Close()
			second, err := New(rt, cfg, train)
			if err != nil {
				t.Fatal(err)
			}
			defer second.Close()
			ok, err := second.Resume(ckpt)
			if err != nil || !ok {
				t.Fatalf("resume: %v %v", ok, err)
			}
			if second.Step() != 13 {
				t.Fatalf("resumed at step %d, want 13", second.Step())
			}
			if err := second.Run(context.Background(), RunOptions{Checkpoint: ckpt}); err != nil {
				t.Fatal(err)
			}
			if second.Step() != whole.Step() || second.Step() != 20 {
				t.Fatalf("steps %d vs %d", second.Step(), whole.Step())
			}
			for i, p := range whole.Params() {
				if !slices.Equal(p.Data, second.Params()[i].Data) {
					t.Fatalf("parameter %s differs after resuming", p.Name)
				}
				if !slices.Equal(whole.opt.m[i], second.opt.m[i]) {
					t.Fatalf("optimizer state of %s differs after resuming", p.Name)
				}
			}
			// And the run moved the weights at all.
			fresh, _ := New(rt, cfg, train)
			defer fresh.Close()
			if slices.Equal(fresh.Params()[0].Data, whole.Params()[0].Data) {
				t.Fatal("training did not change the weights")
			}
		})
	}
}

func TestResumeRefusesAnotherConfig(t *testing.T) {
	rt := testrt.Open(t)
	train, _ := data(t)
	cfg := Config{Arch: "mlp", Seed: 1, Epochs: 1, BatchSize: 32, TrainSubset: 64,
		Optimizer: OptimizerConfig{Kind: SGD, Momentum: 0.9}, Schedule: Schedule{Kind: Constant, LR: 0.01}}
	a, err := New(rt, cfg, train)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ckpt := filepath.Join(t.TempDir(), "a.ckpt")
	if err := a.Run(context.Background(), RunOptions{Checkpoint: ckpt}); err != nil {
		t.Fatal(err)
	}
	cfg.Seed = 2
	b, err := New(rt, cfg, train)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Resume(ckpt); !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), "different training config") {
		t.Fatalf("resume with another seed: %v", err)
	}
	if ok, err := b.Resume(filepath.Join(t.TempDir(), "none.ckpt")); ok || err != nil {
		t.Fatalf("missing checkpoint: %v %v, want a fresh start", ok, err)
	}
}

func TestBadConfigsAreRejected(t *testing.T) {
	rt := testrt.Open(t)
	train, _ := data(t)
	good := Config{Arch: "mlp", Epochs: 1, BatchSize: 32, Optimizer: OptimizerConfig{Kind: Adam}, Schedule: Schedule{Kind: Constant, LR: 1e-3}}
	for name, mutate := range map[string]func(*Config){
		"arch":      func(c *Config) { c.Arch = "vgg" },
		"epochs":    func(c *Config) { c.Epochs = 0 },
		"batch":     func(c *Config) { c.BatchSize = 0 },
		"optimizer": func(c *Config) { c.Optimizer.Kind = "lbfgs" },
		"lr":        func(c *Config) { c.Schedule.LR = 0 },
		"shift":     func(c *Config) { c.Shift = 30 },
		"eps":       func(c *Config) { c.Adversarial = &AdvConfig{PGDConfig: PGDConfig{Eps: 3, Step: 1, Steps: 1}} },
		"subset":    func(c *Config) { c.TrainSubset = 10 },
	} {
		c := good
		mutate(&c)
		if tr, err := New(rt, c, train); err == nil {
			tr.Close()
			t.Errorf("%s: accepted", name)
		}
	}
}

func evaluator(t *testing.T, rt *inference.Runtime, m *onnx.ModelProto) *Evaluator {
	t.Helper()
	model, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvaluator(rt, model)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ev.Close)
	return ev
}
