package server

import (
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestSweepBrowser runs an ε sweep of one image in a real headless Chromium and
// watches the chart grow point by point while the points stream in: a mutation
// observer records the chart's point count after every change. Then the same page
// sweeps a data set (robust accuracy, progress bar), saves it to the gallery, and
// the competition page draws its heatmap with ranks. No CSP violation, no script
// error. The README's pictures of these pages are TestSweepBuiltinBrowser's.
func TestSweepBrowser(t *testing.T) {
	f := newExplorerFixture(t, nil, pushnetFile())
	ctx, exceptions := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/sweep"), chromedp.WaitVisible(`#sw-start`)); err != nil {
		t.Fatal(err)
	}
	set := func(id, value string) {
		t.Helper()
		eval[any](t, ctx, `(() => { const e = document.getElementById("`+id+`"); e.value = "`+value+`";
			e.dispatchEvent(new Event("input")); e.dispatchEvent(new Event("change")); return 0; })()`)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="sweep-sample"][data-label="7"]`)); err != nil {
		t.Fatal(err)
	}
	set("sw-eps", "0:0.45:0.05")
	set("sw-steps", "20")
	if hint := eval[string](t, ctx, `document.getElementById("sw-eps-hint").textContent`); hint != "10 values from 0 to 0.45" {
		t.Errorf("ε hint %q", hint)
	}
	// Defences: the two classifiers and, from the defaults, JPEG and 1-bit.
	eval[any](t, ctx, `(() => { window.__counts = []; const c = document.getElementById("sw-chart");
		new MutationObserver(() => window.__counts.push(c.querySelectorAll("circle.point").length)).observe(c, {childList: true, subtree: true}); return 0; })()`)
	if err := chromedp.Do(ctx, chromedp.Click(`#sw-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the sweep to finish", `document.getElementById("sweep").dataset.state === "done"`)
	counts := eval[[]int](t, ctx, `window.__counts`)
	defences := eval[int](t, ctx, `document.querySelectorAll('#sw-chart g.series').length`) / 2
	if defences != 4 {
		t.Fatalf("%d defences drawn, want 4 (two classifiers, JPEG, 1-bit)", defences)
	}
	// Every point adds two circles per defence (true and strongest wrong class), and
	// the chart was redrawn after each: 8, 16, …, 80.
	for k := 1; k <= 10; k++ {
		if !containsInt(counts, 2*defences*k) {
			t.Fatalf("the chart never showed %d points (%d circles) while they streamed in: counts %v", k, 2*defences*k, counts)
		}
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#sw-chart image.thumb').length`); n != 10 {
		t.Errorf("%d thumbnails under the axis, want 10", n)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#sw-table tbody tr').length`); n != 10 {
		t.Errorf("%d table rows, want 10", n)
	}
	ticks := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#sw-chart g.axes text')).map(t => t.textContent)`)
	for _, want := range []string{"ε on [0,1] (and in /255 pixel steps)", "probability (%)", "100 %", "0.45", "114.75/255"} {
		if !containsString(ticks, want) {
			t.Errorf("the axes lack %q: %v", want, ticks)
		}
	}
	tip := eval[string](t, ctx, `document.querySelector('#sw-chart g.series circle.point title').textContent`)
	if !strings.HasPrefix(tip, "cosine: P(true class 7) = ") || !strings.Contains(tip, "at ε 0 (0/255)") {
		t.Errorf("hover text %q", tip)
	}
	flip := eval[string](t, ctx, `document.querySelector('[data-testid="flip"][data-defence="cosine"]').textContent`)
	if !strings.HasPrefix(flip, "cosine: flips at ε ") {
		t.Errorf("flip summary %q", flip)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#sw-chart g.marker').length`); n < 1 {
		t.Error("no flip marker on the chart")
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#sw-legend [data-testid="legend-item"]').length`); n != 5 {
		t.Errorf("%d legend entries, want 4 defences and the line styles", n)
	}
	// The legend describes the flip markers as the chart draws them: a dotted line under a ▼.
	if l := eval[string](t, ctx, `document.getElementById("sw-legend").textContent`); !strings.Contains(l, "dotted line under a ▼") {
		t.Errorf("legend %q does not describe the markers as drawn", l)
	}
	if n, m := eval[int](t, ctx, `document.querySelectorAll('#sw-chart g.marker > line[stroke-dasharray] + path').length`), eval[int](t, ctx, `document.querySelectorAll('#sw-chart g.marker').length`); n != m {
		t.Errorf("%d of %d markers are a dotted line under a ▼", n, m)
	}
	// Robust accuracy on a data set: the progress bar fills, one line per defence.
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="sweep-kind-dataset"]`)); err != nil {
		t.Fatal(err)
	}
	set("sw-n", "40")
	set("sw-eps", "0:0.3:0.1")
	set("sw-steps", "5")
	if err := chromedp.Do(ctx, chromedp.Click(`#sw-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the data set sweep to finish", `document.getElementById("sweep").dataset.state === "done"`)
	// Done is done: the caption no longer says "so far".
	if c := eval[string](t, ctx, `document.getElementById("sw-caption").textContent`); !strings.Contains(c, "the first 40 MNIST test images") || strings.Contains(c, "so far") {
		t.Errorf("caption of the finished sweep: %q", c)
	}
	if v := eval[[]float64](t, ctx, `[document.getElementById("sw-progress").value, document.getElementById("sw-progress").max]`); v[0] != 40 || v[1] != 40 {
		t.Errorf("progress bar %v", v)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#sw-chart polyline').length`); n != 4 {
		t.Errorf("%d accuracy curves, want 4", n)
	}
	if y := eval[string](t, ctx, `Array.from(document.querySelectorAll('#sw-chart g.axes text')).map(t => t.textContent).join("|")`); !strings.Contains(y, "robust accuracy (%)") {
		t.Errorf("y axis %q", y)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(`#sw-title`, "Robust accuracy, cosine"), chromedp.Click(`#sw-save`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the permalink", `!!document.querySelector('[data-testid="sw-permalink"]')`)
	link := eval[string](t, ctx, `document.querySelector('[data-testid="sw-permalink"]').href`)

	// The permalink's re-run link opens the page with the saved chart drawn.
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(`[data-testid="rerun"]`), chromedp.Click(`[data-testid="rerun"]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the saved chart", `document.getElementById("sweep") && document.getElementById("sweep").dataset.state === "saved" && document.querySelectorAll('#sw-chart polyline').length === 4`)
	if v := eval[string](t, ctx, `document.getElementById("sw-n").value`); v != "40" {
		t.Errorf("the re-run form holds n=%s", v)
	}

	// The competition: a heatmap cell per attack and defence, with ranks.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/compete"), chromedp.WaitVisible(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	eval[any](t, ctx, `(() => { document.querySelectorAll('input[name="entrant"]').forEach(c => c.checked = ["noise", "fgsm", "net:pushnet"].includes(c.value)); return 0; })()`)
	set("mx-n", "30")
	set("mx-batch", "10")
	if err := chromedp.Do(ctx, chromedp.Click(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the competition to finish", `document.getElementById("matrix").dataset.state === "done"`)
	defs := eval[int](t, ctx, `document.querySelectorAll('input[name="defence-model"]:checked, input[name="defence-transform"]:checked').length`)
	if n := eval[int](t, ctx, `document.querySelectorAll('#mx-chart g.cell').length`); n != 3*defs {
		t.Errorf("%d heatmap cells, want 3 attacks × %d defences", n, defs)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid="rank"]').length`); n != 3+defs {
		t.Errorf("%d ranked entrants, want %d", n, 3+defs)
	}
	checkHeatmapLayout(t, ctx, "#mx-chart svg", defs)
	if !strings.Contains(eval[string](t, ctx, `document.querySelector('#mx-chart g.cell title').textContent`), "images misclassified") {
		t.Error("a heatmap cell has no hover text")
	}
	// Saved, the competition re-opens with its heatmap drawn from the stored matrix.
	if err := chromedp.Do(ctx, chromedp.Click(`#mx-save`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the competition's permalink", `!!document.querySelector('[data-testid="mx-permalink"]')`)
	link = eval[string](t, ctx, `document.querySelector('[data-testid="mx-permalink"]').href`)
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(`[data-testid="rerun"]`), chromedp.Click(`[data-testid="rerun"]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the saved heatmap", `document.getElementById("matrix") && document.getElementById("matrix").dataset.state === "saved" && document.querySelectorAll('#mx-chart g.cell').length === `+strconv.Itoa(3*defs))
	if v := eval[string](t, ctx, `document.getElementById("mx-batch").value`); v != "10" {
		t.Errorf("the re-run form holds batch %s", v)
	}
	// The transfer matrix: a cell per source and target.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/transfer"), chromedp.WaitVisible(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	set("mx-n", "20")
	set("mx-steps", "3")
	if err := chromedp.Do(ctx, chromedp.Click(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the transfer matrix", `document.getElementById("matrix").dataset.state === "done"`)
	if n := eval[int](t, ctx, `document.querySelectorAll('#mx-chart g.cell').length`); n != 3*2 {
		t.Errorf("%d transfer cells, want 3 sources (cosine, cosine-b, pushnet) × 2 targets", n)
	}
	checkHeatmapLayout(t, ctx, "#mx-chart svg", 2)
	if v := eval[[]string](t, ctx, `window.__csp`); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}

func containsInt(v []int, x int) bool {
	for _, y := range v {
		if y == x {
			return true
		}
	}
	return false
}

func containsString(v []string, x string) bool {
	for _, y := range v {
		if y == x {
			return true
		}
	}
	return false
}
