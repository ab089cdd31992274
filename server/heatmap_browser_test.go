package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// heatmapLayoutJS checks a drawn heatmap's labels (column and row names, the
// corner label, the scores beside and below): each label's box, mapped through
// its rotation into the picture's coordinates, lies inside the viewBox, overlaps
// no other label and not the grid of cells; each cell's number lies inside its
// cell. It returns the problems found, the columns drawn and the scale at which
// the picture is shown (1: full size).
const heatmapLayoutJS = `((sel) => {
	const svg = document.querySelector(sel);
	if (!svg) return {problems: ["no heatmap at " + sel], cols: 0, scale: 0};
	const vb = svg.viewBox.baseVal, toSVG = svg.getScreenCTM().inverse();
	const corners = (el) => {
		const b = el.getBBox(), m = toSVG.multiply(el.getScreenCTM());
		return [[b.x, b.y], [b.x + b.width, b.y], [b.x + b.width, b.y + b.height], [b.x, b.y + b.height]]
			.map(([x, y]) => { const p = new DOMPoint(x, y).matrixTransform(m); return [p.x, p.y]; });
	};
	// Separating axes: convex quadrilaterals overlap unless some edge's normal separates them (0.5 px slack).
	const overlap = (a, b) => {
		for (const q of [a, b]) for (let i = 0; i < 4; i++) {
			const [x1, y1] = q[i], [x2, y2] = q[(i + 1) % 4];
			const len = Math.hypot(x2 - x1, y2 - y1) || 1, nx = (y1 - y2) / len, ny = (x2 - x1) / len;
			const pa = a.map(([x, y]) => x * nx + y * ny), pb = b.map(([x, y]) => x * nx + y * ny);
			if (Math.max(...pa) <= Math.min(...pb) + 0.5 || Math.max(...pb) <= Math.min(...pa) + 0.5) return false;
		}
		return true;
	};
	const problems = [];
	const name = (el) => el.getAttribute("class") + " " + JSON.stringify(Array.from(el.childNodes).filter((n) => n.nodeName !== "title").map((n) => n.textContent).join(" "));
	const labels = Array.from(svg.querySelectorAll("text.col-head, text.row-head, text.corner, text.row-end, text.col-end"))
		.map((el) => ({el, q: corners(el), what: name(el)}));
	const rects = Array.from(svg.querySelectorAll("g.cell rect")).map((r) => r.getBBox());
	if (rects.length) {
		const x0 = Math.min(...rects.map((r) => r.x)), y0 = Math.min(...rects.map((r) => r.y));
		const x1 = Math.max(...rects.map((r) => r.x + r.width)), y1 = Math.max(...rects.map((r) => r.y + r.height));
		labels.push({q: [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], what: "the grid of cells"});
	}
	for (const l of labels) {
		if (l.el && l.el.getBBox().width === 0) problems.push(l.what + " has no width");
		for (const [x, y] of l.q) {
			if (x < vb.x - 0.5 || y < vb.y - 0.5 || x > vb.x + vb.width + 0.5 || y > vb.y + vb.height + 0.5) {
				problems.push(l.what + " extends outside the picture to (" + x.toFixed(1) + ", " + y.toFixed(1) + ") of " + vb.width + "×" + vb.height);
				break;
			}
		}
	}
	for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++) {
		if (overlap(labels[i].q, labels[j].q)) problems.push(labels[i].what + " overlaps " + labels[j].what);
	}
	svg.querySelectorAll("g.cell").forEach((g) => {
		const r = g.querySelector("rect").getBBox(), t = g.querySelector("text").getBBox();
		if (t.x < r.x || t.x + t.width > r.x + r.width) problems.push("cell text " + JSON.stringify(g.querySelector("text").textContent) + " wider than its cell");
	});
	return {problems, cols: svg.querySelectorAll("text.col-head").length, scale: svg.getBoundingClientRect().width / vb.width};
})`

// checkHeatmapLayout fails the test if the heatmap at sel has labels that
// overlap or leave the picture, or is not drawn with cols columns.
func checkHeatmapLayout(t *testing.T, ctx context.Context, sel string, cols int) {
	t.Helper()
	var got struct {
		Problems []string
		Cols     int
		Scale    float64
	}
	res, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](heatmapLayoutJS+`(`+fmt.Sprintf("%q", sel)+`)`))
	if err != nil {
		t.Fatalf("heatmap layout of %s: %v", sel, err)
	}
	for _, p := range res["problems"].([]any) {
		got.Problems = append(got.Problems, p.(string))
	}
	got.Cols = int(res["cols"].(float64))
	got.Scale = res["scale"].(float64)
	if got.Cols != cols {
		t.Errorf("heatmap %s: %d column names, want %d", sel, got.Cols, cols)
	}
	if len(got.Problems) > 0 {
		t.Errorf("heatmap %s with %d columns: %d label problems:\n%s", sel, got.Cols, len(got.Problems), strings.Join(got.Problems, "\n"))
	}
	// Large type for projectors: the picture may shrink to fit its panel, but not
	// so much that 16 px labels drop under 11 px.
	if got.Scale < 0.7 {
		t.Errorf("heatmap %s with %d columns shown at %.2f of its size: labels too small", sel, got.Cols, got.Scale)
	}
	t.Logf("heatmap %s: %d columns, shown at %.2f of full size", sel, got.Cols, got.Scale)
}

// TestHeatmapLayoutBrowser draws heatmaps of 1 to 12 columns with long model names,
// scores and ranks beside and below (as the competition and transfer pages do)
// into the competition page's chart panel in headless Chromium, and checks that no
// label overlaps another or the cells, and none is cut off at the picture's edge.
func TestHeatmapLayoutBrowser(t *testing.T) {
	f := newExplorerFixture(t, nil)
	ctx, exceptions := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/compete"), chromedp.WaitVisible(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	names := []string{"mnist-cnn-small + random resize ≥90% + pad", "mnist-resnet-small", "mnist-cnn-robust", "mnist-cnn-small + JPEG q75",
		"mnist-cnn-wide + median 2×2", "mnist-mlp", "mnist-cnn-small + 1-bit", "mnist-resnet-small + JPEG q10",
		"mnist-cnn-robust + random resize ≥80% + pad", "mnist-cnn-wide", "mnist-resnet-small + 3-bit", "imagenet-resnet50-adversarially-trained"}
	rows := []string{"mnist-cnn-small + random resize ≥90% + pad", "pgd", "m-di²-fgsm", "square attack"}
	for _, n := range []int{1, 3, 5, 9, 12} {
		for _, kind := range []string{"compete", "transfer"} {
			spec := fmt.Sprintf(`(() => {
				const names = %s.slice(0, %d), rows = %s, kind = %q;
				const cols = names.map((name) => ({name, note: "a note"}));
				const share = rows.map((r, i) => cols.map((c, j) => ((i + 1) * (j + 3)) %% 11 / 10));
				const spec = {label: "test", rowsLabel: kind === "compete" ? "attack" : "source", colsLabel: kind === "compete" ? "defence" : "target",
					rows: rows.map((name) => ({name})), cols, share, tip: share.map((r) => r.map(String))};
				if (kind === "compete") {
					spec.text = share.map((r) => r.map((v) => String(Math.round(v * 1000))));
					spec.rowEnd = rows.map((r, i) => (12000 - i) + " · #" + (i + 1));
					spec.colEnd = cols.map((c, j) => [String(9000 + j), "#" + (j + 1)]);
				} else {
					spec.text = share.map((r) => r.map((v) => Math.round(v * 100) + "%%"));
					spec.colEnd = cols.map(() => ["clean", "100%%"]);
				}
				GibbonChart.heatmap(document.getElementById("mx-chart"), spec);
				return 0;
			})()`, jsStrings(names), n, jsStrings(rows), kind)
			eval[any](t, ctx, spec)
			t.Run(fmt.Sprintf("%s-%d", kind, n), func(t *testing.T) { checkHeatmapLayout(t, ctx, "#mx-chart svg", n) })
		}
	}
	if v := eval[[]string](t, ctx, `window.__csp`); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}

// jsStrings writes a JavaScript array of strings.
func jsStrings(v []string) string {
	q := make([]string, len(v))
	for i, s := range v {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
