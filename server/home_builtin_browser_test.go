package server

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"gibbon/models"
)

// TestHomeBuiltinBrowser opens the home page of a server wired as `gibbon serve`
// wires it (built-in models and samples, attack explorer, gallery) in headless
// Chromium: the menu lists every page, an uploaded sample seven and a seven drawn
// on the pad with the mouse are both classified 7 by each of the five built-in
// models. With GIBBON_UPDATE_SCREENSHOT=1 it retakes docs/screenshots/home.png,
// the README's picture of the drawing.
func TestHomeBuiltinBrowser(t *testing.T) {
	f := newBuiltinFixture(t)
	ctx, exceptions := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/"), chromedp.WaitVisible(`#pad`)); err != nil {
		t.Fatal(err)
	}
	nav := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('[data-testid="nav-link"]')).map(a => a.textContent.trim())`)
	if want := "Classify,Attack,Sweep,Compete,Transfer,Gallery,Models"; strings.Join(nav, ",") != want {
		t.Errorf("menu %v, want %s", nav, want)
	}
	tops := func() map[string]string {
		return eval[map[string]string](t, ctx, `Object.fromEntries(Array.from(document.querySelectorAll('[data-testid="model-result"]')).map(c =>
			[c.dataset.model, c.querySelector('[data-testid="prediction"]')?.dataset.label ?? ""]))`)
	}
	allSeven := func(what string) {
		t.Helper()
		got := tops()
		if len(got) != len(builtinClassifiers) {
			t.Errorf("%s: %d model results %v, want the %d built-in classifiers", what, len(got), got, len(builtinClassifiers))
		}
		for _, name := range builtinClassifiers {
			if got[name] != "7" {
				t.Errorf("%s: %s answers %q, want 7", what, name, got[name])
			}
		}
	}

	// Upload the first sample seven (a real MNIST test digit).
	data, err := fs.ReadFile(models.FS(), "samples/digit-7-0.png")
	if err != nil {
		t.Fatal(err)
	}
	seven := filepath.Join(t.TempDir(), "digit-7-0.png")
	if err := os.WriteFile(seven, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.SetUploadFiles(`#image`, []string{seven})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the upload's results", `(document.querySelector('[data-testid="result-source"]')?.textContent ?? "").includes("digit-7-0.png")
		&& document.querySelectorAll('[data-testid="model-result"] [data-testid="prediction"]').length > 0`)
	allSeven("uploaded sample 7")

	// Draw a seven: a bar and a slanted stroke.
	drawStrokes(t, ctx, [][2][2]float64{{{0.3, 0.2}, {0.72, 0.2}}, {{0.72, 0.2}, {0.45, 0.85}}})
	waitFor(t, ctx, "the drawing's results", drawingShown+` && (document.querySelector('[data-testid="result-source"]')?.textContent ?? "").startsWith("your drawing")`)
	allSeven("drawn 7")
	eval[any](t, ctx, `(document.getElementById("image").value = "", 0)`)                         // the picture shows the drawing, not a chosen file
	if err := chromedp.Do(ctx, chromedp.MouseEvent(chromedp.MouseMoved, 1390, 990)); err != nil { // no hover highlight
		t.Fatal(err)
	}
	saveScreenshot(t, ctx, "home.png")
	if v := eval[[]string](t, ctx, `window.__csp`); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}
