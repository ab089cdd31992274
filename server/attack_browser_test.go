package server

import (
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestAttackBrowser runs PGD on a sample seven in a real headless Chromium: the
// defence panel updates while the run streams, the attacked model's label flips,
// the finished run offers a lossless PNG download and saves to the gallery, and
// the page runs under the CSP without a violation or a script error. The
// README's picture, docs/screenshots/attack.png, is TestAttackBuiltinBrowser's.
func TestAttackBrowser(t *testing.T) {
	f := newExplorerFixture(t, nil)
	ctx, exceptions := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/attack"), chromedp.WaitVisible(`#ax-start`)); err != nil {
		t.Fatal(err)
	}
	set := func(id, value string) {
		t.Helper()
		eval[any](t, ctx, `(() => { const e = document.getElementById("`+id+`"); e.value = "`+value+`";
			e.dispatchEvent(new Event("input")); e.dispatchEvent(new Event("change")); return 0; })()`)
	}
	// Start without an image: the page says what is missing and stays ready.
	if err := chromedp.Do(ctx, chromedp.Click(`#ax-start`)); err != nil {
		t.Fatal(err)
	}
	if msg := eval[string](t, ctx, `document.getElementById("ax-error").textContent`); !strings.Contains(msg, "Choose an image first") {
		t.Errorf("start without an image: %q", msg)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="attack-sample"][data-label="7"]`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the sample chosen", `document.getElementById("ax-source-label").textContent === "Sample digit 7"`)
	set("ax-eps", "96")
	if got := eval[string](t, ctx, `document.getElementById("ax-eps-out").textContent`); got != "96/255 = 0.376" {
		t.Errorf("ε label %q", got)
	}
	set("ax-steps", "30")
	set("ax-pace", "40") // slow enough to watch the panel change
	if err := chromedp.Do(ctx, chromedp.Click(`[data-testid="transform-bits"]`)); err != nil {
		t.Fatal(err)
	}
	eval[any](t, ctx, `(document.querySelector('[data-testid="transform-param-bits"]').value = "1", 0)`)
	// colours takes RGB images: the page does not let it watch an MNIST attack.
	if !eval[bool](t, ctx, `document.querySelector('[data-testid="attack-watch"][value="colours"]').disabled`) {
		t.Error("the colours model can be ticked to watch an MNIST attack")
	}

	if err := chromedp.Do(ctx, chromedp.Click(`#ax-start`)); err != nil {
		t.Fatal(err)
	}
	// While it runs, the panel shows every defence's clean verdict and live top 5.
	waitFor(t, ctx, "live frames", `document.getElementById("explorer").dataset.state === "running" && Number(document.getElementById("explorer").dataset.frames) >= 2`)
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid="defence"] [data-testid="defence-top5"] li').length`); n != 15 {
		t.Errorf("%d top-5 rows in the panel while running, want 3 defences × 5", n)
	}
	waitFor(t, ctx, "the run to finish", `document.getElementById("explorer").dataset.state === "done"`)

	names := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('[data-testid="defence"]')).map(d => d.dataset.name)`)
	if strings.Join(names, ",") != "cosine,cosine-b,cosine + 1-bit" {
		t.Fatalf("defences %v", names)
	}
	card := `document.querySelector('[data-testid="defence"][data-name="cosine"]')`
	if f := eval[string](t, ctx, card+`.dataset.flipped`); f != "true" {
		t.Fatalf("the attacked model's card is not marked flipped (%s): %s", f, eval[string](t, ctx, card+`.innerText`))
	}
	if clean := eval[string](t, ctx, card+`.querySelector('[data-testid="defence-clean"]').textContent`); !strings.Contains(clean, "7") {
		t.Errorf("clean verdict %q", clean)
	}
	flip := eval[string](t, ctx, card+`.querySelector('[data-testid="defence-flip"]').textContent`)
	if !strings.HasPrefix(flip, "Label flipped: 7 → ") || strings.HasSuffix(flip, "→ 7") {
		t.Errorf("flip text %q", flip)
	}
	if !eval[bool](t, ctx, card+`.classList.contains("flipped")`) {
		t.Error("the flipped card is not highlighted")
	}
	status := eval[string](t, ctx, `document.getElementById("ax-status").textContent`)
	if !strings.HasPrefix(status, "Done: ") {
		t.Errorf("status %q", status)
	}
	for _, id := range []string{"ax-clean", "ax-adv", "ax-pert"} {
		if src := eval[string](t, ctx, `document.getElementById("`+id+`").src`); !strings.HasPrefix(src, "blob:") {
			t.Errorf("%s shows %q", id, src)
		}
	}
	dl := eval[map[string]string](t, ctx, `(() => { const a = document.getElementById("ax-download"); return {href: a.href, name: a.download}; })()`)
	if !strings.HasPrefix(dl["href"], "blob:") || !strings.HasSuffix(dl["name"], ".png") {
		t.Errorf("download link %v", dl)
	}
	// The download is the final frame's PNG at the model's 28×28 (the CSP lets an
	// image, not a fetch, read a blob: URL).
	size, err := chromedp.Run(ctx, chromedp.Evaluate[string](`new Promise((ok, fail) => { const i = new Image();
		i.onload = () => ok(i.naturalWidth + "x" + i.naturalHeight); i.onerror = () => fail(new Error("not an image"));
		i.src = document.getElementById("ax-download").href; })`, chromedp.EvalAwaitPromise))
	if err != nil || size != "28x28" {
		t.Errorf("the download is %q (%v), want a 28x28 image", size, err)
	}
	first, _ := strconv.ParseFloat(eval[string](t, ctx, `document.getElementById("explorer").dataset.firstFrameMs`), 64)
	t.Logf("browser: first frame %.0f ms after Start (slow motion 40 ms per step); %s", first, status)

	// Save to the gallery (below), after a second, slow run stopped midway: Stop
	// ends it at once and keeps the finished run's result on offer.
	set("ax-pace", "200")
	if err := chromedp.Do(ctx, chromedp.Click(`#ax-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the second run's frames", `document.getElementById("explorer").dataset.state === "running" && Number(document.getElementById("explorer").dataset.frames) >= 1`)
	if err := chromedp.Do(ctx, chromedp.Click(`#ax-stop`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the stop", `document.getElementById("explorer").dataset.state === "stopped"`)
	if s := eval[string](t, ctx, `document.getElementById("ax-status").textContent`); !strings.HasPrefix(s, "Stopped: You stopped the run.") {
		t.Errorf("status after Stop: %q", s)
	}
	set("ax-pace", "0")
	if err := chromedp.Do(ctx, chromedp.Click(`#ax-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "a third run to finish", `document.getElementById("explorer").dataset.state === "done"`)

	// Save to the gallery, then open the permalink.
	if err := chromedp.Do(ctx, chromedp.SendKeys(`#ax-title`, "Seven, flipped"), chromedp.Click(`#ax-save`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the saved entry's link", `!!document.querySelector('[data-testid="attack-permalink"]')`)
	link := eval[string](t, ctx, `document.querySelector('[data-testid="attack-permalink"]').href`)
	if !strings.Contains(link, "/g/") {
		t.Fatalf("permalink %q", link)
	}
	if v := eval[[]string](t, ctx, `window.__csp`); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(`main`)); err != nil {
		t.Fatal(err)
	}
	if text := eval[string](t, ctx, `document.querySelector("main").innerText`); !strings.Contains(text, "Seven, flipped") {
		t.Errorf("the permalink page does not show the title:\n%s", text)
	}
}
