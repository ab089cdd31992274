package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/inference/attacknet"
	"gibbon/internal/progress"
)

// contractFlags describe a user's classifier file when no manifest does.
type contractFlags struct {
	size, layout, rng, mean, std, resize, color string
	channels                                    int
	cropPct                                     float64
}

func (c *contractFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&c.size, "size", "", "--target: input size in pixels, N or HxW (e.g. 224)")
	fs.IntVar(&c.channels, "channels", 3, "--target: input channels, 1 (gray) or 3")
	fs.StringVar(&c.color, "color", "", "--target: RGB, BGR or gray (default: gray for 1 channel, RGB for 3)")
	fs.StringVar(&c.layout, "layout", "NCHW", "--target: NCHW or NHWC")
	fs.StringVar(&c.rng, "range", "0,1", "--target: pixel range before mean/std, 0,1 or 0,255")
	fs.StringVar(&c.mean, "mean", "", "--target: per-channel mean, e.g. 0.485,0.456,0.406 (folded into the graph)")
	fs.StringVar(&c.std, "std", "", "--target: per-channel std, e.g. 0.229,0.224,0.225")
	fs.StringVar(&c.resize, "resize", "crop", "--target: how images are fitted: crop (shorter side, centre crop), stretch or mnist")
	fs.Float64Var(&c.cropPct, "crop-pct", 0.875, "--target: crop: the crop's share of the resized shorter side")
}

func (c *contractFlags) contract() (inference.InputContract, error) {
	var ic inference.InputContract
	if c.size == "" {
		return ic, errors.New("--target needs the classifier's input size: --size 224 (or HxW)")
	}
	hs, ws, two := strings.Cut(strings.ToLower(c.size), "x")
	if !two {
		ws = hs
	}
	h, err1 := strconv.Atoi(strings.TrimSpace(hs))
	w, err2 := strconv.Atoi(strings.TrimSpace(ws))
	if err1 != nil || err2 != nil {
		return ic, fmt.Errorf("--size %q: want N or HxW pixels", c.size)
	}
	color := c.color
	if color == "" {
		color = "RGB"
		if c.channels == 1 {
			color = "gray"
		}
	}
	lo, hi, ok := strings.Cut(c.rng, ",")
	a, err1 := strconv.ParseFloat(strings.TrimSpace(lo), 64)
	b, err2 := strconv.ParseFloat(strings.TrimSpace(hi), 64)
	if !ok || err1 != nil || err2 != nil {
		return ic, fmt.Errorf("--range %q: want LO,HI like 0,1 or 0,255", c.rng)
	}
	mean, err := parseFloats(c.mean, "--mean")
	if err != nil {
		return ic, err
	}
	std, err := parseFloats(c.std, "--std")
	if err != nil {
		return ic, err
	}
	ic = inference.InputContract{Layout: strings.ToUpper(c.layout), Channels: c.channels, Height: h, Width: w, Color: color,
		Range: [2]float64{a, b}, Mean: mean, Std: std, Resize: c.resize}
	if c.resize == "crop" {
		ic.CropPct = c.cropPct
	}
	if err := ic.Check(); err != nil {
		return ic, err
	}
	return ic, nil
}

func cmdTrainAttack(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train-attack", stderr,
		"Usage: gibbon train-attack --targets A,B [flags]          (against classifiers in --dir's manifest)",
		"       gibbon train-attack --target my.onnx --size 224 --images DIR [flags]   (a classifier of yours)",
		"Trains an attack network: a U-Net that outputs one adversarial image per ε head in one pass,",
		"against several frozen classifiers at once; writes DIR/NAME.onnx and its manifest entry.")
	job := attacknet.Job{Config: attacknet.Defaults, Command: "gibbon train-attack " + strings.Join(args, " "), Log: stderr,
		Progress: progress.New(stderr)}
	cfg := &job.Config
	fs.StringVar(&job.Dir, "dir", "models", "folder with manifest.json: reads --targets there, writes NAME.onnx and its entry there")
	targets := fs.String("targets", "", "classifiers of --dir's manifest to train against, comma-separated")
	targetFiles := fs.String("target", "", "ONNX classifier file(s) of yours to train against, comma-separated (describe the input with --size etc.)")
	fs.StringVar(&job.Images, "images", "", "folder of training images (PNG, JPEG, GIF, WebP; unlabelled); default: the MNIST training set (28×28 gray targets)")
	fs.IntVar(&job.MaxImages, "max-images", 20000, "--images: read at most this many")
	fs.IntVar(&job.Holdout, "holdout", -1, "--images: images kept out of training to check the network on (-1: 10%, at most 500)")
	eps := fs.String("eps", "0.1,0.2,0.3", "the heads' L∞ budgets on the pixel range, comma-separated (0.3 or 8/255)")
	fs.StringVar(&job.Name, "name", "", "the network's name in the manifest (default attack-net-<first target>)")
	fs.IntVar(&cfg.Steps, "steps", cfg.Steps, "training steps (batches)")
	fs.IntVar(&cfg.BatchSize, "batch", cfg.BatchSize, "images per step")
	fs.Float64Var(&cfg.LR, "lr", cfg.LR, "Adam's peak learning rate (cosine decay)")
	fs.Float64Var(&cfg.Kappa, "kappa", cfg.Kappa, "hinge margin κ: a head is done with an image once each target misclassifies it by κ (logit units)")
	fs.Float64Var(&cfg.Calm, "calm", cfg.Calm, "weight of the heads' mean squared tanh input in the loss (keeps heads from saturating into a fixed pattern)")
	fs.IntVar(&cfg.Spec.Base, "base", attacknet.DefaultBase, "generator channels at full resolution (doubling per level)")
	fs.IntVar(&cfg.Spec.Levels, "levels", 0, "generator downsamplings (0: automatic, 2 for 28×28, 4 for 224×224)")
	fs.IntVar(&cfg.Spec.Shuffle, "shuffle", 0, "2: fold 2×2 pixel blocks into channels so the generator runs at half resolution (pixel shuffle; faster); 0: none")
	fs.Float64Var(&cfg.Diversity, "diversity", 0, "input diversity: the chance per target and step that it sees the adversarial batch randomly zoomed (±10%) and shifted (±2 px); helps transfer (0: off)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (weights, batch order)")
	fs.IntVar(&job.Threads, "threads", 1, "ONNX Runtime intra-op threads")
	rf := addRuntimeFlags(fs)
	fs.StringVar(&job.Checkpoint, "checkpoint", "", "checkpoint file (default: in the user cache, named by the settings)")
	fs.BoolVar(&job.Fresh, "fresh", false, "start over even when a checkpoint exists")
	eval := fs.Bool("eval", true, "MNIST: evaluate afterwards like gibbon eval-attack (success, baselines, speed)")
	evalN := fs.Int("eval-n", 10000, "MNIST: test images to evaluate on")
	var contract contractFlags
	contract.add(fs)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	job.Targets, job.TargetFiles = splitList(*targets), splitList(*targetFiles)
	switch {
	case (*targets == "") == (*targetFiles == ""):
		return usageError{"train-attack needs --targets (classifiers of --dir's manifest) or --target FILE.onnx, not both"}
	case job.Threads < 1 || job.MaxImages < 1 || *evalN < 1 || *evalN > 10000:
		return usageError{"--threads and --max-images must be at least 1, --eval-n in [1,10000]"}
	}
	var err error
	if cfg.Spec.Eps, err = parseEpsList(*eps); err != nil {
		return usageError{"--eps: " + err.Error()}
	}
	if *targetFiles != "" {
		if job.Contract, err = contract.contract(); err != nil {
			return usageError{err.Error()}
		}
		if !flagGiven(fs, "dir") {
			job.Dir = "" // beside the first file
		}
	}
	rt, err := rf.open(job.Threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	tr, err := job.Run(ctx, rt)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d steps in %s; recent training batches fooled %s; wrote %s (sha256 %s…)\n",
		tr.Name, tr.Config.Steps, tr.Wall.Round(time.Second), fooledSummary(tr), tr.Path, tr.SHA256[:12])
	switch {
	case tr.HeldOut != nil:
		printHeldOut(stdout, tr)
	case *eval && tr.MNIST:
		return evalAttack(ctx, rt, tr.Dir, tr.Name, evalAttackOptions{n: *evalN, batch: 100, baselines: true, write: true, out: &outputFlags{}}, stdout, stderr)
	}
	return nil
}

// printHeldOut reports each head's success on the images kept out of training.
func printHeldOut(w io.Writer, tr *attacknet.Trained) {
	fmt.Fprintf(w, "on %d held-out images (success: the prediction changed from the targets' clean one):\n", tr.HeldOutN)
	for _, r := range tr.HeldOut {
		var parts []string
		for _, m := range r.Models {
			parts = append(parts, fmt.Sprintf("%s %.1f%%", m.Name, 100*m.SuccessRate))
		}
		fmt.Fprintf(w, "  ε %s: %s; %.2f ms per image\n", inference.EpsOn(r.Config.Eps, r.Config.Range).String(), strings.Join(parts, ", "), float64(r.Wall)/1e6/float64(r.N()))
	}
}

// parseEpsList reads comma-separated budgets ("0.3" or "8/255").
func parseEpsList(list string) ([]float64, error) {
	var out []float64
	for _, s := range strings.Split(list, ",") {
		e, err := inference.ParseEps(s)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func fooledSummary(tr *attacknet.Trained) string {
	var parts []string
	for k, e := range tr.Config.Spec.Eps {
		parts = append(parts, fmt.Sprintf("%.0f%% at ε %g", 100*tr.Fooled[k], e))
	}
	return strings.Join(parts, ", ")
}
