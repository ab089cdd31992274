package cli

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
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/train"
)

func cmdTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train", stderr,
		"Usage: gibbon train [flags] NAME   (train a built-in MNIST model; see --list)")
	dir := fs.String("dir", "models", "folder that receives NAME.onnx and the manifest entry")
	epochs := fs.Int("epochs", 0, "epochs (0: the recipe's)")
	seed := fs.Int64("seed", -1, "random seed (-1: the recipe's)")
	threads := fs.Int("threads", 1, "ONNX Runtime intra-op threads")
	rf := addRuntimeFlags(fs)
	ckpt := fs.String("checkpoint", "", "checkpoint file (default: in the user cache, named by the settings)")
	fresh := fs.Bool("fresh", false, "start over even when a checkpoint exists")
	subset := fs.Int("subset", 0, "train on the first N training images only (quick trials)")
	list := fs.Bool("list", false, "list the built-in models and exit")
	samples := fs.Bool("samples", false, "write DIR/samples/digit-<label>-<k>.png (the first 10 test digits of each class) and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *list {
		for _, r := range train.Zoo {
			fmt.Fprintf(stdout, "%-20s %s\n", r.Name, r.Description)
		}
		return nil
	}
	if *samples {
		if fs.NArg() != 0 {
			return usageError{"train --samples takes no model name"}
		}
		test, err := mnist.LoadTest(ctx)
		if err != nil {
			return err
		}
		names, err := mnist.WriteSamples(filepath.Join(*dir, "samples"), test, 10)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d sample digits to %s\n", len(names), filepath.Join(*dir, "samples"))
		return nil
	}
	if fs.NArg() != 1 {
		return usageError{"train needs exactly one model name (see gibbon train --list)"}
	}
	recipe, err := train.RecipeNamed(fs.Arg(0))
	if err != nil {
		return usageError{err.Error()}
	}
	cfg := recipe.Config
	if *epochs < 0 || *subset < 0 || *threads < 1 {
		return usageError{"--epochs and --subset must not be negative, --threads must be at least 1"}
	}
	if *epochs > 0 {
		cfg.Epochs = *epochs
	}
	if *seed >= 0 {
		cfg.Seed = uint64(*seed)
	}
	cfg.TrainSubset = *subset
	if *ckpt == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("checkpoint folder: %w (pass --checkpoint)", err)
		}
		key, _ := json.Marshal(cfg)
		sum := sha256.Sum256(key)
		*ckpt = filepath.Join(cache, "gibbon", "train", fmt.Sprintf("%s-%s.ckpt", recipe.Name, hex.EncodeToString(sum[:4])))
	}

	trainSet, testSet, err := mnist.Load(ctx)
	if err != nil {
		return err
	}
	rt, err := inference.OpenRuntime(rf.config(*threads))
	if err != nil {
		return err
	}
	defer rt.Close()
	tr, err := train.New(rt, cfg, trainSet)
	if err != nil {
		return err
	}
	defer tr.Close()
	if *fresh {
		if err := os.Remove(*ckpt); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else if ok, err := tr.Resume(*ckpt); err != nil {
		return err
	} else if ok {
		fmt.Fprintf(stderr, "resuming %s from %s at step %d of %d\n", recipe.Name, *ckpt, tr.Step(), tr.TotalSteps())
	}
	fmt.Fprintf(stderr, "training %s (%s): %d epochs of %d steps, batch %d, %d threads; checkpoint %s\n",
		recipe.Name, cfg.Arch, cfg.Epochs, tr.StepsPerEpoch(), cfg.BatchSize, *threads, *ckpt)
	if err := tr.Run(ctx, train.RunOptions{Checkpoint: *ckpt, Progress: train.NewProgress(stderr)}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted at step %d of %d; run the same command again to resume from %s", tr.Step(), tr.TotalSteps(), *ckpt)
		}
		return err
	}

	model, err := tr.Model()
	if err != nil {
		return err
	}
	file := recipe.Name + ".onnx"
	sha, err := train.SaveModel(model, filepath.Join(*dir, file))
	if err != nil {
		return err
	}
	prov := &inference.Provenance{
		Command:     "gibbon train " + strings.Join(args, " "),
		Seed:        int64(cfg.Seed),
		Data:        mnist.Source(),
		Epochs:      float64(cfg.Epochs),
		WallSeconds: math.Round(tr.WallSeconds()*1000) / 1000,
		Date:        time.Now().UTC().Format(time.RFC3339),
		Notes:       trainingNotes(cfg, *threads, rt.Version()),
	}
	if *subset > 0 {
		prov.Data += fmt.Sprintf(" (first %d training images only)", *subset)
	}
	if err := train.UpdateManifest(*dir, func(m *inference.Manifest) error {
		train.PutEntry(m, recipe.Entry(file, sha, prov))
		return nil
	}); err != nil {
		return err
	}
	data, err := onnx.Encode(model)
	if err != nil {
		return err
	}
	ev, err := train.NewEvaluator(rt, data)
	if err != nil {
		return err
	}
	defer ev.Close()
	acc, err := ev.Accuracy(ctx, testSet, train.EvalBatch, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d epochs in %s; test accuracy %.2f%%; wrote %s (sha256 %s…)\n",
		recipe.Name, cfg.Epochs, time.Duration(tr.WallSeconds()*float64(time.Second)).Round(time.Second), 100*acc, filepath.Join(*dir, file), sha[:12])
	fmt.Fprintf(stdout, "next: gibbon eval --dir %s %s   (records clean and PGD-40 accuracy in the manifest)\n", *dir, recipe.Name)
	_ = os.Remove(*ckpt)
	return nil
}

func trainingNotes(cfg train.Config, threads int, ortVersion string) string {
	c, _ := json.Marshal(cfg)
	return fmt.Sprintf("ONNX Runtime %s CPU, %d intra-op thread(s); config %s", ortVersion, threads, c)
}
