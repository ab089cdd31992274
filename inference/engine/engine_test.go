package engine_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"image"
	"image/png"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/inference/zoo"
	"gibbon/internal/testzoo"
	"gibbon/models"
)

// builtins is the built-in zoo, loaded once for the package's tests.
func builtins(t testing.TB) *zoo.Zoo { return testzoo.Builtin(t) }

func sample(t testing.TB, name string) engine.Image {
	t.Helper()
	data, err := fs.ReadFile(models.FS(), "samples/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Image{Ref: engine.ImageRef{Source: "sample", Name: name}, Data: data}
}

func pgdPlan() engine.Plan {
	return engine.Plan{Attack: "pgd", Eps: 0.2, Steps: 20, Seed: 7, Models: []string{"mnist-cnn-small"},
		Defences: []engine.Defence{{Model: "mnist-cnn-small"}, {Model: "mnist-mlp"}, {Model: "mnist-mlp", Transform: "jpeg", Param: 75},
			{Model: "mnist-cnn-robust", Transform: "resize-pad", Param: 90}}}
}

func run(t *testing.T, plan engine.Plan, img engine.Image) *engine.Record {
	t.Helper()
	ctx := context.Background()
	p, err := engine.Prepare(ctx, builtins(t), plan, img, engine.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := p.Run(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestRunRecordsWhatItComputed(t *testing.T) {
	ctx := context.Background()
	p, err := engine.Prepare(ctx, builtins(t), pgdPlan(), sample(t, "digit-7-0.png"), engine.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	if p.Label != 7 || p.EpsLevels != 51 || len(p.Defences) != 4 {
		t.Fatalf("label %d, ε levels %d, %d defences", p.Label, p.EpsLevels, len(p.Defences))
	}
	for _, w := range p.Defences {
		if len(w.Clean) != engine.TopK || w.Clean[0].Index != 7 {
			t.Fatalf("%s: clean verdict %v %q", w.Name, w.Clean, w.CleanErr)
		}
	}
	var frames []*engine.Frame
	rec, err := p.Run(ctx, func(f *engine.Frame) error { frames = append(frames, f); return nil })
	if err != nil {
		t.Fatal(err)
	}
	// PGD-20 reports its start, 20 steps and the final point: every one recorded.
	if len(frames) != len(rec.Steps) || len(frames) < 21 || !frames[len(frames)-1].Final {
		t.Fatalf("%d frames, %d recorded steps", len(frames), len(rec.Steps))
	}
	if rec.Linf > p.EpsLevels || rec.Linf == 0 || rec.L2 <= 0 {
		t.Fatalf("L∞ %d levels (ε %d), L2 %g", rec.Linf, p.EpsLevels, rec.L2)
	}
	if got := engine.LinfLevels(rec.Adv, rec.Clean); got != rec.Linf {
		t.Fatalf("recorded L∞ %d, images differ by %d", rec.Linf, got)
	}
	if !rec.Defences[0].Flipped() {
		t.Fatalf("PGD-20 at ε 0.2 did not flip the attacked model: %v", rec.Defences[0].Adv)
	}
	for i, d := range rec.Defences {
		if len(d.Adv) != engine.TopK {
			t.Fatalf("defence %s has no final verdict: %q", d.Name, d.AdvErr)
		}
		last := frames[len(frames)-1].Verdicts[i].Top[0]
		if d.Adv[0] != last {
			t.Fatalf("%s: final verdict %v, last frame %v", d.Name, d.Adv[0], last)
		}
	}
	for _, st := range rec.Steps {
		if len(st.Guesses) != 4 || st.Guesses[2].Defence != "mnist-mlp + JPEG q75" {
			t.Fatalf("step %d guesses %+v", st.Seq, st.Guesses)
		}
	}
	if !rec.Deterministic() || rec.Runtime != "ONNX Runtime "+inference.ORTVersion {
		t.Fatalf("providers %v, runtime %q", rec.Providers, rec.Runtime)
	}

	// The record is a valid gallery entry, stored as computed.
	store, err := gallery.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e, err := rec.Entry()
	if err != nil {
		t.Fatal(err)
	}
	receipt, err := store.Save(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Get(ctx, receipt.Slug)
	if err != nil {
		t.Fatal(err)
	}
	if got.Width != 28 || got.Height != 28 || len(got.Predictions) != 4 || got.Predictions[3].Transform != "resize-pad" {
		t.Fatalf("stored %dx%d with predictions %+v", got.Width, got.Height, got.Predictions)
	}
	if got.LInfMeasured == nil || *got.LInfMeasured != float64(rec.Linf) {
		t.Fatalf("measured L∞ %v, record %d", got.LInfMeasured, rec.Linf)
	}
	params, err := engine.ParamsOf(got)
	if err != nil || params.Plan.Image.SHA256 != got.OriginalSHA || params.Method.Steps != 20 {
		t.Fatalf("params %+v, %v (original %s)", params, err, got.OriginalSHA)
	}
}

func TestReplayIsBitForBitAndVerifyFindsAlterations(t *testing.T) {
	ctx := context.Background()
	z := builtins(t)
	plans := map[string]engine.Plan{
		"pgd with restarts":      func() engine.Plan { p := pgdPlan(); p.Restarts = 2; p.Steps = 8; return p }(),
		"mi-fgsm targeted":       {Attack: "mi-fgsm", Eps: 0.3, Steps: 10, Momentum: 0.8, Target: "class", TargetClass: 3, Seed: 3, Models: []string{"mnist-mlp"}, Defences: []engine.Defence{{Model: "mnist-mlp"}, {Model: "mnist-cnn-wide", Transform: "bits", Param: 1}}},
		"square":                 {Attack: "square", Eps: 0.3, Steps: 60, Seed: 11, Models: []string{"mnist-mlp"}, Defences: []engine.Defence{{Model: "mnist-mlp", Transform: "resize-pad", Param: 80}}},
		"di-fgsm margin":         {Attack: "m-di2-fgsm", Eps: 0.25, Steps: 10, Loss: "margin", Seed: 5, Models: []string{"mnist-mlp", "mnist-cnn-small"}, Defences: []engine.Defence{{Model: "mnist-resnet-small"}}},
		"attack network":         {Attack: "net:mnist-attack-net", Eps: 0.3, Seed: 1, Defences: []engine.Defence{{Model: "mnist-mlp"}, {Model: "mnist-cnn-small", Transform: "median", Param: 2}}},
		"apgd-dlr with restarts": {Attack: "apgd-dlr", Eps: 0.15, Steps: 12, Restarts: 2, Seed: 4, Models: []string{"mnist-cnn-robust"}, Defences: []engine.Defence{{Model: "mnist-cnn-robust"}, {Model: "mnist-mlp"}}},
		"autoattack":             {Attack: "autoattack", Eps: 0.3, Steps: 8, TargetClasses: 2, Seed: 6, Models: []string{"mnist-cnn-robust"}, Defences: []engine.Defence{{Model: "mnist-cnn-robust"}}},
		"through resize-pad (EOT)": {Attack: "pgd", Eps: 0.2, Steps: 8, Seed: 9, Models: []string{"mnist-mlp"}, Through: "mnist-mlp + random resize ≥90% + pad", EOTSamples: 3,
			Defences: []engine.Defence{{Model: "mnist-mlp"}, {Model: "mnist-mlp", Transform: "resize-pad", Param: 90}}},
	}
	store, err := gallery.Open(ctx, filepath.Join(t.TempDir(), "g.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for name, plan := range plans {
		t.Run(name, func(t *testing.T) {
			a := run(t, plan, sample(t, "digit-2-1.png"))
			b := run(t, plan, sample(t, "digit-2-1.png"))
			if !bytes.Equal(a.Adv, b.Adv) {
				t.Fatalf("two runs of one plan differ in %d values", countDiff(a.Adv, b.Adv))
			}
			e, err := a.Entry()
			if err != nil {
				t.Fatal(err)
			}
			rcpt, err := store.Save(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := store.Get(ctx, rcpt.Slug)
			if err != nil {
				t.Fatal(err)
			}
			orig, adv, err := store.Images(ctx, stored)
			if err != nil {
				t.Fatal(err)
			}
			v, err := engine.Verify(ctx, z, stored, orig, adv, engine.CLILimits)
			if err != nil {
				t.Fatal(err)
			}
			if !v.Reproduced {
				t.Fatalf("not reproduced: %s %v", v.Summary(), v.Differences)
			}
			// An altered adversarial image is caught, with how much it differs.
			altered := alter(t, adv, 5)
			v, err = engine.Verify(ctx, z, stored, orig, altered, engine.CLILimits)
			if err != nil {
				t.Fatal(err)
			}
			if v.Reproduced || v.Changed != 5 || v.MaxDiff == 0 || !strings.Contains(v.Summary(), "5 of 784 pixel values differ") {
				t.Fatalf("altered image: reproduced %v, %d changed (max %d): %s", v.Reproduced, v.Changed, v.MaxDiff, v.Summary())
			}
			// So is an altered verdict.
			stored.Predictions[0].Adversarial[0].Prob *= 0.5
			v, err = engine.Verify(ctx, z, stored, orig, adv, engine.CLILimits)
			if err != nil {
				t.Fatal(err)
			}
			if v.Reproduced || len(v.Differences) != 1 || !strings.Contains(v.Differences[0], "adversarial image: stored") {
				t.Fatalf("altered verdict: %v %v", v.Reproduced, v.Differences)
			}
		})
	}
}

// alter flips n pixels of a gray PNG by a few levels.
func alter(t *testing.T, data []byte, n int) []byte {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	g := image.NewGray(img.Bounds())
	for y := range g.Rect.Dy() {
		for x := range g.Rect.Dx() {
			g.Set(x, y, img.At(x, y))
		}
	}
	for i := range n {
		g.Pix[i*37] ^= 0x04
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, g); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func countDiff(a, b []uint8) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func TestStoppedRunReplaysToWhereItStopped(t *testing.T) {
	plan := pgdPlan()
	plan.Steps = 200
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := engine.Prepare(ctx, builtins(t), plan, sample(t, "digit-3-0.png"), engine.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	stoppedAt := 0
	rec, err := p.Run(ctx, func(f *engine.Frame) error {
		if f.Seq >= 57 && ctx.Err() == nil {
			stoppedAt = f.Seq + 1
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || rec == nil || !rec.Stopped || rec.Plan.StopAfter != stoppedAt {
		t.Fatalf("stop at %d: err %v, stopped %v, stop_after %d", stoppedAt, err, rec != nil && rec.Stopped, rec.Plan.StopAfter)
	}
	replayed := run(t, rec.Plan, sample(t, "digit-3-0.png"))
	if !bytes.Equal(replayed.Adv, rec.Adv) || !replayed.Stopped || replayed.StepsRun != stoppedAt {
		t.Fatalf("replay of the stopped plan: %d values differ, stopped %v after %d steps", countDiff(replayed.Adv, rec.Adv), replayed.Stopped, replayed.StepsRun)
	}
}

func TestLongRunsRecordBoundedSteps(t *testing.T) {
	plan := pgdPlan()
	plan.Steps, plan.Defences = 999, plan.Defences[:1]
	rec := run(t, plan, sample(t, "digit-1-0.png"))
	if n := len(rec.Steps); n > engine.MaxRecordedSteps+1 || n < engine.MaxRecordedSteps/2 {
		t.Fatalf("%d recorded steps for PGD-999", n)
	}
	if rec.StepsRun != 1000 {
		t.Fatalf("steps run %d, want 1000 (the start and 999 steps)", rec.StepsRun)
	}
}

// AutoAttack's frames say which of its attacks is running, in the standard order,
// and its record stays within the bound however many attacks it chains.
func TestAutoAttackFramesNameTheirStage(t *testing.T) {
	ctx := context.Background()
	plan := engine.Plan{Attack: "autoattack", Eps: 0.1, Steps: 10, TargetClasses: 2, Seed: 3,
		Models: []string{"mnist-cnn-robust"}, Defences: []engine.Defence{{Model: "mnist-cnn-robust"}}}
	p, err := engine.Prepare(ctx, builtins(t), plan, sample(t, "digit-7-0.png"), engine.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	rec, err := p.Run(ctx, func(f *engine.Frame) error {
		if !f.Final && (len(stages) == 0 || stages[len(stages)-1] != f.Stage) {
			stages = append(stages, f.Stage)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	order := map[string]int{"apgd-ce": 0, "apgd-t": 1, "fab-t": 2, "square": 3}
	if len(stages) == 0 || stages[0] != "apgd-ce" {
		t.Fatalf("stages %v: AutoAttack starts with APGD-CE", stages)
	}
	for i, s := range stages {
		if _, ok := order[s]; !ok || (i > 0 && order[s] <= order[stages[i-1]]) {
			t.Fatalf("stages %v out of AutoAttack's order", stages)
		}
	}
	if n := len(rec.Steps); n > engine.MaxRecordedSteps+1 {
		t.Fatalf("%d recorded steps", n)
	}
	// ε 0.1 is well inside what the robust model holds: every stage runs.
	if len(stages) != 4 {
		t.Fatalf("stages %v: the robust model should hold ε 0.1 through all four", stages)
	}
}

func TestPlansThatCannotRun(t *testing.T) {
	z := builtins(t)
	img := sample(t, "digit-7-0.png")
	cases := []struct {
		name string
		edit func(p *engine.Plan)
		want string
	}{
		{"unknown attack", func(p *engine.Plan) { p.Attack = "magic" }, `Unknown attack "magic"`},
		{"eps zero", func(p *engine.Plan) { p.Eps = 0 }, "ε must be a positive number"},
		{"eps over range", func(p *engine.Plan) { p.Eps = 2 }, "exceeds the models' input range"},
		{"eps under a level", func(p *engine.Plan) { p.Eps = 0.001 }, "less than one 8-bit level"},
		{"too many steps", func(p *engine.Plan) { p.Steps = 100001 }, "Steps must be between 1 and 100000"},
		{"restarts for fgsm", func(p *engine.Plan) { p.Attack, p.Restarts = "fgsm", 3 }, "Only PGD, APGD and FAB-T restart"},
		{"dlr for pgd", func(p *engine.Plan) { p.Loss = "dlr" }, "DLR loss is APGD-DLR's and APGD-T's"},
		{"ce for apgd-dlr", func(p *engine.Plan) { p.Attack, p.Loss = "apgd-dlr", "ce" }, "apgd-dlr climbs the DLR loss"},
		{"step size for apgd", func(p *engine.Plan) { p.Attack, p.Alpha = "apgd-ce", 0.01 }, "sets its own step size"},
		{"target for apgd-t", func(p *engine.Plan) { p.Attack, p.Target, p.TargetClass = "apgd-t", "class", 3 }, "picks its own targets"},
		{"target classes for pgd", func(p *engine.Plan) { p.TargetClasses = 3 }, "Only APGD-T, FAB-T and AutoAttack aim at several"},
		{"momentum for pgd", func(p *engine.Plan) { p.Momentum = 0.5 }, "Only MI-FGSM and M-DI²-FGSM take a momentum"},
		{"loss for square", func(p *engine.Plan) { p.Attack, p.Loss = "square", "margin" }, "takes no loss"},
		{"unknown loss", func(p *engine.Plan) { p.Loss = "hinge" }, `Unknown loss "hinge"`},
		{"target out of range", func(p *engine.Plan) { p.Target, p.TargetClass = "class", 10 }, "Target class 10 does not exist"},
		{"unknown model", func(p *engine.Plan) { p.Models = []string{"ghost"} }, `no classifier called "ghost" to attack`},
		{"network as model", func(p *engine.Plan) { p.Models = []string{"mnist-attack-net"} }, "mnist-attack-net is an attack network, not a classifier to attack"},
		{"no defences", func(p *engine.Plan) { p.Defences = nil }, "Pick at least one defence"},
		{"defence twice", func(p *engine.Plan) { p.Defences = append(p.Defences, p.Defences[2]) }, "listed twice"},
		{"bad transform", func(p *engine.Plan) { p.Defences[0].Transform = "blur" }, `Unknown defence "blur"`},
		{"bad param", func(p *engine.Plan) { p.Defences[0].Transform, p.Defences[0].Param = "jpeg", 0 }, "quality must be between 1 and 100"},
		{"network with steps", func(p *engine.Plan) { p.Attack, p.Models = "net:mnist-attack-net", nil }, "takes no steps"},
		{"network off its heads", func(p *engine.Plan) {
			p.Attack, p.Models, p.Steps, p.Eps = "net:mnist-attack-net", nil, 0, 0.25
		}, "was trained for ε 0.1 (25.5/255), 0.2 (51/255), 0.3 (76.5/255): choose one"},
		{"true class out of range", func(p *engine.Plan) { l := 12; p.Label = &l }, "true class must be between 0 and 9"},
		{"through an unwatched defence", func(p *engine.Plan) { p.Through = "mnist-mlp + median 3×3" }, "no watched defence"},
		{"through no transform", func(p *engine.Plan) { p.Through = "mnist-mlp" }, "no input transformation"},
		{"through another model", func(p *engine.Plan) { p.Through = "mnist-mlp + JPEG q75" }, "make it the one attacked model"},
		{"EOT samples out of range", func(p *engine.Plan) {
			p.Models, p.Through, p.EOTSamples = []string{"mnist-mlp"}, "mnist-mlp + JPEG q75", 101
		}, "EOT samples must be between 1 and 100"},
		{"EOT samples without through", func(p *engine.Plan) { p.EOTSamples = 5 }, "go with attacking through"},
		{"network through", func(p *engine.Plan) {
			p.Attack, p.Models, p.Steps, p.Through = "net:mnist-attack-net", nil, 0, "mnist-mlp + JPEG q75"
		}, "cannot attack through a defence"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := pgdPlan()
			tc.edit(&plan)
			_, err := engine.Prepare(context.Background(), z, plan, img, engine.CLILimits)
			var ie *engine.InvalidError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want an InvalidError saying %q", err, tc.want)
			}
		})
	}
	// Images: none, not an image, and a stored one of the wrong size.
	for _, bad := range []engine.Image{{}, {Data: []byte("GIF89a junk")}, {Data: gallerytestPNG(t, 30, 30), Exact: true}} {
		if _, err := engine.Prepare(context.Background(), z, pgdPlan(), bad, engine.CLILimits); err == nil {
			t.Fatalf("image %q… accepted", bad.Data[:min(8, len(bad.Data))])
		}
	}
}

func gallerytestPNG(t *testing.T, w, h int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A run's start, frames and record are data only: they travel (gob, as a queue
// worker sends them) and a record rebuilt on the other side makes the same entry.
func TestStartFramesAndRecordTravel(t *testing.T) {
	ctx := context.Background()
	plan := pgdPlan()
	plan.Steps = 5
	p, err := engine.Prepare(ctx, builtins(t), plan, sample(t, "digit-4-0.png"), engine.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	var start *engine.Start
	var frames []*engine.Frame
	rec, err := p.Execute(ctx, 0, engine.Events{
		Started: func(s *engine.Start) error { start = s; return nil },
		Frame:   func(f *engine.Frame) error { frames = append(frames, f); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	travel := func(v, out any) {
		t.Helper()
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(v); err != nil {
			t.Fatal(err)
		}
		if err := gob.NewDecoder(&buf).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	var s2 engine.Start
	travel(start, &s2)
	if s2.Label != start.Label || !bytes.Equal(s2.Clean.PNG, start.Clean.PNG) || len(s2.Defences) != 4 || s2.Defences[3].Clean[0] != start.Defences[3].Clean[0] {
		t.Fatalf("start changed on the way: %+v", s2)
	}
	var f2 engine.Frame
	travel(frames[len(frames)-1], &f2)
	if !bytes.Equal(f2.Adv, rec.Adv) || !f2.Final || f2.Verdicts[1].Top[0] != frames[len(frames)-1].Verdicts[1].Top[0] {
		t.Fatalf("final frame changed on the way: %+v", f2)
	}
	var r2 engine.Record
	travel(rec, &r2)
	a, err := rec.Entry()
	if err != nil {
		t.Fatal(err)
	}
	b, err := r2.Entry()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Adversarial, b.Adversarial) || !bytes.Equal(a.Params, b.Params) || !reflect.DeepEqual(a.Steps, b.Steps) || !reflect.DeepEqual(a.Predictions, b.Predictions) {
		t.Fatal("the record made another entry after travelling")
	}
}

// Attacking through a transform defence (BPDA through 1-bit reduction) flips it
// on more digits than attacking the bare model and hoping it transfers.
func TestAttackThroughADefenceBeatsAttackingAroundIt(t *testing.T) {
	plain := engine.Plan{Attack: "pgd", Eps: 0.3, Steps: 20, Seed: 4, Models: []string{"mnist-mlp"},
		Defences: []engine.Defence{{Model: "mnist-mlp", Transform: "bits", Param: 1}}}
	through := plain
	through.Through = "mnist-mlp + 1-bit"
	flips := map[string]int{}
	for _, digit := range []string{"digit-0-0.png", "digit-1-0.png", "digit-2-0.png", "digit-3-0.png", "digit-4-0.png",
		"digit-5-0.png", "digit-6-0.png", "digit-7-0.png", "digit-8-0.png", "digit-9-0.png"} {
		for name, plan := range map[string]engine.Plan{"around": plain, "through": through} {
			if rec := run(t, plan, sample(t, digit)); rec.Defences[0].Flipped() {
				flips[name]++
			}
		}
	}
	if flips["through"] <= flips["around"] {
		t.Fatalf("1-bit flipped on %d digits attacked through it, %d attacked around it", flips["through"], flips["around"])
	}
	t.Logf("1-bit flipped: %d of 10 through, %d around", flips["through"], flips["around"])
}
