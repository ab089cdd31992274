package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// screen is a device the pages must work on.
type screen struct {
	name          string
	width, height int64   // CSS pixels
	scale         float64 // device pixels per CSS pixel
	mobile        bool
}

var (
	phone = screen{"phone", 390, 844, 3, true}
	// A 1920×1080 projector at 150 % zoom: 1280×720 CSS pixels.
	projector = screen{"projector", 1280, 720, 1.5, false}
)

func emulate(t *testing.T, ctx context.Context, s screen) {
	t.Helper()
	if _, err := chromedp.Call(ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: s.width, Height: s.height, DeviceScaleFactor: s.scale, Mobile: s.mobile}); err != nil {
		t.Fatal(err)
	}
}

// overflowJS lists what sticks out to the right of the window (the page must not
// scroll sideways; a chart or a table scrolls inside its own box instead).
const overflowJS = `(() => {
	const w = document.documentElement.clientWidth;
	if (document.documentElement.scrollWidth <= w) return [];
	return ["the page is " + document.documentElement.scrollWidth + " px wide in a " + w + " px window"].concat(
		Array.from(document.querySelectorAll("body *")).filter((e) => e.getBoundingClientRect().right > w + 0.5 && !e.closest(".table-scroll, .chart-panel"))
			.slice(0, 5).map((e) => e.tagName.toLowerCase() + "#" + e.id + "." + (typeof e.className === "string" ? e.className : "") + " reaches " + Math.round(e.getBoundingClientRect().right) + " px"));
})()`

// smallestChartTextJS is the smallest rendered size (CSS px) of any text in the
// charts drawn as SVG: the font size times the scale the picture is shown at.
const smallestChartTextJS = `(() => {
	let least = 1e9;
	document.querySelectorAll("svg.chart-svg").forEach((svg) => {
		const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
		svg.querySelectorAll("text").forEach((t) => { least = Math.min(least, Number(t.getAttribute("font-size")) * scale); });
	});
	return least;
})()`

// overlappingTicksJS lists x-axis tick labels of a line chart that overlap.
const overlappingTicksJS = `(() => {
	const labels = Array.from(document.querySelectorAll("svg.chart-svg g.axes text[text-anchor=middle]"))
		.filter((t) => t.getAttribute("font-size") !== "17").map((t) => ({t, b: t.getBoundingClientRect()}));
	const out = [];
	for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++) {
		const a = labels[i].b, b = labels[j].b;
		if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) out.push(labels[i].t.textContent + " / " + labels[j].t.textContent);
	}
	return out;
})()`

// TestLayoutBrowser opens every page with the built-in models on a phone
// (390×844) and on a projector (1920×1080 at 150 % zoom: 1280×720 CSS px) and
// checks what a student and a lecturer ran into: no page scrolls sideways; the
// classify page's probability bars keep their length; the explorer's run bar
// covers at most a quarter of a phone's screen while the run is watched, and
// clean, adversarial and perturbation stay in one row; the sweep's x-axis
// labels do not overlap; the competition's heatmap text never renders below
// 11 px (its box scrolls instead); a long heatmap row name is wrapped whole.
func TestLayoutBrowser(t *testing.T) {
	f := newBuiltinFixture(t)
	for _, sc := range []screen{phone, projector} {
		t.Run(sc.name, func(t *testing.T) {
			ctx, exceptions := browser(t)
			emulate(t, ctx, sc)
			open := func(path, ready string) {
				t.Helper()
				if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+path), chromedp.WaitVisible(ready)); err != nil {
					t.Fatal(err)
				}
			}
			noOverflow := func(where string) {
				t.Helper()
				if p := eval[[]string](t, ctx, overflowJS); len(p) > 0 {
					t.Errorf("%s on a %s: %s", where, sc.name, strings.Join(p, "; "))
				}
			}
			for _, page := range []string{"/", "/attack", "/sweep", "/compete", "/transfer", "/models", "/gallery"} {
				open(page, "main")
				noOverflow(page)
			}

			// Classify: a sample's results, bars at a readable length.
			open("/", "#pad")
			if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="sample"][data-label="3"]`)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "the results", `document.querySelectorAll('[data-testid="model-result"] meter').length === 25`)
			if w := eval[float64](t, ctx, `Math.min(...Array.from(document.querySelectorAll('[data-testid="model-result"] meter')).map((m) => m.getBoundingClientRect().width))`); w < 80 {
				t.Errorf("the narrowest probability bar is %.0f px wide on a %s, want at least 80", w, sc.name)
			}
			noOverflow("/ with results")

			// The explorer: watch a run from the images.
			open("/attack", "#ax-start")
			if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="attack-sample"][data-label="7"]`)); err != nil {
				t.Fatal(err)
			}
			eval[any](t, ctx, `(document.getElementById("ax-steps").value = "20", document.getElementById("ax-pace").value = "0", 0)`)
			if err := chromedp.Do(ctx, chromedp.Click(`#ax-start`)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "the run to finish", `document.getElementById("explorer").dataset.state === "done"`)
			eval[any](t, ctx, `(document.querySelector('[data-testid="attack-images"]').scrollIntoView(), window.scrollBy(0, -10), 0)`)
			bar := eval[map[string]float64](t, ctx, `(() => { const r = document.querySelector('[data-testid="attack-runbar"]').getBoundingClientRect();
				return {top: r.top, height: r.height, screen: innerHeight}; })()`)
			if share := bar["height"] / bar["screen"]; share > 0.25 {
				t.Errorf("the run bar covers %.0f %% of the %s's screen, want at most 25 %%", 100*share, sc.name)
			}
			if bar["top"] < -1 || bar["top"] > bar["screen"] {
				t.Errorf("the run bar is not in view while the images are (top %.0f px)", bar["top"])
			}
			row := eval[[]map[string]float64](t, ctx, `["ax-clean", "ax-adv", "ax-pert"].map((id) => { const r = document.getElementById(id).getBoundingClientRect();
				return {top: r.top, left: r.left, right: r.right, width: r.width}; })`)
			for i, r := range row {
				if r["top"] != row[0]["top"] || r["right"] > float64(sc.width) || r["width"] < 60 {
					t.Errorf("clean, adversarial and perturbation are not side by side in the window (image %d at %v)", i, r)
				}
				if i > 0 && r["left"] < row[i-1]["right"] {
					t.Errorf("image %d overlaps the one before it: %v", i, row)
				}
			}
			noOverflow("/attack after a run")

			// The sweep: tick labels apart, text readable.
			open("/sweep", "#sw-start")
			if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="sweep-sample"][data-label="7"]`)); err != nil {
				t.Fatal(err)
			}
			eval[any](t, ctx, `(document.getElementById("sw-steps").value = "5", 0)`)
			if err := chromedp.Do(ctx, chromedp.Click(`#sw-start`)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "the sweep", `document.getElementById("sweep").dataset.state === "done"`)
			if o := eval[[]string](t, ctx, overlappingTicksJS); len(o) > 0 {
				t.Errorf("sweep x-axis labels overlap on a %s: %v", sc.name, o)
			}
			if px := eval[float64](t, ctx, smallestChartTextJS); px < 11 {
				t.Errorf("the sweep chart's smallest text is %.1f px on a %s, want at least 11", px, sc.name)
			}
			noOverflow("/sweep with its chart")

			// The transfer matrix: every source, the attack network included.
			open("/transfer", "#mx-start")
			eval[any](t, ctx, `(document.getElementById("mx-n").value = "10", document.getElementById("mx-steps").value = "5", 0)`)
			if err := chromedp.Do(ctx, chromedp.Click(`#mx-start`)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "the transfer matrix", `document.getElementById("matrix").dataset.state === "done"`)
			if px := eval[float64](t, ctx, smallestChartTextJS); px < 11 {
				t.Errorf("the heatmap's smallest text is %.1f px on a %s, want at least 11", px, sc.name)
			}
			rows := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("svg.heatmap text.row-head")).map((t) => Array.from(t.querySelectorAll("tspan")).map((s) => s.textContent).join(" ").replace(/- /g, "-"))`)
			if want := "attack network mnist-attack-net"; !containsString(rows, want) {
				t.Errorf("heatmap rows %q: want %q written out whole", rows, want)
			}
			noOverflow("/transfer with its matrix")
			if ex := exceptions(); len(ex) > 0 {
				t.Errorf("script errors: %v", ex)
			}
		})
	}
}

// TestModelsPageBrowser: the attack network's measurements are a table (a row per
// classifier with its role, a column per ε, each cell the network beside PGD-10,
// MI-FGSM-10 and noise), not a list of 79 facts whose values are squeezed off the
// screen; every value lies inside the window, on a desktop and on a phone.
func TestModelsPageBrowser(t *testing.T) {
	f := newBuiltinFixture(t)
	ctx, exceptions := browser(t)
	for _, sc := range []screen{{"desktop", 1400, 1000, 1, false}, phone} {
		emulate(t, ctx, sc)
		if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/models"), chromedp.WaitVisible(`main`)); err != nil {
			t.Fatal(err)
		}
		net := `document.querySelector('[data-model="mnist-attack-net"] [data-testid="attack-net-table"]')`
		rows := eval[[]string](t, ctx, `Array.from(`+net+`.querySelectorAll('[data-testid="attack-net-row"]')).map((r) =>
			r.dataset.model + ": " + r.querySelector(".role").textContent + " | " + Array.from(r.querySelectorAll("td:not(.role)")).map((c) => c.innerText.replace(/\s+/g, " ").trim()).join(" | "))`)
		if len(rows) != len(builtinClassifiers) {
			t.Fatalf("%s: %d rows in the attack network's table, want one per classifier: %v", sc.name, len(rows), rows)
		}
		// the mlp's ε 0.1 cell, as the manifest records it
		entry, ok := f.reg.Entry("mnist-attack-net")
		if !ok {
			t.Fatal("no mnist-attack-net entry")
		}
		cell := func(prefix string) float64 { return 100 * entry.Metrics[prefix+"success_eps0.1_mnist-mlp"] }
		mlp := fmt.Sprintf("mnist-mlp: trained against | network %.1f %% PGD-10 %.1f %% MI-FGSM-10 %.1f %% noise ±ε %.1f %% |",
			cell(""), cell("pgd10_"), cell("mi_fgsm10_"), cell("noise_"))
		for _, want := range []string{mlp, "mnist-cnn-robust: adversarially trained, held out |"} {
			if !containsPrefix(rows, want) {
				t.Errorf("%s: no row starting %q in %q", sc.name, want, rows)
			}
		}
		if heads := eval[[]string](t, ctx, `Array.from(`+net+`.querySelectorAll("thead th")).map((h) => h.textContent)`); strings.Join(heads, ",") != "classifier,role,ε 0.1 (25.5/255),ε 0.2 (51.0/255),ε 0.3 (76.5/255)" {
			t.Errorf("%s: columns %v", sc.name, heads)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll('[data-model="mnist-attack-net"] [data-testid="facts-metrics"] dt').length`); n > 10 {
			t.Errorf("%s: %d facts still listed beside the table", sc.name, n)
		}
		// Every value cell of every list has room: none narrower than 40 px or past the window.
		squeezed := eval[[]string](t, ctx, `Array.from(document.querySelectorAll(".facts dd")).filter((d) => d.getClientRects().length).map((d) => d.getBoundingClientRect())
			.filter((r) => r.width < 40 || r.right > document.documentElement.clientWidth + 0.5).map((r) => Math.round(r.width) + " px wide at x = " + Math.round(r.left))`)
		if len(squeezed) > 0 {
			t.Errorf("%s: value cells squeezed: %v", sc.name, squeezed)
		}
		if p := eval[[]string](t, ctx, overflowJS); len(p) > 0 {
			t.Errorf("%s: %v", sc.name, p)
		}
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}

func containsPrefix(v []string, prefix string) bool {
	for _, s := range v {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
