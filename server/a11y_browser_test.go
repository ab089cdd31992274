package server

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// auditJS is an automated accessibility audit of the page as it is now. It
// returns the problems it finds, one sentence each:
//   - every form control (input, select, textarea) and button has an accessible name;
//   - every image has an alt attribute, and an empty one only where the image is
//     decoration beside text saying the same;
//   - every canvas and every chart drawn as SVG has role="img" and a text alternative;
//   - visible text has a contrast of at least 4.5:1 with what is behind it (HTML
//     text against the nearest background colour, opacity included; SVG text
//     against its heatmap cell or the page); disabled controls are exempt, as in WCAG;
//   - the first thing a keyboard reaches is a skip link to the main content.
const auditJS = `(() => {
	const problems = [];
	const desc = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + (e.getAttribute("data-testid") ? "[" + e.getAttribute("data-testid") + "]" : "") +
		(e.className && typeof e.className === "string" ? "." + e.className.split(" ")[0] : "");
	const shown = (e) => {
		const r = e.getBoundingClientRect(), cs = getComputedStyle(e);
		return r.width > 0 && r.height > 0 && cs.visibility !== "hidden" && cs.display !== "none" && !e.closest("[hidden]");
	};
	const name = (e) => {
		const al = e.getAttribute("aria-label");
		if (al && al.trim()) return al.trim();
		const lb = e.getAttribute("aria-labelledby");
		if (lb) return lb.split(/\s+/).map((id) => (document.getElementById(id) || {}).textContent || "").join(" ").trim();
		if (e.labels && e.labels.length) return Array.from(e.labels).map((l) => l.textContent).join(" ").trim();
		if (e.title && e.title.trim()) return e.title.trim();
		if (e.tagName === "BUTTON") return (e.textContent.trim() || Array.from(e.querySelectorAll("img")).map((i) => i.alt).join(" ")).trim();
		return "";
	};
	document.querySelectorAll("input:not([type=hidden]), select, textarea, button").forEach((e) => {
		if (!name(e)) problems.push("no accessible name: " + desc(e));
	});
	document.querySelectorAll("img").forEach((e) => {
		if (!e.hasAttribute("alt")) problems.push("image without alt: " + desc(e) + " " + (e.getAttribute("src") || "").slice(0, 40));
		else if (e.alt === "" && shown(e)) {
			const host = e.closest("a, button, .ax-chosen");
			if (!host || !host.textContent.trim()) problems.push("image with an empty alt and no text beside it: " + desc(e));
		}
	});
	document.querySelectorAll("canvas, svg.chart-svg").forEach((e) => {
		if (e.getAttribute("role") !== "img") problems.push("no role=img: " + desc(e));
		if (!(e.getAttribute("aria-label") || "").trim()) problems.push("no text alternative: " + desc(e));
	});

	const parse = (c) => { const m = c.match(/[\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; };
	const lum = (rgb) => { const [r, g, b] = rgb.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
	const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
	const mix = (fg, bg, a) => fg.slice(0, 3).map((v, i) => v * a + bg[i] * (1 - a));
	const background = (e) => {
		for (let n = e; n; n = n.parentElement) {
			const c = parse(getComputedStyle(n).backgroundColor);
			if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
		}
		return [255, 255, 255];
	};
	const opacity = (e) => { let o = 1; for (let n = e; n; n = n.parentElement) o *= Number(getComputedStyle(n).opacity); return o; };
	const disabled = (e) => !!e.closest("button:disabled, select:disabled, option, fieldset:disabled") ||
		(() => { const l = e.closest("label"); const c = l && (l.control || l.querySelector("input, select")); return !!(c && c.disabled); })();
	const seen = new Set();
	document.querySelectorAll("body *").forEach((e) => {
		if (e.closest("svg") || !shown(e) || disabled(e)) return;
		const text = Array.from(e.childNodes).filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
		if (!text) return;
		const cs = getComputedStyle(e);
		const bg = background(e);
		const fg = mix(parse(cs.color), bg, opacity(e) * (parse(cs.color)[3] ?? 1));
		const r = ratio(fg, bg);
		if (r < 4.5) {
			const key = desc(e) + cs.color + bg;
			if (!seen.has(key)) problems.push("contrast " + r.toFixed(2) + ":1 for " + desc(e) + " “" + text.slice(0, 30) + "” (" + cs.color + " on rgb(" + bg.map(Math.round) + "))");
			seen.add(key);
		}
	});
	document.querySelectorAll("svg.chart-svg text").forEach((t) => {
		const fill = t.getAttribute("fill");
		if (!fill || !shown(t)) return;
		const cell = t.closest("g.cell");
		const bgFill = cell ? cell.querySelector("rect").getAttribute("fill") : null;
		const toRGB = (c) => { const d = document.createElement("div"); d.style.color = c; document.body.append(d); const v = parse(getComputedStyle(d).color); d.remove(); return v; };
		const bg = bgFill ? toRGB(bgFill) : background(t.closest("svg"));
		const r = ratio(toRGB(fill), bg);
		if (r < 4.5) problems.push("contrast " + r.toFixed(2) + ":1 for chart text “" + t.textContent.slice(0, 30) + "”");
	});

	const focusable = Array.from(document.querySelectorAll("a[href], button, input, select, textarea, [tabindex]")).filter((e) => e.tabIndex >= 0);
	const first = focusable[0];
	if (!first || first.tagName !== "A" || !first.getAttribute("href").startsWith("#") || !document.querySelector(first.getAttribute("href"))) {
		problems.push("the first focusable element is not a skip link to the content: " + (first ? desc(first) : "none"));
	}
	return problems;
})()`

// audit runs auditJS and reports its findings as test errors.
func audit(t *testing.T, ctx context.Context, where string) {
	t.Helper()
	for _, p := range eval[[]string](t, ctx, auditJS) {
		t.Errorf("%s: %s", where, p)
	}
}

// TestAccessibilityBrowser audits every page with the built-in models in
// headless Chromium, and the explorer and classify page also with results on
// them (defences, charts, replay, the result panel; predictions and the
// MNIST-distance hint): see auditJS for what is checked. The skip link is also
// used: Tab reaches it first and Enter moves the focus to the content.
func TestAccessibilityBrowser(t *testing.T) {
	f := newBuiltinFixture(t)
	ctx, exceptions := browser(t)
	for _, page := range []string{"/", "/attack", "/sweep", "/compete", "/transfer", "/models", "/gallery"} {
		if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+page), chromedp.WaitVisible(`main`)); err != nil {
			t.Fatal(err)
		}
		audit(t, ctx, page)
	}

	// The skip link, by keyboard.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/models"), chromedp.WaitVisible(`main`), chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	if got := eval[string](t, ctx, `document.activeElement.dataset.testid || document.activeElement.tagName`); got != "skip-link" {
		t.Errorf("Tab reaches %s first, want the skip link", got)
	}
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the focus in the content", `document.activeElement.id === "main" && location.hash === "#main"`)

	// A chosen sample and a focused one look different: the chosen one has a blue
	// ring and a check mark, the focused one the focus ring.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/attack"), chromedp.WaitVisible(`#ax-start`),
		chromedp.Click(`[data-testid="attack-sample"][data-label="7"]`), chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	look := eval[map[string]map[string]string](t, ctx, `(() => {
		const s = (b) => { const cs = getComputedStyle(b); return {focused: String(b.matches(":focus-visible")), pressed: b.getAttribute("aria-pressed"),
			ring: cs.outlineStyle + " " + cs.outlineColor + " / " + cs.boxShadow, mark: getComputedStyle(b, "::after").content}; };
		return {chosen: s(document.querySelector('[data-testid="attack-sample"][data-label="7"]')), focused: s(document.activeElement)}; })()`)
	chosen, focused := look["chosen"], look["focused"]
	if chosen["pressed"] != "true" || chosen["focused"] != "false" || focused["focused"] != "true" || focused["pressed"] != "false" {
		t.Fatalf("want one chosen sample and another focused: %v", look)
	}
	if chosen["ring"] == focused["ring"] || chosen["mark"] != `"✓"` || focused["mark"] == `"✓"` {
		t.Errorf("a chosen sample and a focused one look alike: %v", look)
	}

	// The classify page with results and the MNIST-distance hint.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/"), chromedp.WaitVisible(`#pad`),
		chromedp.Click(`[data-testid="sample"][data-label="3"]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the results", `document.querySelectorAll('[data-testid="model-result"]').length === 5 && !!document.querySelector('[data-testid="ood"]')`)
	audit(t, ctx, "/ with results")

	// The explorer after a run, with its Advanced settings open.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/attack"), chromedp.WaitVisible(`#ax-start`),
		chromedp.Click(`[data-testid="attack-sample"][data-label="7"]`), chromedp.Click(`#ax-advanced summary`)); err != nil {
		t.Fatal(err)
	}
	eval[any](t, ctx, `(document.getElementById("ax-pace").value = "0", document.getElementById("ax-steps").value = "10", 0)`)
	if err := chromedp.Do(ctx, chromedp.Click(`#ax-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the run to finish", `document.getElementById("explorer").dataset.state === "done"`)
	audit(t, ctx, "/attack after a run")
	if n := eval[int](t, ctx, `document.querySelectorAll('canvas[role="img"][aria-label*="true class 7"]').length`); n != 5 {
		t.Errorf("%d confidence charts say in words how the true class fared, want one per watched model (5)", n)
	}
	if label := eval[string](t, ctx, `document.getElementById("ax-loss").getAttribute("aria-label")`); !strings.HasPrefix(label, "Loss per step") || !strings.Contains(label, "at step 10") {
		t.Errorf("the loss curve's text alternative %q does not describe the curve", label)
	}
	// Saved: the gallery and the permalink.
	if err := chromedp.Do(ctx, chromedp.Click(`#ax-save`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the permalink", `!!document.querySelector('[data-testid="attack-permalink"]')`)
	link := eval[string](t, ctx, `document.querySelector('[data-testid="attack-permalink"]').href`)
	for _, page := range []string{f.ts.URL + "/gallery", link} {
		if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(`main`)); err != nil {
			t.Fatal(err)
		}
		audit(t, ctx, strings.TrimPrefix(page, f.ts.URL))
	}

	// A transfer matrix drawn: its heatmap's text against each cell's colour.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/transfer"), chromedp.WaitVisible(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	eval[any](t, ctx, `(document.getElementById("mx-n").value = "10", document.getElementById("mx-steps").value = "5", 0)`)
	if err := chromedp.Do(ctx, chromedp.Click(`#mx-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the transfer matrix", `document.getElementById("matrix").dataset.state === "done"`)
	audit(t, ctx, "/transfer with its matrix")
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}

	// The audit finds what it looks for: an unlabelled input, an image without
	// alt, pale text and an unlabelled canvas, added to the page.
	eval[any](t, ctx, `(() => { const p = document.createElement("p"); p.textContent = "pale"; p.style.color = "#bbbbbb"; p.style.background = "#ffffff";
		document.getElementById("main").append(p, document.createElement("input"), document.createElement("img"), document.createElement("canvas")); return 0; })()`)
	found := strings.Join(eval[[]string](t, ctx, auditJS), "\n")
	for _, want := range []string{"no accessible name: input", "image without alt", "contrast 1.9", "no role=img: canvas"} {
		if !strings.Contains(found, want) {
			t.Errorf("the audit missed %q; it found:\n%s", want, found)
		}
	}
}
