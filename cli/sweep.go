package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/mnist"
	"gibbon/inference/sweep"
	"gibbon/server"
)

// runFlags are the flags sweep, compete and transfer share.
type runFlags struct {
	modelsDir, eps, dataset, data, title string
	defences                             string
	n, batch, steps, threads             int
	seed                                 int64
	save                                 bool
	rt                                   *runtimeFlags
	out                                  *outputFlags
}

func (f *runFlags) register(fs *flag.FlagSet, kind string) {
	fs.StringVar(&f.modelsDir, "models", "", "folder with manifest.json and models (default: the built-in models)")
	epsHelp := "budgets FROM:TO:STEP or a list, on the models' input range (default 0:0.4:0.025 for MNIST, 0:16/255:1/255 otherwise)"
	switch kind {
	case sweep.KindCompete:
		epsHelp = "the set of budgets each batch draws one from (default 0.1,0.2,0.3 for MNIST, 4/255,8/255,12/255,16/255 otherwise)"
	case sweep.KindTransfer:
		epsHelp = "the budget (default 0.2 for MNIST, 8/255 otherwise)"
	}
	fs.StringVar(&f.eps, "eps", "", epsHelp)
	fs.StringVar(&f.dataset, "dataset", "", "data set: mnist-test")
	fs.IntVar(&f.n, "n", 0, "number of images (the first N; default 1000 for sweeps, 500 for matrices)")
	fs.IntVar(&f.batch, "batch", 0, "images per pass (default: as many as keep a pass near 256 image·ε rows; compete 100)")
	fs.IntVar(&f.steps, "steps", 0, "steps of gradient attacks (default 10), queries of square (100) and noise (1)")
	fs.Int64Var(&f.seed, "seed", 0, "random seed (default: a new one, printed)")
	fs.IntVar(&f.threads, "threads", 1, "ONNX Runtime intra-op threads")
	f.rt = addRuntimeFlags(fs)
	f.out = addOutputFlags(fs, true)
	fs.BoolVar(&f.save, "save", false, "save the results to the gallery (DATA/gallery.db) and print the permalink")
	fs.StringVar(&f.data, "data", "data", "Gibbon's data directory, for --save")
	fs.StringVar(&f.title, "title", "", "the gallery entry's title, for --save")
}

// settings are the sweep settings the shared flags give, for a run of kind.
func (f *runFlags) settings(fs *flag.FlagSet, kind string) sweep.Settings {
	return sweep.Settings{Kind: kind, Defences: splitList(f.defences), Eps: f.eps, Steps: f.steps, Dataset: f.dataset,
		N: f.n, Batch: f.batch, Seed: seedFrom(fs, f.seed), Label: -1}
}

// parseOnlyFlags parses the command line of a command that takes no arguments
// (compete, transfer) and checks the shared flags.
func (f *runFlags) parseOnlyFlags(fs *flag.FlagSet, args []string) error {
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if f.threads < 1 {
		return usageError{"--threads must be at least 1"}
	}
	return nil
}

// report writes a data set run's result: its CSV where --csv says, then JSON or
// the table (unless the CSV went to stdout), and saves it to the gallery on --save.
func (f *runFlags) report(ctx context.Context, z *cliZoo, plan *sweep.Plan, result any, writeCSV func(io.Writer) error,
	table func(io.Writer), wallSeconds float64, stdout io.Writer) error {
	if err := f.out.write(stdout, result, writeCSV, table); err != nil {
		return err
	}
	if f.save {
		return saveRun(ctx, z, plan, *f, result, nil, nil, 0, wallSeconds, stdout)
	}
	return nil
}

func cmdSweep(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sweep", stderr,
		"Usage: gibbon sweep --dataset mnist-test --n 1000 --attack pgd --eps 0:0.4:0.025 [flags]",
		"       gibbon sweep IMAGE [--label K] [--frames DIR] [flags]",
		"Robust accuracy against ε for every defence (a data set), or each defence's probability of the",
		"true class and of the strongest wrong class against ε, and the smallest ε that flips it (one image).")
	var f runFlags
	f.register(fs, sweep.KindDataset)
	model := fs.String("model", "", "model(s) to attack, comma-separated for an ensemble (losses averaged; default: the first classifier)")
	method := fs.String("attack", "pgd", "fgsm, bim, pgd, mi-fgsm, di-fgsm, m-di2-fgsm, square, noise, or net:NAME for an attack network")
	fs.StringVar(&f.defences, "defences", "", "MODEL or MODEL+KIND[:PARAM] (jpeg, bits, median, resize-pad), comma-separated (default: every classifier, and every transform in front of the attacked model)")
	label := fs.Int("label", -1, "IMAGE: its true class; -1 takes the attacked model's prediction")
	frames := fs.String("frames", "", "IMAGE: write the adversarial image at each ε to this folder (PNG)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case f.dataset == "" && len(pos) != 1:
		return usageError{"sweep needs one IMAGE, or --dataset mnist-test (see gibbon sweep -h)"}
	case f.dataset != "" && len(pos) != 0:
		return usageError{"give either IMAGE or --dataset, not both"}
	case f.dataset == "" && f.n != 0:
		return usageError{"--n counts data set images; it does not go with IMAGE"}
	case f.dataset != "" && (*frames != "" || *label != -1):
		return usageError{"--frames and --label go with IMAGE, not --dataset"}
	case *label < -1:
		return usageError{"--label must be a class index (or -1)"}
	case f.threads < 1:
		return usageError{"--threads must be at least 1"}
	}
	s := f.settings(fs, sweep.KindDataset)
	s.Attack, s.Models = *method, splitList(*model)
	if f.dataset == "" {
		s.Kind, s.Image, s.Label = sweep.KindImage, filepath.Base(pos[0]), *label
	}
	z, plan, err := openPlan(ctx, f, s, stderr)
	if err != nil {
		return err
	}
	defer z.close()
	if s.Kind == sweep.KindImage {
		return sweepImage(ctx, z, plan, pos[0], *frames, f, stdout, stderr)
	}
	return sweepDataset(ctx, z, plan, f, stdout, stderr)
}

// openPlan opens ONNX Runtime and the models and plans s.
func openPlan(ctx context.Context, f runFlags, s sweep.Settings, stderr io.Writer) (*cliZoo, *sweep.Plan, error) {
	src, srcName := fs_(f.modelsDir)
	man, err := readManifest(src, srcName)
	if err != nil {
		return nil, nil, err
	}
	rt, err := f.rt.open(f.threads)
	if err != nil {
		return nil, nil, err
	}
	z := newCLIZoo(rt, src, srcName, man)
	plan, err := s.Plan(ctx, z, sweep.CLILimits)
	if err != nil {
		z.close()
		var pe *planError
		if errors.As(err, &pe) {
			return nil, nil, err
		}
		return nil, nil, usageError{err.Error()}
	}
	for _, sk := range plan.Skipped {
		fmt.Fprintf(stderr, "not a defence: %s\n", sk)
	}
	return z, plan, nil
}

// planError is a model that failed to load (not a mistake in the command line).
type planError struct{ err error }

func (e *planError) Error() string { return e.err.Error() }
func (e *planError) Unwrap() error { return e.err }

// cliZoo resolves models from a manifest folder, loading each once.
type cliZoo struct {
	rt          *inference.Runtime
	src         fs.FS
	srcName     string
	entries     map[string]inference.ModelEntry
	classifiers []string
	networks    []string

	mu     sync.Mutex
	models map[string]*attack.ONNXModel
	nets   map[string]*attack.Network
	shas   map[string]string
}

func newCLIZoo(rt *inference.Runtime, src fs.FS, srcName string, man *inference.Manifest) *cliZoo {
	z := &cliZoo{rt: rt, src: src, srcName: srcName, entries: map[string]inference.ModelEntry{},
		models: map[string]*attack.ONNXModel{}, nets: map[string]*attack.Network{}, shas: map[string]string{}}
	for _, e := range man.Models {
		z.entries[e.Name] = e
		switch e.Task {
		case inference.TaskClassifier:
			z.classifiers = append(z.classifiers, e.Name)
		case inference.TaskAttackNetwork:
			z.networks = append(z.networks, e.Name)
		}
	}
	return z
}

func (z *cliZoo) Classifiers() []string { return z.classifiers }
func (z *cliZoo) Networks() []string    { return z.networks }

func (z *cliZoo) Contract(name string) (inference.InputContract, bool) {
	e, ok := z.entries[name]
	return e.Input, ok
}

func (z *cliZoo) Classifier(ctx context.Context, name string) (attack.Model, inference.InputContract, error) {
	e, ok := z.entries[name]
	if !ok || e.Task != inference.TaskClassifier {
		return attack.Model{}, inference.InputContract{}, fmt.Errorf("no classifier %q in %s (have: %s)", name, z.srcName, strings.Join(z.classifiers, ", "))
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if m := z.models[name]; m != nil {
		return attack.Model{Name: name, Net: m}, e.Input, nil
	}
	m, err := attack.LoadModel(ctx, z.rt, z.src, e)
	if err != nil {
		return attack.Model{}, inference.InputContract{}, &planError{err}
	}
	z.models[name] = m
	return attack.Model{Name: name, Net: m}, e.Input, nil
}

func (z *cliZoo) Network(ctx context.Context, name string) (sweep.Generator, inference.InputContract, error) {
	e, ok := z.entries[name]
	if !ok || e.Task != inference.TaskAttackNetwork {
		have := strings.Join(z.networks, ", ")
		if have == "" {
			have = "none"
		}
		return nil, inference.InputContract{}, fmt.Errorf("no attack network %q in %s (have: %s)", name, z.srcName, have)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if n := z.nets[name]; n != nil {
		return n, e.Input, nil
	}
	n, err := attack.LoadNetwork(ctx, z.rt, z.src, e)
	if err != nil {
		return nil, inference.InputContract{}, &planError{err}
	}
	z.nets[name] = n
	return n, e.Input, nil
}

// sha is a model file's SHA-256: the manifest's, else computed from the file.
func (z *cliZoo) sha(name string) (string, error) {
	e := z.entries[name]
	if e.SHA256 != "" {
		return strings.ToLower(e.SHA256), nil
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if s, ok := z.shas[name]; ok {
		return s, nil
	}
	data, err := fs.ReadFile(z.src, e.File)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", name, err)
	}
	sum := sha256.Sum256(data)
	z.shas[name] = hex.EncodeToString(sum[:])
	return z.shas[name], nil
}

func (z *cliZoo) labels(name string) []string { return z.entries[name].Labels }

func (z *cliZoo) close() {
	z.mu.Lock()
	for _, m := range z.models {
		m.Close()
	}
	for _, n := range z.nets {
		n.Close()
	}
	z.models, z.nets = nil, nil
	z.mu.Unlock()
	z.rt.Close()
}

// loadSet is the plan's data set as tensors on the models' range.
func loadSet(ctx context.Context, plan *sweep.Plan) (*inference.Tensor, []int, error) {
	test, err := mnist.LoadTest(ctx)
	if err != nil {
		return nil, nil, err
	}
	return plan.Contract.MNISTTensor(test, 0, plan.Settings.N)
}

func sweepDataset(ctx context.Context, z *cliZoo, plan *sweep.Plan, f runFlags, stdout, stderr io.Writer) error {
	x, labels, err := loadSet(ctx, plan)
	if err != nil {
		return err
	}
	s := plan.Settings
	bar := newBar(stderr, "sweep", len(labels))
	res, err := sweep.RunDataset(ctx, sweep.DatasetSpec{Dataset: s.Dataset, Attack: plan.Attack, Eps: plan.Eps, Range: plan.Range,
		Defences: plan.Defences, Images: x, Labels: labels, Batch: s.Batch, Seed: s.Seed},
		func(r *sweep.DatasetResult) error { bar.Update(r.N, ""); return nil })
	bar.End()
	if err != nil {
		return err
	}
	return f.report(ctx, z, plan, res, res.WriteCSV, func(w io.Writer) { printDatasetTable(w, res, plan) }, res.WallSeconds, stdout)
}

func printDatasetTable(w io.Writer, res *sweep.DatasetResult, plan *sweep.Plan) {
	fmt.Fprintf(w, "%s; robust accuracy on %d %s images; seed %d\n", describeAttack(res.Attack), res.N, res.Dataset, res.Seed)
	rows := [][]string{{"ε on " + rangeText(plan.Range)}}
	for _, c := range res.Defences {
		rows[0] = append(rows[0], c.Name)
	}
	for k, e := range plan.Eps {
		row := []string{inference.EpsOn(e, plan.Range).String()}
		for _, c := range res.Defences {
			row = append(row, fmt.Sprintf("%.1f%%", 100*c.Accuracy[k]))
		}
		rows = append(rows, row)
	}
	(&table{rows: rows}).write(w)
	fmt.Fprintf(w, "%d images × %d ε in %.1f s: %.1f images/s, %.1f image·ε/s\n", res.N, len(res.Eps), res.WallSeconds,
		res.ImagesPerSecond, res.ImagesPerSecond*float64(len(res.Eps)))
}

func rangeText(r [2]float32) string { return fmt.Sprintf("[%g,%g]", r[0], r[1]) }

// describeAttack says what ran: "pgd (10 steps of 2.5ε/steps) on mnist-mlp".
func describeAttack(in sweep.Info) string {
	switch {
	case in.Network != "":
		return fmt.Sprintf("attack network %s (largest head within each ε)", in.Network)
	case in.Queries > 0:
		return fmt.Sprintf("%s (%d queries) on %s", in.Method, in.Queries, strings.Join(in.Surrogates, "+"))
	}
	return fmt.Sprintf("%s (%d steps of %s) on %s", in.Method, in.Steps, in.Alpha, strings.Join(in.Surrogates, "+"))
}

func sweepImage(ctx context.Context, z *cliZoo, plan *sweep.Plan, path, frames string, f runFlags, stdout, stderr io.Writer) error {
	pc := plan.Contract.Unnormalized()
	pre, err := readImage(path, pc)
	if err != nil {
		return err
	}
	if frames != "" {
		if err := os.MkdirAll(frames, 0o755); err != nil {
			return err
		}
	}
	s := plan.Settings
	var names []string
	if len(plan.Defences) > 0 {
		names = z.labels(plan.Defences[0].Model)
	}
	if len(names) > 0 && s.Label >= len(names) {
		return usageError{fmt.Sprintf("--label %d: the models have classes 0..%d", s.Label, len(names)-1)}
	}
	spec := sweep.ImageSpec{Attack: plan.Attack, Eps: plan.Eps, Range: plan.Range, Defences: plan.Defences, Image: pre.Tensor,
		Label: s.Label, Labels: names, Seed: s.Seed}
	table := f.out.text()
	var last *inference.Tensor
	header := false
	res, err := sweep.RunImage(ctx, spec, func(p sweep.Point) error {
		last = p.Adv
		if frames != "" {
			img, err := inference.TensorImage(p.Adv, pc)
			if err != nil {
				return err
			}
			if err := writePNG(filepath.Join(frames, fmt.Sprintf("eps-%02d-%s.png", p.Index, strconv.FormatFloat(p.Eps, 'f', -1, 64))), img); err != nil {
				return err
			}
		}
		if table {
			if !header {
				header = true
				fmt.Fprintf(stdout, "%s on %s; seed %d\n", describeAttack(plan.Attack.Info()), path, s.Seed)
				fmt.Fprintf(stdout, "each defence: top class (probability of the true class / of the strongest wrong class); * flipped\n")
			}
			cells := []string{fmt.Sprintf("ε %-18s", inference.EpsOn(float32(p.Eps), plan.Range).String())}
			for d, dp := range p.Defences {
				mark := ""
				if dp.Flipped {
					mark = "*"
				}
				cells = append(cells, fmt.Sprintf("%s: %d%s (%.2f/%.2f)", plan.Defences[d].Name, dp.Top1, mark, dp.TrueProb, dp.WrongProb))
			}
			fmt.Fprintln(stdout, strings.Join(cells, "  "))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := f.out.write(stdout, res, res.WriteCSV, func(w io.Writer) { printFlips(w, res, plan, frames) }); err != nil {
		return err
	}
	if !f.save {
		return nil
	}
	// The entry's images: the clean one, and the attacked model's first flip (else the
	// largest ε).
	adv := last
	for _, d := range res.Defences {
		if d.FlipIndex > 0 {
			adv = res.Points[d.FlipIndex].Adv
			break
		}
	}
	orig, err := tensorPNG(pre.Tensor, pc)
	if err != nil {
		return err
	}
	advPNG, err := tensorPNG(adv, pc)
	if err != nil {
		return err
	}
	var linf float64
	for _, p := range res.Points {
		linf = max(linf, p.Linf255)
	}
	return saveRun(ctx, z, plan, f, res, orig, advPNG, linf, res.WallSeconds, stdout)
}

// saveRun stores a sweep or matrix in the gallery and prints its permalink. linf255
// is the measured distance of an image sweep's images (0: the largest budget).
func saveRun(ctx context.Context, z *cliZoo, plan *sweep.Plan, f runFlags, result any,
	orig, adv []byte, linf255, wallSeconds float64, stdout io.Writer) error {
	e, err := entryFor(z, plan, f.title, result, orig, adv, linf255, wallSeconds)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.data, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	store, err := gallery.Open(ctx, filepath.Join(f.data, gallery.FileName))
	if err != nil {
		return err
	}
	defer store.Close()
	rec, err := store.Save(ctx, e)
	if err != nil {
		return fmt.Errorf("save to the gallery: %w", err)
	}
	fmt.Fprintf(stdout, "saved to the gallery: /g/%s (gibbon serve --data %s shows it); delete with /g/%s/delete?token=%s\n",
		rec.Slug, f.data, rec.Slug, rec.DeleteToken)
	return nil
}

// entryFor is a plan's result as a gallery entry, with the same provenance as a run:
// every model by name and file checksum, all parameters, the seed and the version.
func entryFor(z *cliZoo, plan *sweep.Plan, title string, result any, orig, adv []byte, linf255, wallSeconds float64) (*gallery.Entry, error) {
	e, err := server.SweepEntry(plan, result, linf255, math.Round(wallSeconds*1000), z.sha)
	if err != nil {
		return nil, err
	}
	e.Title, e.GibbonVersion, e.Original, e.Adversarial = title, server.Version(), orig, adv
	if e.Title == "" {
		e.Title = defaultTitle(plan.Settings)
		if r := []rune(e.Title); len(r) > gallery.MaxTitleRunes {
			e.Title = string(r[:gallery.MaxTitleRunes-1]) + "…"
		}
	}
	return e, nil
}

func defaultTitle(s sweep.Settings) string {
	switch s.Kind {
	case sweep.KindImage:
		return fmt.Sprintf("%s sweep of %s, ε %s", s.Attack, s.Image, s.Eps)
	case sweep.KindDataset:
		return fmt.Sprintf("%s robust accuracy on %d %s images, ε %s", s.Attack, s.N, s.Dataset, s.Eps)
	case sweep.KindCompete:
		return fmt.Sprintf("Competition of %d attacks and %d defences on %d images, ε from {%s}", len(s.Attacks), len(s.Defences), s.N, s.Eps)
	}
	return fmt.Sprintf("%s transfer at ε %s on %d images", s.Attack, s.Eps, s.N)
}

// printFlips is an image sweep's summary: the smallest ε that flips each defence.
func printFlips(w io.Writer, res *sweep.ImageResult, plan *sweep.Plan, frames string) {
	fmt.Fprintf(w, "true class %d", res.Label)
	if res.LabelName != "" && res.LabelName != strconv.Itoa(res.Label) {
		fmt.Fprintf(w, " (%s)", res.LabelName)
	}
	fmt.Fprintln(w, "; smallest ε that flips each defence:")
	for _, d := range res.Defences {
		at := "not flipped up to ε " + inference.EpsOn(plan.Eps[len(plan.Eps)-1], plan.Range).String()
		if d.FlipEps != nil {
			at = inference.EpsOn(float32(*d.FlipEps), plan.Range).String()
		}
		fmt.Fprintf(w, "  %s: %s\n", d.Name, at)
	}
	fmt.Fprintf(w, "%d ε values in %.2f s\n", len(res.Points), res.WallSeconds)
	if frames != "" {
		fmt.Fprintf(w, "wrote %d images to %s\n", len(res.Points), frames)
	}
}
