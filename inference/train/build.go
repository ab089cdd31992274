package train

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/internal/progress"
)

// BuildOptions say where a built-in model goes and how its training runs.
type BuildOptions struct {
	Dir        string // receives NAME.onnx and its manifest entry
	Threads    int    // ONNX Runtime intra-op threads, recorded in the provenance
	Checkpoint string // "": CheckpointPath("train", name, the config)
	Fresh      bool   // start over even when a checkpoint exists
	Command    string // the command line, recorded in the provenance
	Log        io.Writer
	Progress   *progress.Bar
}

// Built is a trained, saved and registered model.
type Built struct {
	Path, SHA256 string
	Epochs       int
	Wall         time.Duration
	TestAccuracy float64
}

// Build trains recipe r with its Config as given, writes Dir/NAME.onnx, puts its entry
// in Dir's manifest and measures its accuracy on the MNIST test set. Training resumes
// from the checkpoint when there is one; a cancelled context keeps it and says so.
func Build(ctx context.Context, rt *inference.Runtime, r Recipe, opts BuildOptions) (*Built, error) {
	cfg := r.Config
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	ckpt := opts.Checkpoint
	if ckpt == "" {
		key, _ := json.Marshal(cfg)
		var err error
		if ckpt, err = CheckpointPath("train", r.Name, key); err != nil {
			return nil, err
		}
	}
	trainSet, testSet, err := mnist.Load(ctx)
	if err != nil {
		return nil, err
	}
	tr, err := New(rt, cfg, trainSet)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	if err := StartOrResume(tr, ckpt, opts.Fresh, r.Name, opts.Log); err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Log, "training %s (%s): %d epochs of %d steps, batch %d, %d threads; checkpoint %s\n",
		r.Name, cfg.Arch, cfg.Epochs, tr.StepsPerEpoch(), cfg.BatchSize, opts.Threads, ckpt)
	if err := tr.Run(ctx, RunOptions{Checkpoint: ckpt, Progress: opts.Progress}); err != nil {
		return nil, Interrupted(ctx, err, tr.Step(), tr.TotalSteps(), ckpt)
	}
	model, err := tr.Model()
	if err != nil {
		return nil, err
	}
	b := &Built{Path: filepath.Join(opts.Dir, r.Name+".onnx"), Epochs: cfg.Epochs,
		Wall: time.Duration(tr.WallSeconds() * float64(time.Second))}
	if b.SHA256, err = SaveModel(model, b.Path); err != nil {
		return nil, err
	}
	prov := &inference.Provenance{Command: opts.Command, Seed: int64(cfg.Seed), Data: mnist.Source(), Epochs: float64(cfg.Epochs),
		WallSeconds: math.Round(tr.WallSeconds()*1000) / 1000, Date: time.Now().UTC().Format(time.RFC3339),
		Notes: trainingNotes(cfg, opts.Threads, rt.Version())}
	if cfg.TrainSubset > 0 {
		prov.Data += fmt.Sprintf(" (first %d training images only)", cfg.TrainSubset)
	}
	if err := inference.UpdateManifest(opts.Dir, func(m *inference.Manifest) error {
		m.Put(r.Entry(filepath.Base(b.Path), b.SHA256, prov))
		return nil
	}); err != nil {
		return nil, err
	}
	if b.TestAccuracy, err = testAccuracy(ctx, rt, model, testSet); err != nil {
		return nil, err
	}
	_ = os.Remove(ckpt) // done: a later run with the same settings starts afresh
	return b, nil
}

func testAccuracy(ctx context.Context, rt *inference.Runtime, model *onnx.ModelProto, test *mnist.Set) (float64, error) {
	data, err := onnx.Encode(model)
	if err != nil {
		return 0, err
	}
	ev, err := NewEvaluator(rt, data)
	if err != nil {
		return 0, err
	}
	defer ev.Close()
	return ev.Accuracy(ctx, test, EvalBatch, nil)
}

func trainingNotes(cfg Config, threads int, ortVersion string) string {
	c, _ := json.Marshal(cfg)
	return fmt.Sprintf("ONNX Runtime %s CPU, %d intra-op thread(s); config %s", ortVersion, threads, c)
}

// CheckpointPath is the default checkpoint file of a training run: in the user cache
// under kind, named by name and a hash of key (the run's settings), so that other
// settings start afresh instead of resuming a run they do not match.
func CheckpointPath(kind, name string, key []byte) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("checkpoint folder: %w (pass --checkpoint)", err)
	}
	sum := sha256.Sum256(key)
	return filepath.Join(cache, "gibbon", kind, fmt.Sprintf("%s-%s.ckpt", name, hex.EncodeToString(sum[:4]))), nil
}

// resumer is a trainer that checkpoints: this package's and the attack network's.
type resumer interface {
	Resume(path string) (bool, error)
	Step() int
	TotalSteps() int
}

// StartOrResume removes the checkpoint when fresh, else resumes from it when it is
// there, saying so on log.
func StartOrResume(tr resumer, ckpt string, fresh bool, name string, log io.Writer) error {
	if fresh {
		if err := os.Remove(ckpt); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	ok, err := tr.Resume(ckpt)
	if err != nil {
		return err
	}
	if ok {
		fmt.Fprintf(log, "resuming %s from %s at step %d of %d\n", name, ckpt, tr.Step(), tr.TotalSteps())
	}
	return nil
}

// Interrupted turns a training error into the one-line advice to resume when the
// context was cancelled (the checkpoint is saved then); other errors pass through.
func Interrupted(ctx context.Context, err error, step, total int, ckpt string) error {
	if ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("interrupted at step %d of %d; run the same command again to resume from %s", step, total, ckpt)
}
