package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/attacknet"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/train"
)

// trainAttackFlags are train-attack's command line.
type trainAttackFlags struct {
	dir, targets, targetFiles, images, eps, name, ckpt string
	steps, batch, base, levels, threads, maxImages     int
	holdout, evalN                                     int
	lr, kappa, calm                                    float64
	seed                                               uint64
	fresh, eval                                        bool
	contract                                           contractFlags
}

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
	var f trainAttackFlags
	d := attacknet.Defaults
	fs.StringVar(&f.dir, "dir", "models", "folder with manifest.json: reads --targets there, writes NAME.onnx and its entry there")
	fs.StringVar(&f.targets, "targets", "", "classifiers of --dir's manifest to train against, comma-separated")
	fs.StringVar(&f.targetFiles, "target", "", "ONNX classifier file(s) of yours to train against, comma-separated (describe the input with --size etc.)")
	fs.StringVar(&f.images, "images", "", "folder of training images (PNG, JPEG, GIF, WebP; unlabelled); default: the MNIST training set (28×28 gray targets)")
	fs.IntVar(&f.maxImages, "max-images", 20000, "--images: read at most this many")
	fs.IntVar(&f.holdout, "holdout", -1, "--images: images kept out of training to check the network on (-1: 10%, at most 500)")
	fs.StringVar(&f.eps, "eps", "0.1,0.2,0.3", "the heads' L∞ budgets on the pixel range, comma-separated (0.3 or 8/255)")
	fs.StringVar(&f.name, "name", "", "the network's name in the manifest (default attack-net-<first target>)")
	fs.IntVar(&f.steps, "steps", d.Steps, "training steps (batches)")
	fs.IntVar(&f.batch, "batch", d.BatchSize, "images per step")
	fs.Float64Var(&f.lr, "lr", d.LR, "Adam's peak learning rate (cosine decay)")
	fs.Float64Var(&f.kappa, "kappa", d.Kappa, "hinge margin κ: a head is done with an image once each target misclassifies it by κ (logit units)")
	fs.Float64Var(&f.calm, "calm", d.Calm, "weight of the heads' mean squared tanh input in the loss (keeps heads from saturating into a fixed pattern)")
	fs.IntVar(&f.base, "base", attacknet.DefaultBase, "generator channels at full resolution (doubling per level)")
	fs.IntVar(&f.levels, "levels", 0, "generator downsamplings (0: automatic, 2 for 28×28, 4 for 224×224)")
	fs.Uint64Var(&f.seed, "seed", d.Seed, "random seed (weights, batch order)")
	fs.IntVar(&f.threads, "threads", 1, "ONNX Runtime intra-op threads")
	rf := addRuntimeFlags(fs)
	fs.StringVar(&f.ckpt, "checkpoint", "", "checkpoint file (default: in the user cache, named by the settings)")
	fs.BoolVar(&f.fresh, "fresh", false, "start over even when a checkpoint exists")
	fs.BoolVar(&f.eval, "eval", true, "MNIST: evaluate afterwards like gibbon eval-attack (success, baselines, speed)")
	fs.IntVar(&f.evalN, "eval-n", 10000, "MNIST: test images to evaluate on")
	f.contract.add(fs)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	switch {
	case (f.targets == "") == (f.targetFiles == ""):
		return usageError{"train-attack needs --targets (classifiers of --dir's manifest) or --target FILE.onnx, not both"}
	case f.threads < 1 || f.maxImages < 1 || f.evalN < 1 || f.evalN > 10000:
		return usageError{"--threads and --max-images must be at least 1, --eval-n in [1,10000]"}
	}
	var epsList []float64
	for _, s := range strings.Split(f.eps, ",") {
		e, err := parseEps64(s)
		if err != nil {
			return usageError{"--eps: " + err.Error()}
		}
		epsList = append(epsList, e)
	}

	rt, err := inference.OpenRuntime(rf.config(f.threads))
	if err != nil {
		return err
	}
	defer rt.Close()

	// The targets, as attack models (mean/std folded into the graphs).
	var targets []*attack.ONNXModel
	defer func() {
		for _, t := range targets {
			t.Close()
		}
	}()
	var names []string
	var contract inference.InputContract
	var newEntries []inference.ModelEntry // --target files to register beside the network
	dirSet := false
	fs.Visit(func(fl *flag.Flag) { dirSet = dirSet || fl.Name == "dir" })
	outDir := f.dir
	if f.targets != "" {
		man, err := train.ReadManifest(f.dir)
		if err != nil {
			return err
		}
		for i, n := range splitList(f.targets) {
			e, err := train.FindEntry(man, n)
			if err != nil {
				return usageError{fmt.Sprintf("--targets: %v (in %s)", err, f.dir)}
			}
			if e.Task != inference.TaskClassifier {
				return usageError{fmt.Sprintf("--targets: %s is a %s, not a classifier", n, e.Task)}
			}
			if i == 0 {
				contract = e.Input
			} else if !sameInputs(e.Input, contract) {
				return usageError{fmt.Sprintf("--targets: %s takes %s, %s takes %s: one network needs one input form", names[0], describeInput(contract), n, describeInput(e.Input))}
			}
			m, err := attack.LoadModel(ctx, rt, os.DirFS(f.dir), *e)
			if err != nil {
				return err
			}
			targets = append(targets, m)
			names = append(names, n)
		}
	} else {
		if contract, err = f.contract.contract(); err != nil {
			return usageError{err.Error()}
		}
		files := splitList(f.targetFiles)
		if !dirSet {
			outDir = filepath.Dir(files[0])
		}
		for _, path := range files {
			m, err := onnx.Load(path)
			if err != nil {
				return err
			}
			name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
			om, err := attack.NewONNXModel(ctx, rt, m, attack.ModelOptions{Name: name, Mean: contract.Mean, Std: contract.Std, Layout: contract.Layout})
			if err != nil {
				return err
			}
			targets = append(targets, om)
			names = append(names, name)
			if want := contract.Shape(); !sameDims(om.InputShape()[1:], want[1:]) {
				return usageError{fmt.Sprintf("%s takes images %v; --size/--channels/--layout say %v", path, om.InputShape(), want)}
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(outDir, path)
			if err != nil || strings.HasPrefix(rel, "..") {
				return usageError{fmt.Sprintf("%s is not inside %s, the folder whose manifest will list it beside the network", path, outDir)}
			}
			sum := sha256.Sum256(data)
			newEntries = append(newEntries, inference.ModelEntry{Name: name, File: filepath.ToSlash(rel), SHA256: hex.EncodeToString(sum[:]),
				Task: inference.TaskClassifier, Description: "Classifier registered by gibbon train-attack", Input: contract, OutputsLogits: true})
		}
	}
	pixel := contract.Unnormalized()
	rng := contract.PixelRange()
	spec := attacknet.Spec{Channels: contract.Channels, Height: contract.Height, Width: contract.Width, Layout: contract.Layout,
		Range: [2]float64{float64(rng[0]), float64(rng[1])}, Eps: epsList, Base: f.base, Levels: f.levels}
	if _, err := spec.Normalized(); err != nil {
		return usageError{err.Error()}
	}

	// Training images.
	var data *attacknet.Images
	var check *attacknet.Images
	dataDesc := ""
	isMNIST := contract.Channels == 1 && contract.Height == mnist.Rows && contract.Width == mnist.Cols
	if f.images != "" {
		imgs, skipped, err := attacknet.LoadImages(f.images, pixel, f.maxImages)
		for _, s := range skipped {
			fmt.Fprintf(stderr, "skipping %s: %s\n", s.Path, s.Reason)
		}
		if err != nil {
			return err
		}
		hold := f.holdout
		if hold < 0 {
			hold = min(imgs.Len()/10, 500)
		}
		if hold >= imgs.Len() {
			return usageError{fmt.Sprintf("--holdout %d leaves none of the %d images to train on", hold, imgs.Len())}
		}
		per := len(imgs.Data) / imgs.Len()
		cut := (imgs.Len() - hold) * per
		data = &attacknet.Images{Data: imgs.Data[:cut], Shape: imgs.Shape}
		if hold > 0 {
			check = &attacknet.Images{Data: imgs.Data[cut:], Shape: imgs.Shape}
		}
		dataDesc = fmt.Sprintf("%d images from %s (unlabelled: each target's prediction is the label), %d held out", data.Len(), f.images, hold)
	} else {
		if !isMNIST {
			return usageError{fmt.Sprintf("the targets take %s: pass --images DIR (the MNIST default fits 28×28 gray models only)", describeInput(contract))}
		}
		trainSet, _, err := mnist.Load(ctx)
		if err != nil {
			return err
		}
		x := make([]float32, len(trainSet.Images))
		for i, v := range trainSet.Images {
			x[i] = rng[0] + v*(rng[1]-rng[0])
		}
		data = &attacknet.Images{Data: x, Shape: contract.Shape()[1:]}
		dataDesc = mnist.Source() + "; training images only, labels unused (each target's prediction is the label)"
	}

	cfg := attacknet.Config{Spec: spec, Targets: names, Kappa: f.kappa, Calm: f.calm, Steps: f.steps, BatchSize: f.batch, LR: f.lr, Seed: f.seed}
	name := f.name
	if name == "" {
		name = "attack-net-" + names[0]
	}
	if f.ckpt == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("checkpoint folder: %w (pass --checkpoint)", err)
		}
		key, _ := json.Marshal(cfg)
		sum := sha256.Sum256(append(key, []byte(dataDesc)...))
		f.ckpt = filepath.Join(cache, "gibbon", "train-attack", fmt.Sprintf("%s-%s.ckpt", name, hex.EncodeToString(sum[:4])))
	}
	tts := make([]attacknet.Target, len(targets))
	for i, t := range targets {
		tts[i] = attacknet.Target{Name: names[i], Model: t.Proto(), Classes: t.Classes()}
	}
	tr, err := attacknet.New(rt, cfg, tts, data)
	if err != nil {
		return err
	}
	defer tr.Close()
	if f.fresh {
		if err := os.Remove(f.ckpt); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else if ok, err := tr.Resume(f.ckpt); err != nil {
		return err
	} else if ok {
		fmt.Fprintf(stderr, "resuming %s from %s at step %d of %d\n", name, f.ckpt, tr.Step(), tr.TotalSteps())
	}
	fmt.Fprintf(stderr, "training %s against %s: %d steps of %d images (%.2f epochs of %d), heads ε %s; %s; %d threads; checkpoint %s\n",
		name, strings.Join(names, ", "), cfg.Steps, cfg.BatchSize, tr.Epochs(), data.Len(), f.eps, tr.Spec().Architecture(), f.threads, f.ckpt)
	if err := tr.Run(ctx, attacknet.RunOptions{Checkpoint: f.ckpt, Progress: train.NewProgress(stderr)}); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted at step %d of %d; run the same command again to resume from %s", tr.Step(), tr.TotalSteps(), f.ckpt)
		}
		return err
	}

	model, err := tr.Model()
	if err != nil {
		return err
	}
	file := name + ".onnx"
	sha, err := train.SaveModel(model, filepath.Join(outDir, file))
	if err != nil {
		return err
	}
	prov := &inference.Provenance{
		Command:     "gibbon train-attack " + strings.Join(args, " "),
		Seed:        int64(cfg.Seed),
		Data:        dataDesc,
		Epochs:      tr.Epochs(),
		WallSeconds: float64(int(tr.WallSeconds()*10)) / 10,
		Date:        time.Now().UTC().Format(time.RFC3339),
	}
	c, _ := json.Marshal(cfg)
	prov.Notes = fmt.Sprintf("ONNX Runtime %s CPU, %d intra-op thread(s); loss: sum over heads and targets of relu(z_y − logsumexp_{j≠y} z_j + κ), y the target's clean prediction, plus calm × each head's mean squared tanh input; Adam, cosine schedule; config %s", rt.Version(), f.threads, c)
	// The network's own input: the targets' contract may name theirs (a pulled
	// model's "x", say), which the generator's graph does not have.
	netInput := pixel
	netInput.Name = attacknet.Input
	entry := attacknet.Entry(name, file, sha, spec, names, netInput, prov)
	if err := train.UpdateManifest(outDir, func(m *inference.Manifest) error {
		for _, e := range newEntries {
			if _, err := train.FindEntry(m, e.Name); err != nil {
				train.PutEntry(m, e)
				fmt.Fprintf(stderr, "registered classifier %s (%s) in %s\n", e.Name, e.File, filepath.Join(outDir, train.ManifestFile))
			}
		}
		train.PutEntry(m, entry)
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d steps in %s; recent training batches fooled %s; wrote %s (sha256 %s…)\n",
		name, cfg.Steps, time.Duration(tr.WallSeconds()*float64(time.Second)).Round(time.Second), fooledSummary(tr), filepath.Join(outDir, file), sha[:12])
	_ = os.Remove(f.ckpt)

	net, err := attack.NewNetwork(ctx, rt, model, attack.NetworkOptions{Name: name, Eps: epsList, Range: spec.Range})
	if err != nil {
		return err
	}
	defer net.Close()
	var judges []attacknet.Judge
	for i, t := range targets {
		judges = append(judges, attacknet.Judge{Name: names[i], Role: attacknet.RoleTarget, Net: t})
	}
	if check != nil {
		return checkHeldOut(ctx, net, judges, check, contract, stdout)
	}
	if f.eval && isMNIST {
		return evalAttack(ctx, rt, outDir, name, evalAttackOptions{n: f.evalN, batch: 100, baselines: true, write: true, out: &outputFlags{}}, stdout, stderr)
	}
	return nil
}

// checkHeldOut reports each head's success on images kept out of training, judged
// against the targets' own clean predictions.
func checkHeldOut(ctx context.Context, net *attack.Network, judges []attacknet.Judge, imgs *attacknet.Images, contract inference.InputContract, stdout io.Writer) error {
	x := &inference.Tensor{Shape: append([]int64{int64(imgs.Len())}, imgs.Shape...), Data: imgs.Data}
	req := attack.Request{Images: x}
	for _, j := range judges {
		req.Surrogates = append(req.Surrogates, attack.Model{Name: j.Name, Net: j.Net})
	}
	res, err := attack.RunNetworkHeads(ctx, net, attack.Config{Layout: contract.Layout}, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "on %d held-out images (success: the prediction changed from the targets' clean one):\n", imgs.Len())
	for _, r := range res {
		var parts []string
		for _, m := range r.Models {
			parts = append(parts, fmt.Sprintf("%s %.1f%%", m.Name, 100*m.SuccessRate))
		}
		fmt.Fprintf(stdout, "  ε %s: %s; %.2f ms per image\n", attack.FormatEps(r.Config.Eps, r.Config.Range), strings.Join(parts, ", "), float64(r.Wall)/1e6/float64(r.N()))
	}
	return nil
}

// parseEps64 reads a budget like attack.ParseEps ("0.3" or "8/255") in float64, so the
// manifest records 0.1 rather than float32's 0.10000000149.
func parseEps64(s string) (float64, error) {
	if _, err := attack.ParseEps(s); err != nil {
		return 0, err
	}
	num, den, frac := strings.Cut(strings.TrimSpace(s), "/")
	a, _ := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if frac {
		b, _ := strconv.ParseFloat(strings.TrimSpace(den), 64)
		a /= b
	}
	return a, nil
}

func fooledSummary(tr *attacknet.Trainer) string {
	var parts []string
	for k, e := range tr.Spec().Eps {
		parts = append(parts, fmt.Sprintf("%.0f%% at ε %g", 100*tr.Recent.Fooled[k], e))
	}
	return strings.Join(parts, ", ")
}

func sameDims(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
