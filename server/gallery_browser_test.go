package server

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestPermalinkBrowser opens a saved run's permalink in a real headless Chromium:
// Verify replays it on the server and the page says "Reproduced bit-for-bit"; the
// gain control redraws the perturbation map in place; the page runs under the CSP
// without a violation or a script error.
func TestPermalinkBrowser(t *testing.T) {
	f := newExplorerFixture(t, nil)
	e, _ := savedRun(t, f, pgdWatched())
	ctx, exceptions := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/g/"+e.Slug), chromedp.WaitVisible(`#verify`)); err != nil {
		t.Fatalf("open the permalink (Verify shows once entry.js runs): %v", err)
	}
	if !eval[bool](t, ctx, `document.getElementById("gain-apply").hidden`) {
		t.Error("the gain form's Show button is still there with the script running")
	}

	if err := chromedp.Do(ctx, chromedp.Click(`#verify`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the verification", `["reproduced", "differs", "error"].includes(document.getElementById("verify-result").dataset.state)`)
	if got := eval[string](t, ctx, `document.getElementById("verify-result").innerText`); !strings.Contains(got, "Reproduced bit-for-bit") ||
		!strings.Contains(got, "0 of 784 pixel values differ") {
		t.Errorf("the verification says %q", got)
	}

	// The gain control: ×4 redraws the map and says where its colours are full.
	eval[any](t, ctx, `(() => { const s = document.getElementById("gain"); s.value = "4"; s.dispatchEvent(new Event("change")); return 0; })()`)
	waitFor(t, ctx, "the map at gain 4", `document.getElementById("perturbation").complete && document.getElementById("perturbation").src.endsWith("/perturbation.png?gain=4")`)
	if w := eval[int](t, ctx, `document.getElementById("perturbation").naturalWidth`); w != 28 {
		t.Errorf("the map at gain 4 loaded %d px wide, want 28", w)
	}
	if got := eval[string](t, ctx, `document.getElementById("full-at").textContent + " " + location.search`); got != "24 ?gain=4" {
		t.Errorf("full colour from ±%s", got)
	}
	if v := eval[[]string](t, ctx, `window.__csp`); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}
