package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdpinput "github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// screenshotEnv, when set to 1, makes the built-in-model browser tests save their
// screenshots as docs/screenshots/*.png (the README's pictures): `go tool task screenshot`.
const screenshotEnv = "GIBBON_UPDATE_SCREENSHOT"

// chromiumPath finds Debian's chromium (what .ci/run installs) or another Chrome.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: install it (apt-get install chromium); .ci/run does")
	return ""
}

// browser starts a headless Chromium with the options seen to work on these
// machines (as root, offline), and collects the page's uncaught exceptions.
func browser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1400, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	var mu sync.Mutex
	var exceptions []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			exceptions = append(exceptions, fmt.Sprintf("%s (%s:%d)", msg, d.URL, d.LineNumber+1))
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	// Record Content-Security-Policy violations from the first byte of every page.
	// (A script added through DevTools is not subject to the page's CSP.)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__csp = []; document.addEventListener("securitypolicyviolation", e => window.__csp.push(e.violatedDirective + " " + e.blockedURI));`,
	}); err != nil {
		t.Fatal(err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), exceptions...)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitFor polls a JavaScript condition (in Go: the CSP forbids the eval that
// chromedp.Poll uses in the page).
func waitFor(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("main").innerText`))
			t.Fatalf("waiting for %s: %v\npage text:\n%s", what, err, html)
		}
	}
}

// drawingShown is true once the results shown are for the pad as it is now (not
// for a stroke in progress).
const drawingShown = `document.getElementById("results").dataset.drawing === document.getElementById("pad").dataset.version`

const topTemplate = `document.querySelector('[data-model="templates"] [data-testid="prediction"]')?.dataset.label`

// TestBrowser drives the home page in a real headless Chromium: the page's script
// runs under the CSP without a single violation, an uploaded digit is classified,
// and a digit drawn on the canvas with the mouse is classified as it is drawn.
func TestBrowser(t *testing.T) {
	f := newFixture(t, nil)
	ctx, exceptions := browser(t)
	seven := filepath.Join(t.TempDir(), "seven.png")
	if err := os.WriteFile(seven, pngBytes(t, drawShape("7", 240, 200)), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/"), chromedp.WaitVisible(`#pad`)); err != nil {
		t.Fatalf("open the page (the drawing pad shows once app.js runs): %v", err)
	}

	// Upload: choosing a file classifies it at once, without a page load.
	if err := chromedp.Do(ctx, chromedp.SetUploadFiles(`#image`, []string{seven})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the upload's results", topTemplate+` === "7"`)
	if src := eval[string](t, ctx, `document.querySelector('[data-testid="result-source"]').textContent`); !strings.Contains(src, "upload “seven.png”") {
		t.Errorf("source %q", src)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid="model-result"]').length`); n != 2 {
		t.Errorf("%d model results", n)
	}
	if loc := eval[string](t, ctx, `location.pathname`); loc != "/" {
		t.Errorf("the page navigated to %s; results should come in place", loc)
	}
	rendering := eval[string](t, ctx, `getComputedStyle(document.querySelector('[data-testid="model-input"]')).imageRendering`)
	if rendering != "pixelated" && rendering != "crisp-edges" {
		t.Errorf("model input image-rendering %q: enlarged without smoothing is the point", rendering)
	}

	// Draw a "1": one vertical stroke with the mouse.
	drawStrokes(t, ctx, [][2][2]float64{{{0.5, 0.15}, {0.5, 0.85}}})
	waitFor(t, ctx, "the drawing's results", drawingShown)
	if src, top := eval[string](t, ctx, `document.querySelector('[data-testid="result-source"]').textContent`), eval[string](t, ctx, topTemplate); !strings.HasPrefix(src, "your drawing") || top != "1" {
		t.Errorf("drawing: source %q, top-1 %q, want your drawing and 1", src, top)
	}
	if steps := eval[string](t, ctx, `document.querySelector('[data-model="templates"] [data-testid="steps"]').textContent`); !strings.Contains(steps, "inverted") {
		t.Errorf("drawing steps %q: black on white must be inverted", steps)
	}

	if v := eval[[]string](t, ctx, `window.__csp`); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}

	// Clearing the pad clears the results.
	if err := chromedp.Do(ctx, chromedp.Click(`#clear`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "cleared results", `!!document.querySelector('[data-testid="results-empty"]')`)

	// The violation detector works: an inline style is a violation.
	eval[any](t, ctx, `document.body.insertAdjacentHTML("beforeend", '<div style="color: red">x</div>'), 0`)
	waitFor(t, ctx, "a CSP violation report", `window.__csp.length > 0`)

}

// drawStrokes draws straight strokes on the pad with the mouse; points are
// fractions of the pad's width and height.
func drawStrokes(t *testing.T, ctx context.Context, strokes [][2][2]float64) {
	t.Helper()
	box := eval[map[string]float64](t, ctx, `(() => { const r = document.getElementById("pad").getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; })()`)
	at := func(p [2]float64) (float64, float64) { return box["x"] + box["w"]*p[0], box["y"] + box["h"]*p[1] }
	held := func(p *cdpinput.DispatchMouseEventParams) { p.Button, p.Buttons = cdpinput.MouseButtonLeft, 1 }
	for _, st := range strokes {
		x0, y0 := at(st[0])
		x1, y1 := at(st[1])
		steps := []chromedp.Action[chromedp.Void]{chromedp.MouseEvent(chromedp.MousePressed, x0, y0, held, chromedp.ClickCount(1))}
		for i := 1; i <= 20; i++ {
			f := float64(i) / 20
			steps = append(steps, chromedp.MouseEvent(chromedp.MouseMoved, x0+(x1-x0)*f, y0+(y1-y0)*f, held))
		}
		steps = append(steps, chromedp.MouseEvent(chromedp.MouseReleased, x1, y1, held, chromedp.ClickCount(1)))
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
}
