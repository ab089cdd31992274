package server

import (
	"context"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
	"gibbon/models"
)

// builtinClassifiers are the MNIST models embedded by package models.
var builtinClassifiers = []string{"mnist-mlp", "mnist-cnn-small", "mnist-cnn-wide", "mnist-resnet-small", "mnist-cnn-robust"}

// builtinAttackNets are the embedded attack networks; the transfer page makes each a source.
var builtinAttackNets = []string{"mnist-attack-net"}

// newBuiltinFixture serves the app over the built-in models and samples, wired as
// `gibbon serve` wires them (registry, attack nets and gallery), with no user
// models directory.
func newBuiltinFixture(t *testing.T) *fixture {
	t.Helper()
	return newBuiltinFixtureWith(t, DefaultConfig(), DefaultAttackConfig())
}

// newBuiltinFixtureWith is newBuiltinFixture with other limits (the load benchmark's).
func newBuiltinFixtureWith(t testing.TB, cfg Config, acfg AttackConfig) *fixture {
	t.Helper()
	rt := testrt.Open(t)
	src := inference.ModelSource{Name: "built-in", FS: models.FS()}
	reg, err := zoo.Load(context.Background(), rt, src)
	if err != nil {
		t.Fatal(err)
	}
	if p := reg.Problems(); len(p) > 0 {
		t.Fatalf("built-in models did not load: %v", p)
	}
	var names []string
	for _, m := range reg.Classifiers() {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != strings.Join(builtinClassifiers, ",") {
		t.Fatalf("built-in classifiers %v, want %v", names, builtinClassifiers)
	}
	samples, err := fs.Sub(models.FS(), "samples")
	if err != nil {
		t.Fatal(err)
	}
	store, err := gallery.Open(context.Background(), filepath.Join(t.TempDir(), gallery.FileName))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := New(Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Models: reg,
		Samples: []fs.FS{samples}, Gallery: store, Attack: AttackDeps{Config: acfg, Enabled: true},
		// The catalog as gibbon serve --allow-pull lists it, so the page audits see its
		// table and Pull buttons (nothing is pulled).
		Pull: PullDeps{Allowed: true, Catalog: catalog.Default(), Dir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { store.Close() })
	t.Cleanup(reg.Close)
	t.Cleanup(func() { // websockets are hijacked: wait for the sessions before closing what they use
		for deadline := time.Now().Add(10 * time.Second); srv.explorer.sessions.Load() > 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Cleanup(ts.Close)
	return &fixture{srv: srv, ts: ts, reg: reg, logs: logs, store: store}
}

// saveScreenshot writes a full-page screenshot as docs/screenshots/<name> when
// GIBBON_UPDATE_SCREENSHOT=1, else to a temp dir, so the capture runs either way.
func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), name)
	if os.Getenv(screenshotEnv) == "1" {
		out = filepath.Join("..", "docs", "screenshots", name)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))
}

// TestAttackBuiltinBrowser runs PGD at ε 0.3 (76/255) on the first sample seven
// against the built-in mnist-cnn-small in headless Chromium, watched by every
// built-in classifier and by 1-bit depth reduction in front of mnist-cnn-small:
// the attacked model's label flips, the adversarially trained mnist-cnn-robust
// keeps its label. With GIBBON_UPDATE_SCREENSHOT=1 it retakes
// docs/screenshots/attack.png, the README's picture of the explorer.
func TestAttackBuiltinBrowser(t *testing.T) {
	f := newBuiltinFixture(t)
	ctx, exceptions := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/attack"), chromedp.WaitVisible(`#ax-start`)); err != nil {
		t.Fatal(err)
	}
	set := func(id, value string) {
		t.Helper()
		eval[any](t, ctx, `(() => { const e = document.getElementById("`+id+`"); e.value = "`+value+`";
			e.dispatchEvent(new Event("input")); e.dispatchEvent(new Event("change")); return 0; })()`)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="attack-sample"][data-label="7"]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the sample chosen", `document.getElementById("ax-source-label").textContent === "Sample digit 7"`)
	set("ax-attack", "pgd")
	set("ax-eps", "76")
	if got := eval[string](t, ctx, `document.getElementById("ax-eps-out").textContent`); got != "76/255 = 0.298" {
		t.Errorf("ε label %q", got)
	}
	set("ax-steps", "30")
	// Attack mnist-cnn-small alone; every classifier watches (the default).
	eval[any](t, ctx, `(() => { document.querySelectorAll('input[name="surrogate"]').forEach(b => {
		if (b.checked !== (b.value === "mnist-cnn-small")) b.click(); }); return 0; })()`)
	if s := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('input[name="surrogate"]:checked')).map(b => b.value)`); strings.Join(s, ",") != "mnist-cnn-small" {
		t.Fatalf("attacked models %v", s)
	}
	if w := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('input[name="watch"]:checked:not(:disabled)')).map(b => b.value)`); strings.Join(w, ",") != strings.Join(builtinClassifiers, ",") {
		t.Fatalf("watched classifiers %v, want all of %v", w, builtinClassifiers)
	}
	// One input transformation: 1-bit depth reduction (feature squeezing) in front of the attacked model.
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="transform-bits"]`)); err != nil {
		t.Fatal(err)
	}
	eval[any](t, ctx, `(() => { document.querySelector('[data-testid="transform-param-bits"]').value = "1";
		const m = document.querySelector('[data-testid="transform-model-bits"]'); m.value = "mnist-cnn-small";
		m.dispatchEvent(new Event("change")); return 0; })()`)

	if err := chromedp.Do(ctx, chromedp.Click(`#ax-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the run to finish", `document.getElementById("explorer").dataset.state === "done"`)
	status := eval[string](t, ctx, `document.getElementById("ax-status").textContent`)
	if !strings.HasPrefix(status, "Done: ") {
		t.Fatalf("status %q", status)
	}
	names := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('[data-testid="defence"]')).map(d => d.dataset.name)`)
	if want := strings.Join(builtinClassifiers, ",") + ",mnist-cnn-small + 1-bit"; strings.Join(names, ",") != want {
		t.Fatalf("defences %v, want %s", names, want)
	}
	card := func(name string) string {
		return `document.querySelector('[data-testid="defence"][data-name="` + name + `"]')`
	}
	for _, name := range names {
		t.Logf("%s: %s", name, strings.Join(strings.Fields(eval[string](t, ctx, card(name)+`.querySelector('[data-testid="defence-flip"], [data-testid="defence-held"]').textContent`)), " "))
	}
	attacked := card("mnist-cnn-small")
	if clean := eval[string](t, ctx, attacked+`.querySelector('[data-testid="defence-clean"]').textContent`); !strings.Contains(clean, "7") {
		t.Errorf("mnist-cnn-small's clean verdict %q, want 7", clean)
	}
	if f := eval[string](t, ctx, attacked+`.dataset.flipped`); f != "true" {
		t.Fatalf("PGD at ε 76/255 did not flip mnist-cnn-small: %s", eval[string](t, ctx, attacked+`.innerText`))
	}
	if flip := eval[string](t, ctx, attacked+`.querySelector('[data-testid="defence-flip"]').textContent`); !strings.HasPrefix(flip, "Label flipped: 7 → ") || strings.HasSuffix(flip, "→ 7") {
		t.Errorf("flip text %q", flip)
	}
	robust := card("mnist-cnn-robust")
	if f := eval[string](t, ctx, robust+`.dataset.flipped`); f != "false" {
		t.Errorf("the adversarially trained mnist-cnn-robust flipped: %s", eval[string](t, ctx, robust+`.innerText`))
	}
	if held := eval[string](t, ctx, robust+`.querySelector('[data-testid="defence-held"]')?.textContent ?? ""`); held != "Still 7" {
		t.Errorf("mnist-cnn-robust: %q, want Still 7", held)
	}
	if !eval[bool](t, ctx, robust+`.textContent.includes("adversarially trained")`) {
		t.Error("mnist-cnn-robust's card lacks its badge")
	}
	t.Logf("browser: %s", status)

	eval[any](t, ctx, `(window.scrollTo(0, 0), 0)`)                                               // the run bar is sticky: take the page from its top
	if err := chromedp.Do(ctx, chromedp.MouseEvent(chromedp.MouseMoved, 1390, 990)); err != nil { // no hover highlight
		t.Fatal(err)
	}
	saveScreenshot(t, ctx, "attack.png")
	if v := eval[[]string](t, ctx, `window.__csp`); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}

// TestSweepBuiltinBrowser takes the README's pictures of the sweep, competition
// and transfer pages over the built-in models: an ε sweep of the first sample
// seven against mnist-cnn-small (which flips, while the chart draws every
// defence), a small competition of noise, FGSM and PGD against every built-in
// classifier and input transformations, and the 5×5 transfer matrix. With
// GIBBON_UPDATE_SCREENSHOT=1 it retakes docs/screenshots/sweep.png, compete.png
// and transfer.png.
func TestSweepBuiltinBrowser(t *testing.T) {
	f := newBuiltinFixture(t)
	ctx, exceptions := browser(t)
	set := func(id, value string) {
		t.Helper()
		eval[any](t, ctx, `(() => { const e = document.getElementById("`+id+`"); e.value = "`+value+`";
			e.dispatchEvent(new Event("input")); e.dispatchEvent(new Event("change")); return 0; })()`)
	}
	// The transformations' rows stand in front of mnist-cnn-small, the attacked model.
	frontOfSmall := `(() => { document.querySelectorAll('.ax-transform select[data-role="model"]').forEach(s => {
		s.value = "mnist-cnn-small"; s.dispatchEvent(new Event("change")); }); return 0; })()`

	// The ε sweep of one image.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/sweep"), chromedp.WaitVisible(`#sw-start`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="sweep-sample"][data-label="7"]`)); err != nil {
		t.Fatal(err)
	}
	set("sw-model", "mnist-cnn-small")
	set("sw-eps", "0:0.45:0.05")
	set("sw-steps", "20")
	eval[any](t, ctx, frontOfSmall)
	if err := chromedp.Do(ctx, chromedp.Click(`#sw-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the sweep to finish", `document.getElementById("sweep").dataset.state === "done"`)
	// Defences from the defaults: the five classifiers, JPEG and 1-bit, each
	// transform scored both ways (its adaptive twin beside it).
	if n := eval[int](t, ctx, `document.querySelectorAll('#sw-chart g.series').length`) / 2; n != 9 {
		t.Fatalf("%d defences drawn, want 9 (five classifiers, JPEG and 1-bit both ways)", n)
	}
	// The page says how the twins were attacked, and where a defence holds only
	// against attacks that ignore it.
	notes := eval[string](t, ctx, `document.querySelector('[data-testid="sw-scoring"]').textContent`)
	if !strings.Contains(notes, "1-bit (adaptive)") || !strings.Contains(notes, "Athalye") {
		t.Errorf("scoring notes %q", notes)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#sw-chart image.thumb').length`); n != 10 {
		t.Errorf("%d thumbnails under the axis, want 10", n)
	}
	for _, li := range eval[[]string](t, ctx, `Array.from(document.querySelectorAll('[data-testid="flip"]')).map(l => l.textContent)`) {
		t.Log(li)
	}
	if flip := eval[string](t, ctx, `document.querySelector('[data-testid="flip"][data-defence="mnist-cnn-small"]').textContent`); !strings.HasPrefix(flip, "mnist-cnn-small: flips at ε ") {
		t.Errorf("flip summary %q", flip)
	}
	saveScreenshot(t, ctx, "sweep.png")

	// The competition: noise, FGSM and PGD on mnist-cnn-small against every defence.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/compete"), chromedp.WaitVisible(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	eval[any](t, ctx, `(() => { document.querySelectorAll('input[name="entrant"]').forEach(c => c.checked = ["noise", "fgsm", "pgd"].includes(c.value)); return 0; })()`)
	set("mx-model", "mnist-cnn-small")
	eval[any](t, ctx, frontOfSmall)
	set("mx-n", "30")
	set("mx-batch", "10")
	if err := chromedp.Do(ctx, chromedp.Click(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the competition to finish", `document.getElementById("matrix").dataset.state === "done"`)
	ticked := eval[int](t, ctx, `document.querySelectorAll('input[name="defence-model"]:checked, input[name="defence-transform"]:checked').length`)
	if ticked < len(builtinClassifiers) {
		t.Errorf("%d defences ticked, want at least the %d built-in classifiers", ticked, len(builtinClassifiers))
	}
	// Each transform is scored both ways: its adaptive twin is a column of its own.
	transforms := eval[int](t, ctx, `document.querySelectorAll('input[name="defence-transform"]:checked').length`)
	defs := ticked + transforms
	if n := eval[int](t, ctx, `document.querySelectorAll('#mx-chart g.cell').length`); n != 3*defs {
		t.Errorf("%d heatmap cells, want 3 attacks × %d defences", n, defs)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid="rank"]').length`); n != 3+defs {
		t.Errorf("%d ranked entrants, want %d", n, 3+defs)
	}
	checkHeatmapLayout(t, ctx, "#mx-chart svg", defs)
	saveScreenshot(t, ctx, "compete.png")

	// The transfer matrix: every built-in classifier as source and as target.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/transfer"), chromedp.WaitVisible(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	set("mx-n", "20")
	set("mx-steps", "10")
	if err := chromedp.Do(ctx, chromedp.Click(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the transfer matrix", `document.getElementById("matrix").dataset.state === "done"`)
	n := len(builtinClassifiers)
	sources := n + len(builtinAttackNets)
	if c := eval[int](t, ctx, `document.querySelectorAll('#mx-chart g.cell').length`); c != sources*n {
		t.Errorf("%d transfer cells, want %d sources (classifiers and attack networks) × %d targets", c, sources, n)
	}
	checkHeatmapLayout(t, ctx, "#mx-chart svg", n)
	saveScreenshot(t, ctx, "transfer.png")
	if v := eval[[]string](t, ctx, `window.__csp`); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}
