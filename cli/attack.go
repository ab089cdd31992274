package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/engine"
	"gibbon/inference/mnist"
	"gibbon/inference/sweep"
	"gibbon/inference/zoo"
	"gibbon/models"
)

type attackFlags struct {
	models, fuse, method, eps, alpha, loss, target string
	steps, restarts, queries, n, batch, threads    int
	targetClasses                                  int
	momentum, diProb, diMin, squareP               float64
	label                                          int
	seed                                           int64
	modelsDir, dataset, out, eval, defences, data  string
	noQuantize, noRandomStart, save                bool
	output                                         *outputFlags
}

func cmdAttack(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("attack", stderr,
		"Usage: gibbon attack --model M [flags] IMAGE -o out.png [--save]",
		"       gibbon attack --model M --dataset mnist-test --n 1000 [flags]",
		"Attacks the model(s), then reports success on every model (the others: transfer).",
		"An IMAGE run is the explorer's: planned, run and recorded by the same engine; --save keeps it in the gallery.")
	var f attackFlags
	fs.StringVar(&f.models, "model", "", "model(s) to attack, comma-separated for an ensemble")
	fs.StringVar(&f.fuse, "fuse", "logits", "dataset ensembles: average `logits` (one merged graph) or losses (an IMAGE run averages losses, as the explorer does)")
	fs.StringVar(&f.method, "attack", "pgd", "fgsm, bim (i-fgsm), pgd, mi-fgsm, di-fgsm, m-di2-fgsm, square, noise, apgd-ce, apgd-dlr, apgd-t, fab-t or autoattack")
	fs.StringVar(&f.eps, "eps", "0.3", "L∞ budget on the model's input range: 0.3, or 8/255")
	fs.StringVar(&f.alpha, "alpha", "", "step size, like --eps (default ε/steps; PGD 2.5ε/steps)")
	fs.IntVar(&f.steps, "steps", 0, "iterations of gradient attacks (default 10; PGD 40; APGD, FAB-T, AutoAttack 100)")
	fs.IntVar(&f.restarts, "restarts", 0, "PGD random restarts; APGD and FAB-T runs per target (default 1)")
	fs.IntVar(&f.targetClasses, "target-classes", 0, "APGD-T, FAB-T, AutoAttack aim at this many most likely wrong classes in turn (default 9)")
	fs.BoolVar(&f.noRandomStart, "no-random-start", false, "PGD: start at the clean image")
	fs.Float64Var(&f.momentum, "momentum", 0, "MI-FGSM/M-DI2-FGSM momentum μ (default 1)")
	fs.Float64Var(&f.diProb, "di-prob", 0, "DI-FGSM: probability of the resize-and-pad (default 0.5)")
	fs.Float64Var(&f.diMin, "di-min", 0, "DI-FGSM: smallest resize ratio (default 0.9)")
	fs.StringVar(&f.loss, "loss", "", "gradient attacks' loss: ce (default), margin (C&W), or dlr (apgd-dlr, apgd-t)")
	fs.StringVar(&f.target, "target", "", "targeted attack: a class index or label, or least-likely")
	fs.IntVar(&f.queries, "queries", 0, "square: query budget per image (default 1000; AutoAttack 5000); noise: draws (default 1)")
	fs.Float64Var(&f.squareP, "p", 0, "square: initial fraction of pixels per square (default 0.05; AutoAttack 0.8)")
	fs.BoolVar(&f.noQuantize, "no-quantize", false, "dataset: keep float values instead of 8-bit levels")
	fs.Int64Var(&f.seed, "seed", 0, "random seed (default: a new one, printed)")
	fs.StringVar(&f.modelsDir, "models", "", "folder with manifest.json and models (default: the built-in models)")
	fs.StringVar(&f.dataset, "dataset", "", "attack a data set instead of an image: mnist-test")
	fs.IntVar(&f.n, "n", 1000, "dataset: number of images (the first N)")
	fs.IntVar(&f.batch, "batch", 100, "dataset: images per batch")
	fs.IntVar(&f.label, "label", -1, "IMAGE: its true class; -1 takes the attacked model's prediction")
	fs.StringVar(&f.out, "o", "", "IMAGE: write the adversarial image (PNG) here")
	fs.StringVar(&f.eval, "eval", "all", "models to judge the result on: all, none, or a comma-separated list")
	fs.StringVar(&f.defences, "defences", "", "IMAGE: transform defences to watch too, MODEL+KIND:PARAM comma-separated (jpeg, bits, median, resize-pad)")
	fs.BoolVar(&f.save, "save", false, "IMAGE: save the run in the gallery (--data) and print its slug")
	fs.StringVar(&f.data, "data", "data", "IMAGE --save: Gibbon's data directory (the gallery is "+gallery.FileName+" inside)")
	f.output = addOutputFlags(fs, false)
	fs.IntVar(&f.threads, "threads", 1, "ONNX Runtime intra-op threads")
	rf := addRuntimeFlags(fs)
	// Flags may follow IMAGE (gibbon attack --model M IMAGE -o out.png).
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if f.models == "" {
		return usageError{"attack needs --model (see gibbon attack -h)"}
	}
	image := f.dataset == ""
	switch {
	case image && len(pos) != 1:
		return usageError{"attack needs one IMAGE, or --dataset mnist-test"}
	case !image && len(pos) != 0:
		return usageError{"give either IMAGE or --dataset, not both"}
	case !image && f.dataset != "mnist-test":
		return usageError{fmt.Sprintf("unknown dataset %q (the one Gibbon has is mnist-test)", f.dataset)}
	case !image && (f.out != "" || f.save || f.defences != ""):
		return usageError{"-o, --save and --defences go with one IMAGE, not with --dataset"}
	case image && flagGiven(fs, "queries") && strings.EqualFold(strings.ReplaceAll(f.method, "-", ""), "autoattack"):
		return usageError{"an IMAGE AutoAttack runs Square with the standard 5000 queries: --queries goes with --dataset"}
	case image && f.noQuantize:
		return usageError{"--no-quantize goes with --dataset: an IMAGE run keeps 8-bit images, as a PNG holds them"}
	case image && flagGiven(fs, "fuse") && f.fuse == "logits" && len(splitList(f.models)) > 1:
		return usageError{"an IMAGE run attacks an ensemble by averaging losses (as the explorer does): --fuse logits goes with --dataset"}
	case f.n < 1 || f.n > 10000:
		return usageError{"--n must be between 1 and 10000"}
	case f.batch < 1 || f.batch > 10000:
		return usageError{"--batch must be between 1 and 10000"}
	case f.threads < 1:
		return usageError{"--threads must be at least 1"}
	case f.fuse != "logits" && f.fuse != "losses":
		return usageError{"--fuse must be logits or losses"}
	}
	f.seed = seedFrom(fs, f.seed)
	cfg, err := f.config()
	if err != nil {
		return usageError{err.Error()}
	}

	src, srcName := fs_(f.modelsDir)
	man, err := readManifest(src, srcName)
	if err != nil {
		return err
	}
	surNames := splitList(f.models)
	entries := map[string]inference.ModelEntry{}
	var classifiers []string
	for _, e := range man.Models {
		if e.Task == inference.TaskClassifier {
			entries[e.Name] = e
			classifiers = append(classifiers, e.Name)
		}
	}
	if len(classifiers) == 0 {
		return fmt.Errorf("%s has no classifiers to attack", srcName)
	}
	for _, n := range surNames {
		if _, ok := entries[n]; !ok {
			return usageError{fmt.Sprintf("no classifier %q in %s (have: %s)", n, srcName, strings.Join(classifiers, ", "))}
		}
	}
	contract := entries[surNames[0]].Input
	for _, n := range surNames[1:] {
		if c := entries[n].Input; !c.SameTensor(contract) {
			return usageError{fmt.Sprintf("%s and %s take different inputs (%s vs %s): an ensemble needs one input form", surNames[0], n, contract.Describe(), c.Describe())}
		}
	}
	cfg.Range = contract.PixelRange()
	cfg.Layout = contract.TensorLayout()
	if err := cfg.Defaults().Validate(); err != nil {
		return usageError{err.Error()}
	}
	if err := resolveTarget(&cfg, f.target, entries[surNames[0]], len(entries[surNames[0]].Labels)); err != nil {
		return usageError{err.Error()}
	}
	fuse := f.fuse
	if image {
		fuse = "losses"
	}
	evalNames, err := f.evalModels(classifiers, surNames, fuse)
	if err != nil {
		return err
	}

	rt, err := rf.open(f.threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	// The process's zoo: each model read, checksummed and opened once, on first use.
	z := zoo.Open(rt, inference.ModelSource{Name: srcName, FS: src})
	defer z.Close()
	if image {
		return attackImage(ctx, z, cfg, surNames, evalNames, pos[0], f, stdout, stderr)
	}

	req := attack.Request{}
	var members []*attack.ONNXModel
	for _, n := range surNames {
		m, err := z.Get(ctx, n)
		if err != nil {
			return err
		}
		members = append(members, m.Net())
	}
	if len(members) > 1 && f.fuse == "logits" {
		ens, err := attack.NewEnsemble(ctx, rt, strings.Join(surNames, "+"), members)
		if err != nil {
			return err
		}
		defer ens.Close()
		req.Surrogates = []attack.Model{{Name: ens.Name(), Net: ens}}
	} else {
		for _, m := range members {
			req.Surrogates = append(req.Surrogates, attack.Model{Name: m.Name(), Net: m})
		}
	}
	for _, n := range evalNames {
		if !entries[n].Input.SameTensor(contract) {
			fmt.Fprintf(stderr, "not judging on %s: it takes %s, the attacked model %s\n", n, entries[n].Input.Describe(), contract.Describe())
			continue
		}
		m, err := z.Get(ctx, n)
		if err != nil {
			fmt.Fprintf(stderr, "not judging on %s: %v\n", n, err)
			continue
		}
		req.Others = append(req.Others, attack.Model{Name: n, Net: m.Net()})
	}
	return attackDataset(ctx, cfg, req, contract, f, stdout, stderr)
}

// config turns the flags into an attack configuration (range and layout come later).
func (f *attackFlags) config() (attack.Config, error) {
	m, err := attack.ParseMethod(f.method)
	if err != nil {
		return attack.Config{}, err
	}
	eps, err := inference.ParseEps(f.eps)
	if err != nil {
		return attack.Config{}, fmt.Errorf("--eps: %w", err)
	}
	cfg := attack.Config{Method: m, Eps: float32(eps), Steps: f.steps, Restarts: f.restarts, TargetClasses: f.targetClasses, NoRandomStart: f.noRandomStart,
		Momentum: float32(f.momentum), DiversityProb: float32(f.diProb), DiversityMin: float32(f.diMin),
		Loss: attack.Loss(strings.ToLower(f.loss)), Queries: f.queries, SquareP: float32(f.squareP),
		NoQuantize: f.noQuantize, Seed: f.seed}
	if f.alpha != "" {
		alpha, err := inference.ParseEps(f.alpha)
		if err != nil || alpha == 0 {
			return attack.Config{}, fmt.Errorf("--alpha %q: want a step size above 0, like 0.01 or 2/255", f.alpha)
		}
		cfg.Alpha = float32(alpha)
	}
	if f.steps < 0 || f.restarts < 0 || f.queries < 0 || f.targetClasses < 0 {
		return attack.Config{}, errors.New("--steps, --restarts, --queries and --target-classes must not be negative")
	}
	return cfg, nil
}

// evalModels lists the models to judge on besides the surrogates.
func (f *attackFlags) evalModels(classifiers, surrogates []string, fuse string) ([]string, error) {
	var names []string
	switch f.eval {
	case "none":
	case "all":
		names = classifiers
	default:
		names = splitList(f.eval)
		for _, n := range names {
			if !slices.Contains(classifiers, n) {
				return nil, usageError{fmt.Sprintf("--eval: no classifier %q (have: %s)", n, strings.Join(classifiers, ", "))}
			}
		}
	}
	var out []string
	for _, n := range names {
		// An ensemble of separate surrogates already reports each member.
		if fuse == "losses" || len(surrogates) == 1 {
			if slices.Contains(surrogates, n) {
				continue
			}
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// resolveTarget reads --target: a class index, a label, or least-likely.
func resolveTarget(cfg *attack.Config, s string, e inference.ModelEntry, classes int) error {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "":
		return nil
	case "least-likely", "ll", "leastlikely":
		cfg.Target = attack.LeastLikely
		return nil
	}
	cfg.Target = attack.TargetClass
	if k, err := strconv.Atoi(s); err == nil {
		if k < 0 || (classes > 0 && k >= classes) { // 0: unknown until the model loads (the attack checks then)
			return fmt.Errorf("--target %d: the model has classes 0..%d", k, classes-1)
		}
		cfg.TargetClass = k
		return nil
	}
	for i, l := range e.Labels {
		if strings.EqualFold(l, s) {
			cfg.TargetClass = i
			return nil
		}
	}
	return fmt.Errorf("--target %q is not a class index, a label of %s, or least-likely", s, e.Name)
}

func fs_(dir string) (fs.FS, string) {
	if dir == "" {
		return models.FS(), "the built-in models"
	}
	return os.DirFS(dir), dir
}

// readManifest reads the manifest of src, which name describes for errors.
func readManifest(src fs.FS, name string) (*inference.Manifest, error) {
	m, err := inference.ReadManifestFS(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// attackImage runs one image through the run engine, as the explorer does: the
// attacked models and every judging model watch, plus any --defences; the
// record is what --json prints and what --save stores.
func attackImage(ctx context.Context, z *zoo.Zoo, cfg attack.Config, surrogates, judges []string, path string, f attackFlags, stdout, stderr io.Writer) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// The plan keeps ε and the step size as written, in full precision (the record
	// states them in /255 of the range).
	eps, _ := inference.ParseEps(f.eps) // both read by config already
	alpha := 0.0
	if f.alpha != "" {
		alpha, _ = inference.ParseEps(f.alpha)
	}
	plan := engine.Plan{Attack: string(cfg.Method), Eps: eps, Alpha: alpha, Restarts: f.restarts, TargetClasses: f.targetClasses,
		Momentum: f.momentum, NoRandomStart: f.noRandomStart, DiversityProb: f.diProb, DiversityMin: f.diMin, SquareP: f.squareP,
		Target: string(cfg.Target), TargetClass: cfg.TargetClass, Seed: cfg.Seed, Models: surrogates,
		Image: engine.ImageRef{Source: "file", Name: filepath.Base(path)}}
	if cfg.Loss != attack.LossCE {
		plan.Loss = string(cfg.Loss)
	}
	if cfg.Method.BlackBox() {
		plan.Steps = f.queries
	} else if cfg.Method != attack.FGSM {
		plan.Steps = f.steps
	}
	if f.label >= 0 {
		label := f.label
		plan.Label = &label
	}
	for _, n := range append(append([]string(nil), surrogates...), judges...) {
		if !slices.ContainsFunc(plan.Defences, func(d engine.Defence) bool { return d.Model == n }) {
			plan.Defences = append(plan.Defences, engine.Defence{Model: n})
		}
	}
	for _, spec := range splitList(f.defences) {
		model, kind, param, err := sweep.ParseDefence(spec)
		if err != nil {
			return usageError{"--defences: " + err.Error()}
		}
		plan.Defences = append(plan.Defences, engine.Defence{Model: model, Transform: kind, Param: param})
	}
	// A classifier that cannot watch (another number of channels) is left out with a note.
	from, _ := z.Entry(surrogates[0])
	kept := plan.Defences[:0]
	for _, d := range plan.Defences {
		if e, ok := z.Entry(d.Model); ok && e.Input.Channels != from.Input.Channels {
			fmt.Fprintf(stderr, "not judging on %s: it takes %s, the attacked model %s\n", d.Model, e.Input.Describe(), from.Input.Describe())
			continue
		}
		kept = append(kept, d)
	}
	plan.Defences = kept
	p, err := engine.Prepare(ctx, z, plan, engine.Image{Ref: plan.Image, Data: data, Limits: inference.DecodeLimits{MaxPixels: maxImagePixels}}, engine.CLILimits)
	if err != nil {
		var ie *inference.ImageError
		if errors.As(err, &ie) {
			return fmt.Errorf("%s: %w", path, err)
		}
		return err
	}
	rec, err := p.Run(ctx, nil)
	if err != nil {
		return err
	}
	if f.out != "" {
		if err := writePNG(f.out, rec.Grid().Image(rec.Adv)); err != nil {
			return err
		}
	}
	e, err := rec.Entry()
	if err != nil {
		return err
	}
	slug := ""
	if f.save {
		if slug, err = saveEntry(ctx, f.data, e); err != nil {
			return err
		}
	}
	report := imageRunReport{Entry: e, Image: path, Output: f.out, Slug: slug}
	return f.output.write(stdout, report, nil, func(w io.Writer) { printAttackImage(w, rec, path, f.out, slug) })
}

// imageRunReport is an IMAGE run as --json prints it: the gallery record the
// engine made (its params hold the plan that replays it), and where things went.
type imageRunReport struct {
	Entry  *gallery.Entry `json:"entry"`
	Image  string         `json:"image"`
	Output string         `json:"output,omitempty"`
	Slug   string         `json:"slug,omitempty"`
}

// saveEntry stores a record in the gallery under dataDir and returns its slug.
func saveEntry(ctx context.Context, dataDir string, e *gallery.Entry) (string, error) {
	store, err := gallery.Open(ctx, filepath.Join(dataDir, gallery.FileName))
	if err != nil {
		return "", err
	}
	defer store.Close()
	rec, err := store.Save(ctx, e)
	if err != nil {
		return "", err
	}
	return rec.Slug, nil
}

// printAttackImage is one image's run for people: each defence's clean and
// adversarial prediction, then the distance and the cost.
func printAttackImage(w io.Writer, rec *engine.Record, path, outPNG, slug string) {
	c := rec.Config
	rng := rec.Grid().Contract().PixelRange()
	fmt.Fprintf(w, "%s on %s: ε %s, %s; seed %d\n", c.Method, strings.Join(rec.Plan.Models, "+"), inference.EpsOn(c.Eps, c.Range).String(), describeSteps(c), rec.Plan.Seed)
	fmt.Fprintf(w, "image %s (%s) → %s\n", path, strings.Join(rec.Crop, "; "), rec.Input)
	fmt.Fprintf(w, "true class %s", labelOf(rec.Labels, rec.Label))
	if rec.Target >= 0 {
		fmt.Fprintf(w, ", target class %s", labelOf(rec.Labels, rec.Target))
	}
	fmt.Fprintln(w)
	t := newTable("model", "clean", "adv", "success")
	for _, d := range rec.Defences {
		name := d.Name
		if slices.Contains(rec.Plan.Models, d.Name) {
			name += " *"
		}
		if len(d.Clean) == 0 || len(d.Adv) == 0 {
			t.add(name, "—", "—", "error: "+d.CleanErr+d.AdvErr)
			continue
		}
		success := d.Adv[0].Index != rec.Label
		if rec.Target >= 0 {
			success = d.Adv[0].Index == rec.Target
		}
		t.add(name, d.Clean[0].Label, d.Adv[0].Label, yesNo(success))
	}
	t.write(w)
	fmt.Fprintf(w, "* attacked. L∞ %d/255 (%s) after quantisation, L2 %.4g; %d steps in %.0f ms; runs on %s\n", rec.Linf,
		inference.EpsLevels(float64(rec.Linf), rng).String(), rec.L2, rec.StepsRun, rec.Timings["attack_ms"], providersText(rec.Providers))
	if rec.Note != "" {
		fmt.Fprintf(w, "note: %s\n", rec.Note)
	}
	if outPNG != "" {
		fmt.Fprintf(w, "wrote %s\n", outPNG)
	}
	if slug != "" {
		fmt.Fprintf(w, "saved as gallery entry %s (gibbon rerun %s replays it)\n", slug, slug)
	}
}

func labelOf(labels []string, k int) string {
	if k >= 0 && k < len(labels) {
		return labels[k]
	}
	return strconv.Itoa(k)
}

// providersText says where a run's passes ran: "cpu", or each model's pass.
func providersText(ps []engine.PassProvider) string {
	var eps []string
	for _, p := range ps {
		if !slices.Contains(eps, p.EP) {
			eps = append(eps, p.EP)
		}
	}
	if len(eps) == 1 {
		return eps[0]
	}
	var parts []string
	for _, p := range ps {
		parts = append(parts, p.Model+" "+p.Pass+": "+p.EP)
	}
	return strings.Join(parts, ", ")
}

func moreNames(ms []attack.Model) string {
	var s string
	for _, m := range ms[1:] {
		s += "+" + m.Name
	}
	return s
}

func describeSteps(c attack.Config) string {
	switch c.Method {
	case attack.Square:
		return fmt.Sprintf("%d queries, p %.3g", c.Queries, c.SquareP)
	case attack.Noise:
		return fmt.Sprintf("%d draws", c.Queries)
	case attack.APGDCE, attack.APGDDLR:
		return fmt.Sprintf("%d iterations × %d runs, %s loss", c.Steps, c.Restarts, c.Loss)
	case attack.APGDT, attack.FABT:
		return fmt.Sprintf("%d iterations × %d runs for each of %s target classes", c.Steps, c.Restarts, targetCount(c))
	case attack.AutoAttack:
		return fmt.Sprintf("standard: APGD-CE, APGD-T and FAB-T (%d iterations, %s target classes), Square (%d queries, p %.3g)", c.Steps, targetCount(c), c.Queries, c.SquareP)
	}
	s := fmt.Sprintf("%d steps of %s, %s loss", c.Steps, inference.EpsOn(c.Alpha, c.Range).String(), c.Loss)
	if c.Method == attack.PGD && c.Restarts > 1 {
		s += fmt.Sprintf(", %d restarts", c.Restarts)
	}
	return s
}

// targetCount is Config.TargetClasses as run (0 stands for the default, 9).
func targetCount(c attack.Config) string {
	if c.TargetClasses == 0 {
		return "9"
	}
	return strconv.Itoa(c.TargetClasses)
}

// printStages writes AutoAttack's stages over n images as a table, then its note.
func printStages(w io.Writer, stages []attack.Stage, n int, note string) {
	if len(stages) > 0 {
		t := newNumberTable("stage", "attacked", "fooled", "robust after", "fwd/img", "bwd/img", "time")
		for _, s := range stages {
			if s.Skipped != "" {
				t.add(s.Name, "—", "—", "—", "—", "—", "skipped: "+s.Skipped)
				continue
			}
			t.addf("%s\t%d\t%d\t%.2f%%\t%.1f\t%.1f\t%.1f s", s.Name, s.Attacked, s.Fooled, 100*s.RobustAccuracy,
				float64(s.Forward)/float64(n), float64(s.Backward)/float64(n), s.Wall.Seconds())
		}
		t.write(w)
	}
	if note != "" {
		fmt.Fprintln(w, note)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// attackReport is the JSON form of an attack's outcome.
type attackReport struct {
	Attack       attack.Config `json:"attack"`
	Eps          string        `json:"eps"`
	Image        string        `json:"image,omitempty"`
	Output       string        `json:"output,omitempty"`
	Dataset      string        `json:"dataset,omitempty"`
	N            int           `json:"n"`
	Seed         int64         `json:"seed"`
	Targets      []int         `json:"targets,omitempty"`
	Models       []modelReport `json:"models"`
	LinfMax      float32       `json:"linf_max"`
	LinfMax255   float64       `json:"linf_max_255"`
	MeanL2       float64       `json:"mean_l2"`
	OffGrid      int           `json:"off_grid_values"`
	Forward      float64       `json:"forward_passes_per_image"`
	Backward     float64       `json:"backward_passes_per_image"`
	Queries      float64       `json:"queries_per_image,omitempty"`
	WallSeconds  float64       `json:"wall_seconds"`
	ImagesPerSec float64       `json:"images_per_second"`
	// AutoAttack's stages, summed over batches, and its note.
	Stages []attack.Stage `json:"stages,omitempty"`
	Note   string         `json:"note,omitempty"`
}

type modelReport struct {
	Name          string  `json:"name"`
	Surrogate     bool    `json:"surrogate"`
	CleanPred     *int    `json:"clean_pred,omitempty"`
	AdvPred       *int    `json:"adv_pred,omitempty"`
	CleanAccuracy float64 `json:"clean_accuracy"`
	AdvAccuracy   float64 `json:"adv_accuracy"`
	SuccessRate   float64 `json:"success_rate"`
}

// tally accumulates results over batches.
type tally struct {
	n                int
	models           []modelReport
	clean, adv, succ []int
	linfMax          float32
	l2               float64
	offGrid          int
	fwd, bwd         int64
	queries          int64
	hasQueries       bool
	wall             time.Duration
	targets          []int
	stages           []attack.Stage
	note             string
}

func (t *tally) add(res *attack.Result) {
	if t.models == nil {
		for _, m := range res.Models {
			t.models = append(t.models, modelReport{Name: m.Name, Surrogate: m.Surrogate})
		}
		t.clean, t.adv, t.succ = make([]int, len(res.Models)), make([]int, len(res.Models)), make([]int, len(res.Models))
	}
	for k, m := range res.Models {
		for i := range m.Success {
			if m.Clean[i] == res.Labels[i] {
				t.clean[k]++
			}
			if m.Adv[i] == res.Labels[i] {
				t.adv[k]++
			}
			if m.Success[i] {
				t.succ[k]++
			}
		}
	}
	t.n += res.N()
	t.linfMax = max(t.linfMax, res.LinfMax)
	for _, v := range res.L2 {
		t.l2 += float64(v)
	}
	t.offGrid += res.OffGrid
	t.fwd += res.Forward
	t.bwd += res.Backward
	for _, q := range res.Queries {
		t.queries += int64(q)
		t.hasQueries = true
	}
	t.wall += res.Wall
	t.targets = append(t.targets, res.Targets...)
	if res.Stages != nil {
		t.stages = attack.AddStages(t.stages, t.n-res.N(), res.Stages, res.N())
	}
	t.note = res.Note
}

func (t *tally) report(cfg attack.Config) attackReport {
	r := attackReport{Attack: cfg, Eps: inference.EpsOn(cfg.Eps, cfg.Range).String(), N: t.n, Seed: cfg.Seed,
		LinfMax: t.linfMax, LinfMax255: float64(t.linfMax) / float64(cfg.Range[1]-cfg.Range[0]) * 255,
		MeanL2: t.l2 / float64(t.n), OffGrid: t.offGrid,
		Forward: float64(t.fwd) / float64(t.n), Backward: float64(t.bwd) / float64(t.n),
		WallSeconds: t.wall.Seconds(), ImagesPerSec: float64(t.n) / t.wall.Seconds()}
	if t.hasQueries {
		r.Queries = float64(t.queries) / float64(t.n)
	}
	r.Stages, r.Note = t.stages, t.note
	for k, m := range t.models {
		m.CleanAccuracy = float64(t.clean[k]) / float64(t.n)
		m.AdvAccuracy = float64(t.adv[k]) / float64(t.n)
		m.SuccessRate = float64(t.succ[k]) / float64(t.n)
		r.Models = append(r.Models, m)
	}
	return r
}

func attackDataset(ctx context.Context, cfg attack.Config, req attack.Request, contract inference.InputContract, f attackFlags, stdout, stderr io.Writer) error {
	if !contract.FitsMNIST() {
		return usageError{fmt.Sprintf("mnist-test holds 28×28 gray digits; the attacked model takes %s", contract.Describe())}
	}
	test, err := mnist.LoadTest(ctx)
	if err != nil {
		return err
	}
	set := test.Subset(f.n)
	var t tally
	bar := newBar(stderr, "attack", set.Len())
	for start := 0; start < set.Len(); start += f.batch {
		k := min(f.batch, set.Len()-start)
		x, labels, err := contract.MNISTTensor(set, start, k)
		if err != nil {
			bar.End()
			return err
		}
		c := cfg
		c.Seed = cfg.Seed + int64(start/f.batch)
		r := req
		r.Images, r.Labels = x, labels
		res, err := attack.Run(ctx, c, r, nil)
		if err != nil {
			bar.End()
			return err
		}
		t.add(res)
		bar.Update(start+k, "")
	}
	bar.End()
	rep := t.report(cfg.Defaults())
	rep.Dataset = f.dataset
	return f.output.write(stdout, rep, nil, func(w io.Writer) { printAttackDataset(w, rep, req) })
}

// printAttackDataset is a data set's attack for people: each model's accuracy
// before and after, and its success rate.
func printAttackDataset(w io.Writer, rep attackReport, req attack.Request) {
	c := rep.Attack
	fmt.Fprintf(w, "%s on %s: ε %s, %s; %d MNIST test images; seed %d\n", c.Method, req.Surrogates[0].Name+moreNames(req.Surrogates),
		rep.Eps, describeSteps(c), rep.N, rep.Seed)
	what := "success (prediction ≠ label)"
	if c.Target != attack.Untargeted {
		what = "success (prediction = target)"
	}
	t := newNumberTable("model", "clean acc", "adv acc", "success")
	for _, m := range rep.Models {
		name := m.Name
		if m.Surrogate {
			name += " *"
		} else {
			name += " (transfer)"
		}
		t.addf("%s\t%.1f%%\t%.1f%%\t%.1f%%", name, 100*m.CleanAccuracy, 100*m.AdvAccuracy, 100*m.SuccessRate)
	}
	t.write(w)
	fmt.Fprintf(w, "* attacked; %s\n", what)
	q := ""
	if rep.Queries > 0 {
		q = fmt.Sprintf(", %.1f queries", rep.Queries)
	}
	fmt.Fprintf(w, "L∞ ≤ %s after quantisation, mean L2 %.4g; per image %.1f forward + %.1f backward passes%s; %.1f s, %.1f images/s\n",
		inference.EpsOn(rep.LinfMax, c.Range).String(), rep.MeanL2, rep.Forward, rep.Backward, q, rep.WallSeconds, rep.ImagesPerSec)
	printStages(w, rep.Stages, rep.N, rep.Note)
}
