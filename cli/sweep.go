package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/defense"
	"gibbon/inference/engine"
	"gibbon/inference/mnist"
	"gibbon/inference/sweep"
	"gibbon/inference/zoo"
)

// runFlags are the flags sweep, compete and transfer share.
type runFlags struct {
	modelsDir, eps, dataset, data, title string
	defences                             string
	n, batch, steps, threads             int
	seed                                 int64
	save                                 bool
	adaptive                             bool // sweep and compete
	eotSamples                           int
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
	if kind != sweep.KindTransfer {
		fs.BoolVar(&f.adaptive, "adaptive", false, "also score every transform defence adaptively, attacked through its transform (BPDA, EOT); results label which is which")
		fs.IntVar(&f.eotSamples, "eot-samples", 0, fmt.Sprintf("with --adaptive: random draws each gradient through a random transform averages, 1 to %d (default %d)", defense.MaxSamples, defense.DefaultSamples))
	}
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
		N: f.n, Batch: f.batch, Seed: seedFrom(fs, f.seed), Label: -1, Adaptive: f.adaptive, EOTSamples: f.eotSamples}
}

// checkEOT refuses --eot-samples outside 1…100; given as 0 too (left out, it takes
// the default).
func (f *runFlags) checkEOT(fs *flag.FlagSet) error {
	given := false
	fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == "eot-samples" })
	if err := defense.CheckSamples(f.eotSamples); given && err != nil {
		return usageError{"--eot-samples: " + err.Error()}
	}
	return nil
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
	return f.checkEOT(fs)
}

// execute runs a data set plan with a progress bar, as the pages run it (the one
// executor), then reports it.
func (f *runFlags) execute(ctx context.Context, plan *sweep.Plan, label string, table func(io.Writer, any), stdout, stderr io.Writer) error {
	set, err := mnist.LoadTest(ctx)
	if err != nil {
		return err
	}
	bar := newBar(stderr, label, plan.Settings.N)
	o, err := sweep.Execute(ctx, plan, sweep.Input{Set: set}, sweep.Events{
		Progress: func(done int, _ any) error { bar.Update(done, ""); return nil },
	})
	bar.End()
	if err != nil {
		return err
	}
	return f.report(ctx, plan, o, func(w io.Writer) { table(w, o.Result) }, stdout)
}

// report writes a run's result: its CSV where --csv says, then JSON or the table
// (unless the CSV went to stdout), and saves it to the gallery on --save.
func (f *runFlags) report(ctx context.Context, plan *sweep.Plan, o *sweep.Outcome, table func(io.Writer), stdout io.Writer) error {
	if err := f.out.write(stdout, o.Result, o.WriteCSV, table); err != nil {
		return err
	}
	if f.save {
		return saveRun(ctx, plan, *f, o, stdout)
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
	if err := f.checkEOT(fs); err != nil {
		return err
	}
	s := f.settings(fs, sweep.KindDataset)
	s.Attack, s.Models = *method, splitList(*model)
	if f.dataset == "" {
		s.Kind, s.Image, s.Label = sweep.KindImage, filepath.Base(pos[0]), *label
	}
	plan, closeModels, err := openPlan(ctx, f, s, stderr)
	if err != nil {
		return err
	}
	defer closeModels()
	if s.Kind == sweep.KindImage {
		return sweepImage(ctx, plan, pos[0], *frames, f, stdout)
	}
	return f.execute(ctx, plan, "sweep", func(w io.Writer, r any) { printDatasetTable(w, r.(*sweep.DatasetResult), plan) }, stdout, stderr)
}

// openPlan opens ONNX Runtime and the models (the process's zoo: each loaded
// once, on first use) and plans s. The returned function closes them.
func openPlan(ctx context.Context, f runFlags, s sweep.Settings, stderr io.Writer) (*sweep.Plan, func(), error) {
	src, srcName := fs_(f.modelsDir)
	if _, err := readManifest(src, srcName); err != nil {
		return nil, nil, err
	}
	rt, err := f.rt.open(f.threads)
	if err != nil {
		return nil, nil, err
	}
	z := zoo.Open(rt, inference.ModelSource{Name: srcName, FS: src})
	closeModels := func() { z.Close(); rt.Close() }
	plan, err := s.Plan(ctx, sweep.FromZoo(z), sweep.CLILimits)
	if err != nil {
		closeModels()
		var p zoo.Problem
		if errors.As(err, &p) {
			return nil, nil, err // a model that did not load, not a mistake in the command line
		}
		return nil, nil, usageError{err.Error()}
	}
	for _, sk := range plan.Skipped {
		fmt.Fprintf(stderr, "not a defence: %s\n", sk)
	}
	return plan, closeModels, nil
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
	printScoring(w, len(res.Defences), func(d int) (string, sweep.Scoring) { return res.Defences[d].Name, res.Defences[d].Scoring })
	fmt.Fprintf(w, "%d images × %d ε in %.1f s: %.1f images/s, %.1f image·ε/s\n", res.N, len(res.Eps), res.WallSeconds,
		res.ImagesPerSecond, res.ImagesPerSecond*float64(len(res.Eps)))
}

// printScoring says how each of n defences' adaptive twins was attacked, then each
// caveat once.
func printScoring(w io.Writer, n int, defence func(int) (string, sweep.Scoring)) {
	var caveats []string
	for d := range n {
		name, s := defence(d)
		if s.Mode == sweep.Adaptive {
			fmt.Fprintf(w, "%s: %s\n", name, s.Through)
		}
		if s.Caveat != "" && !slices.Contains(caveats, s.Caveat) {
			caveats = append(caveats, s.Caveat)
		}
	}
	for _, c := range caveats {
		fmt.Fprintln(w, "note: "+c)
	}
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

func sweepImage(ctx context.Context, plan *sweep.Plan, path, frames string, f runFlags, stdout io.Writer) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	clean, err := engine.LoadImage(engine.Image{Data: data}, plan.Contract)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if frames != "" {
		if err := os.MkdirAll(frames, 0o755); err != nil {
			return err
		}
	}
	s := plan.Settings
	if len(plan.Labels) > 0 && s.Label >= len(plan.Labels) {
		return usageError{fmt.Sprintf("--label %d: the models have classes 0..%d", s.Label, len(plan.Labels)-1)}
	}
	g := engine.NewGrid(plan.Contract)
	table := f.out.text()
	header := false
	o, err := sweep.Execute(ctx, plan, sweep.Input{Image: g.Tensor(clean.Levels)}, sweep.Events{Point: func(p sweep.Point) error {
		if frames != "" {
			name := fmt.Sprintf("eps-%02d-%s.png", p.Index, strconv.FormatFloat(p.Eps, 'f', -1, 64))
			if err := writePNG(filepath.Join(frames, name), g.Image(g.Quantize(p.Adv.Data))); err != nil {
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
	}})
	if err != nil {
		return err
	}
	return f.report(ctx, plan, o, func(w io.Writer) { printFlips(w, o.Result.(*sweep.ImageResult), plan, frames) }, stdout)
}

// saveRun stores a sweep or matrix in the gallery and prints its permalink.
func saveRun(ctx context.Context, plan *sweep.Plan, f runFlags, o *sweep.Outcome, stdout io.Writer) error {
	if o.Entry == nil {
		return fmt.Errorf("the run cannot be saved: %s", o.NoSave)
	}
	e := *o.Entry
	e.Title = f.title
	if e.Title == "" {
		e.Title = defaultTitle(plan.Settings)
		if r := []rune(e.Title); len(r) > gallery.MaxTitleRunes {
			e.Title = string(r[:gallery.MaxTitleRunes-1]) + "…"
		}
	}
	if err := os.MkdirAll(f.data, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	store, err := gallery.Open(ctx, filepath.Join(f.data, gallery.FileName))
	if err != nil {
		return err
	}
	defer store.Close()
	rec, err := store.Save(ctx, &e)
	if err != nil {
		return fmt.Errorf("save to the gallery: %w", err)
	}
	fmt.Fprintf(stdout, "saved to the gallery: /g/%s (gibbon serve --data %s shows it); delete with /g/%s/delete?token=%s\n",
		rec.Slug, f.data, rec.Slug, rec.DeleteToken)
	return nil
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
	printScoring(w, len(res.Defences), func(d int) (string, sweep.Scoring) { return res.Defences[d].Name, res.Defences[d].Scoring })
	fmt.Fprintf(w, "%d ε values in %.2f s\n", len(res.Points), res.WallSeconds)
	if frames != "" {
		fmt.Fprintf(w, "wrote %d images to %s\n", len(res.Points), frames)
	}
}
