package server

import (
	"strings"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// trackSockets keeps every WebSocket a page opens in window.__sockets, so a test
// can send on the page's own socket what the page never would.
const trackSockets = `(() => { const W = window.WebSocket; window.__sockets = [];
	window.WebSocket = class extends W { constructor(...a) { super(...a); window.__sockets.push(this); } }; })();`

// burstOnPageSocket sends 100 messages the server cannot use on the page's socket.
const burstOnPageSocket = `(() => { const ws = window.__sockets[window.__sockets.length - 1];
	for (let i = 0; i < 100; i++) ws.send('{"type":"bogus"}'); return 0; })()`

// Point 4: when the server closes a page's socket with a reason (1008), the
// explorer and the sweep page show it, even with no run in progress.
func TestSocketCloseReasonShownBrowser(t *testing.T) {
	f := newExplorerFixture(t, nil)
	ctx, exceptions := browser(t)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: trackSockets}); err != nil {
		t.Fatal(err)
	}
	set := func(id, value string) {
		t.Helper()
		eval[any](t, ctx, `(() => { const e = document.getElementById("`+id+`"); e.value = "`+value+`";
			e.dispatchEvent(new Event("input")); e.dispatchEvent(new Event("change")); return 0; })()`)
	}
	for _, pg := range []struct {
		path, prefix, root, sample string
		setup                      func()
	}{
		{"/attack", "ax", "explorer", `[data-testid="attack-sample"][data-label="7"]`, func() { set("ax-steps", "3") }},
		{"/sweep", "sw", "sweep", `[data-testid="sweep-sample"][data-label="7"]`, func() { set("sw-eps", "0:0.3:0.15"); set("sw-steps", "3") }},
	} {
		if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+pg.path), chromedp.WaitVisible("#"+pg.prefix+"-start")); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx, chromedp.Click(pg.sample)); err != nil {
			t.Fatal(err)
		}
		pg.setup()
		if err := chromedp.Do(ctx, chromedp.Click("#"+pg.prefix+"-start")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, pg.path+": the run to finish", `document.getElementById("`+pg.root+`").dataset.state === "done"`)
		eval[int](t, ctx, burstOnPageSocket)
		waitFor(t, ctx, pg.path+": the close reason shown", `document.getElementById("`+pg.prefix+`-error").textContent === `+jsString(tooManyRefused))
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Fatalf("script errors: %s", strings.Join(ex, "; "))
	}
}

// jsString quotes s as a JavaScript string literal (s holds no quotes or backslashes).
func jsString(s string) string { return `"` + s + `"` }
