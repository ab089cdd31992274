package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"gibbon/inference/mnist"
	"gibbon/inference/train"
	"gibbon/internal/progress"
)

func cmdTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train", stderr, "Usage: gibbon train [flags] NAME   (train a built-in MNIST model; see --list)")
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
	switch {
	case *list:
		return printRecipes(stdout)
	case *samples && fs.NArg() != 0:
		return usageError{"train --samples takes no model name"}
	case *samples:
		return writeSamples(ctx, filepath.Join(*dir, "samples"), stdout)
	case fs.NArg() != 1:
		return usageError{"train needs exactly one model name (see gibbon train --list)"}
	case *epochs < 0 || *subset < 0 || *threads < 1:
		return usageError{"--epochs and --subset must not be negative, --threads must be at least 1"}
	}
	recipe, err := train.RecipeNamed(fs.Arg(0))
	if err != nil {
		return usageError{err.Error()}
	}
	if *epochs > 0 {
		recipe.Config.Epochs = *epochs
	}
	if *seed >= 0 {
		recipe.Config.Seed = uint64(*seed)
	}
	recipe.Config.TrainSubset = *subset
	rt, err := rf.open(*threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	b, err := train.Build(ctx, rt, recipe, train.BuildOptions{Dir: *dir, Threads: *threads, Checkpoint: *ckpt, Fresh: *fresh,
		Command: "gibbon train " + strings.Join(args, " "), Log: stderr, Progress: progress.New(stderr)})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d epochs in %s; test accuracy %.2f%%; wrote %s (sha256 %s…)\n",
		recipe.Name, b.Epochs, b.Wall.Round(time.Second), 100*b.TestAccuracy, b.Path, b.SHA256[:12])
	fmt.Fprintf(stdout, "next: gibbon eval --dir %s %s   (records clean and PGD-40 accuracy in the manifest)\n", *dir, recipe.Name)
	return nil
}

// printRecipes lists the built-in models gibbon train makes.
func printRecipes(w io.Writer) error {
	t := &table{}
	for _, r := range train.Zoo {
		t.add(r.Name, r.Description)
	}
	return t.write(w)
}

// writeSamples writes the sample digits the web app offers.
func writeSamples(ctx context.Context, dir string, stdout io.Writer) error {
	test, err := mnist.LoadTest(ctx)
	if err != nil {
		return err
	}
	names, err := mnist.WriteSamples(dir, test, 10)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d sample digits to %s\n", len(names), dir)
	return nil
}
