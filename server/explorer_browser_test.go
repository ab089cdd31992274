package server

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// explorerPage drives /attack in a browser for the tests below.
type explorerPage struct {
	t   *testing.T
	ctx context.Context
	f   *fixture
}

func (x explorerPage) open(path string) {
	x.t.Helper()
	if err := chromedp.Do(x.ctx, chromedp.Navigate(x.f.ts.URL+path), chromedp.WaitVisible(`#ax-start`)); err != nil {
		x.t.Fatal(err)
	}
}

func (x explorerPage) click(sel string) {
	x.t.Helper()
	if err := chromedp.Do(x.ctx, chromedp.Click(sel)); err != nil {
		x.t.Fatalf("click %s: %v", sel, err)
	}
}

// set gives a form control a value as a person would (input and change events).
func (x explorerPage) set(id, value string) {
	x.t.Helper()
	eval[any](x.t, x.ctx, `(() => { const e = document.getElementById(`+jsLiteral(id)+`); e.value = `+jsLiteral(value)+`;
		e.dispatchEvent(new Event("input")); e.dispatchEvent(new Event("change")); return 0; })()`)
}

func (x explorerPage) text(sel string) string {
	x.t.Helper()
	return eval[string](x.t, x.ctx, `document.querySelector(`+jsLiteral(sel)+`)?.textContent ?? ""`)
}

// run presses Start and waits for the run to end as want ("done" or "stopped").
func (x explorerPage) run(want string) {
	x.t.Helper()
	x.click(`#ax-start`)
	waitFor(x.t, x.ctx, "the run to end", `["done", "stopped", "error"].includes(document.getElementById("explorer").dataset.state)`)
	if got := eval[string](x.t, x.ctx, `document.getElementById("explorer").dataset.state`); got != want {
		x.t.Fatalf("the run ended %s, want %s: %s %s", got, want, x.text("#ax-status"), x.text("#ax-error"))
	}
}

// lastStart is the last start message the page sent on its websocket.
func (x explorerPage) lastStart() map[string]any {
	x.t.Helper()
	return eval[map[string]any](x.t, x.ctx, `window.__sent.filter((m) => m.type === "start").at(-1)`)
}

// pixels reads an image URL (blob: or not) into its gray values, in the page.
func (x explorerPage) pixels(urlJS string) []int {
	x.t.Helper()
	v, err := chromedp.Run(x.ctx, chromedp.Evaluate[[]int](`new Promise((ok, fail) => { const i = new Image();
		i.onload = () => { const c = document.createElement("canvas"); c.width = i.naturalWidth; c.height = i.naturalHeight;
			const g = c.getContext("2d"); g.drawImage(i, 0, 0); ok(Array.from(g.getImageData(0, 0, c.width, c.height).data.filter((_, k) => k % 4 === 0))); };
		i.onerror = () => fail(new Error("not an image")); i.src = `+urlJS+`; })`, chromedp.EvalAwaitPromise))
	if err != nil {
		x.t.Fatalf("read image %s: %v", urlJS, err)
	}
	return v
}

// jsLiteral quotes s as a JavaScript string literal (JSON escapes what needs it).
func jsLiteral(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// newExplorerBrowser opens a browser that records every message the page sends
// on a websocket (window.__sent).
func newExplorerBrowser(t *testing.T, f *fixture) (explorerPage, func() []string) {
	ctx, exceptions := browser(t)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__sent = []; const send = WebSocket.prototype.send;
			WebSocket.prototype.send = function (d) { if (typeof d === "string") window.__sent.push(JSON.parse(d)); return send.call(this, d); };`,
	}); err != nil {
		t.Fatal(err)
	}
	return explorerPage{t: t, ctx: ctx, f: f}, exceptions
}

// TestExplorerWatchBrowser is a visit to the explorer as a student makes it, with
// the built-in models: placeholders (not broken images) before the first run;
// the first run in slow motion, then slow motion off; the step count as asked;
// L2 beside L∞; a confidence chart per watched model beside a log-scaled loss
// with formatted ticks; the replay of any kept step; a stopped run's loss axis
// scaled to the steps run, with its download and Save offered and labelled.
func TestExplorerWatchBrowser(t *testing.T) {
	f := newBuiltinFixture(t)
	x, exceptions := newExplorerBrowser(t, f)
	x.open("/attack")

	// Before any run: placeholders, and every image shown has a picture.
	if broken := eval[[]string](t, x.ctx, `Array.from(document.images).filter((i) => i.getClientRects().length && (!i.getAttribute("src") || !i.complete || !i.naturalWidth)).map((i) => i.id || i.alt)`); len(broken) > 0 {
		t.Errorf("images with nothing to show before a run: %v", broken)
	}
	if n := eval[int](t, x.ctx, `Array.from(document.querySelectorAll(".ax-placeholder")).filter((p) => p.getClientRects().length).length`); n != 3 {
		t.Errorf("%d placeholders before a run, want 3 (clean, adversarial, perturbation)", n)
	}
	if nav := x.text(`[data-testid="nav"]`); !strings.Contains(nav, "Transfer") {
		t.Errorf("the menu %q has no Transfer", nav)
	}
	// The visit's first run is in slow motion.
	if pace := eval[string](t, x.ctx, `document.getElementById("ax-pace").value`); pace != "80" {
		t.Errorf("slow motion before the first run: %s ms, want 80", pace)
	}
	x.click(`[data-testid="attack-sample"][data-label="7"]`)
	x.run("done")
	if got := x.lastStart()["pace_ms"]; got != float64(80) {
		t.Errorf("the first run was sent with pace %v, want 80", got)
	}
	if pace := eval[string](t, x.ctx, `document.getElementById("ax-pace").value`); pace != "0" {
		t.Errorf("slow motion after the first run: %s, want off (0)", pace)
	}
	status := x.text("#ax-status")
	t.Logf("first run: %s", status)
	if !strings.Contains(status, "after 40 steps") || !strings.Contains(status, "L2 ") || !strings.Contains(status, "L∞ ") {
		t.Errorf("status after PGD-40: %q, want the 40 steps asked and L∞ beside L2", status)
	}
	if s := x.text("#ax-summary"); !strings.Contains(s, "L2 ") || !strings.Contains(s, "after 40 steps") {
		t.Errorf("summary %q", s)
	}
	// A confidence chart per watched model, beside the loss.
	if n := eval[int](t, x.ctx, `document.querySelectorAll('[data-testid="confidence-chart"] canvas[role="img"]').length`); n != 5 {
		t.Errorf("%d confidence charts, want one per watched classifier (5)", n)
	}
	mlp := eval[string](t, x.ctx, `document.querySelector('[data-testid="confidence-chart"][data-name="mnist-mlp"] canvas').getAttribute("aria-label")`)
	if !regexp.MustCompile(`^mnist-mlp: true class 7 from \d+\.\d % to \d+\.\d %; answers \d at \d+\.\d % at step 40\.$`).MatchString(mlp) {
		t.Errorf("mnist-mlp's confidence chart says %q", mlp)
	}
	// The loss spans decades: a log scale with formatted labels.
	loss := eval[map[string]string](t, x.ctx, `({...document.getElementById("ax-loss").dataset})`)
	var ticks []string
	json.Unmarshal([]byte(loss["ticks"]), &ticks)
	if loss["scale"] != "log" || loss["xmax"] != "40" {
		t.Errorf("loss chart %v, want a log scale up to step 40", loss)
	}
	for _, tk := range ticks {
		if len([]rune(tk)) > 7 || strings.Contains(tk, "0000") {
			t.Errorf("loss tick label %q is not formatted for people", tk)
		}
	}

	// Replay: step 0, then the last step.
	if eval[bool](t, x.ctx, `document.getElementById("ax-replay").hidden`) {
		t.Fatal("no replay after the run")
	}
	finalAdv := eval[string](t, x.ctx, `document.getElementById("ax-adv").src`)
	x.set("ax-scrub", "0")
	if got := x.text("#ax-step"); got != "(step 0 of 40)" {
		t.Errorf("replayed step: %q, want (step 0 of 40)", got)
	}
	if eval[string](t, x.ctx, `document.getElementById("ax-adv").src`) == finalAdv {
		t.Error("the adversarial image did not change when replaying step 0")
	}
	card := `document.querySelector('[data-testid="defence"][data-name="mnist-mlp"]')`
	if eval[string](t, x.ctx, card+`.dataset.flipped`) != "false" {
		t.Errorf("at step 0 mnist-mlp is shown flipped: %s", eval[string](t, x.ctx, card+`.innerText`))
	}
	if at := x.text(`[data-testid="scrub-label"]`); at != "step 0 of 40" {
		t.Errorf("scrubber label %q", at)
	}
	x.set("ax-scrub", eval[string](t, x.ctx, `document.getElementById("ax-scrub").max`))
	if got := x.text("#ax-step"); got != "(final, step 40 of 40)" {
		t.Errorf("the last kept step: %q", got)
	}
	if eval[string](t, x.ctx, card+`.dataset.flipped`) != "true" {
		t.Errorf("at the end mnist-mlp is not shown flipped: %s", eval[string](t, x.ctx, card+`.innerText`))
	}

	// Stop midway: the loss axis ends at the last step run; download and Save stay.
	x.set("ax-pace", "150")
	x.click(`#ax-start`)
	waitFor(t, x.ctx, "a few frames", `document.getElementById("explorer").dataset.state === "running" && Number(document.getElementById("explorer").dataset.frames) >= 3`)
	x.click(`#ax-stop`)
	waitFor(t, x.ctx, "the stop", `document.getElementById("explorer").dataset.state === "stopped"`)
	if s := x.text("#ax-status"); !strings.HasPrefix(s, "Stopped: You stopped the run. At step ") {
		t.Errorf("status after Stop: %q", s)
	}
	taken := eval[string](t, x.ctx, `document.getElementById("explorer").dataset.taken`)
	waitFor(t, x.ctx, "the loss axis scaled to the steps run", `document.getElementById("ax-loss").dataset.xmax === document.getElementById("explorer").dataset.taken`)
	if taken == "40" {
		t.Errorf("the run was stopped at step %s, the end", taken)
	}
	if eval[bool](t, x.ctx, `document.getElementById("ax-finish").hidden`) {
		t.Fatal("no result panel after Stop")
	}
	dl := eval[map[string]string](t, x.ctx, `(() => { const a = document.getElementById("ax-download"); return {href: a.href, name: a.download, text: a.textContent}; })()`)
	if !strings.HasPrefix(dl["href"], "blob:") || !strings.Contains(dl["name"], "-stopped") || !strings.Contains(dl["text"], "stopped after "+taken+" steps") {
		t.Errorf("download after Stop: %v", dl)
	}
	if got := x.pixels(jsLiteral(dl["href"])); len(got) != 28*28 {
		t.Errorf("the stopped run's download has %d pixels, want 28×28", len(got))
	}
	if eval[bool](t, x.ctx, `document.getElementById("ax-save-form").hidden`) {
		t.Error("Save is not offered after Stop")
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}

// TestExplorerOptionsBrowser sets what the command line has and the page used to
// lack (seed, step size, restarts, momentum, the C&W margin loss, least-likely
// targeting) and checks they go to the server and the run uses them: the same
// seed gives the same image; FGSM says "1 step"; Square says when it stopped
// early because it succeeded; an attack network's ε slider snaps to its heads
// and the run shows every head's verdicts instead of a loss.
func TestExplorerOptionsBrowser(t *testing.T) {
	f := newBuiltinFixture(t)
	x, exceptions := newExplorerBrowser(t, f)
	x.open("/attack")
	x.click(`[data-testid="attack-sample"][data-label="7"]`)
	x.set("ax-pace", "0")
	x.click(`#ax-advanced summary`)
	x.set("ax-steps", "10")
	x.set("ax-seed", "7")
	x.set("ax-alpha", "12.5")
	x.set("ax-restarts", "2")
	x.set("ax-loss-kind", "margin")
	x.click(`#ax-least-likely`)
	if !eval[bool](t, x.ctx, `document.getElementById("ax-momentum").disabled`) {
		t.Error("momentum is offered for PGD")
	}
	x.run("done")
	sent := x.lastStart()
	for k, want := range map[string]any{"seed": 7.0, "alpha": 12.5, "restarts": 2.0, "loss": "margin", "target_mode": "least-likely"} {
		if sent[k] != want {
			t.Errorf("start message %s = %v, want %v (sent %v)", k, sent[k], want, sent)
		}
	}
	if _, ok := sent["target"]; ok {
		t.Errorf("least-likely sent with a target class too: %v", sent)
	}
	if s := x.text("#ax-summary"); !strings.Contains(s, "seed 7") {
		t.Errorf("summary %q, want seed 7", s)
	}
	first := x.pixels(`document.getElementById("ax-download").href`)
	x.run("done")
	if again := x.pixels(`document.getElementById("ax-download").href`); !equalInts(first, again) {
		t.Error("the same seed and settings gave another image")
	}

	// MI-FGSM takes a momentum, not restarts.
	x.set("ax-attack", "mi-fgsm")
	x.set("ax-momentum", "0.5")
	if !eval[bool](t, x.ctx, `document.getElementById("ax-restarts").disabled`) {
		t.Error("restarts are offered for MI-FGSM")
	}
	x.run("done")
	if sent := x.lastStart(); sent["momentum"] != 0.5 || sent["restarts"] != nil {
		t.Errorf("MI-FGSM start message %v, want momentum 0.5 and no restarts", sent)
	}

	// APGD-T sets its own step size and loss and picks its own targets: those
	// options are off and not sent; its restarts are.
	x.set("ax-attack", "apgd-t")
	for _, id := range []string{"ax-alpha", "ax-loss-kind", "ax-targeted", "ax-least-likely"} {
		if !eval[bool](t, x.ctx, `document.getElementById("`+id+`").disabled`) {
			t.Errorf("%s is offered for APGD-T", id)
		}
	}
	x.run("done")
	if sent := x.lastStart(); sent["restarts"] != 2.0 || sent["alpha"] != nil || sent["loss"] != nil || sent["target_mode"] != nil || sent["target"] != nil {
		t.Errorf("APGD-T start message %v, want restarts 2 and no step size, loss or target", sent)
	}

	// FGSM: one step, said as one.
	x.set("ax-attack", "fgsm")
	x.run("done")
	if s := x.text("#ax-status"); !strings.Contains(s, "after 1 step.") {
		t.Errorf("FGSM status %q, want after 1 step", s)
	}

	// Square on mnist-mlp at ε 0.3 succeeds long before 1000 queries.
	x.click(`#ax-least-likely`)
	x.set("ax-attack", "square")
	x.set("ax-eps", "76")
	x.set("ax-steps", "1000")
	x.run("done")
	early := regexp.MustCompile(`Square Attack stopped after (\d+) of 1000 queries: the attacked model's answer had changed\.`)
	if s := x.text("#ax-summary"); !early.MatchString(s) {
		t.Errorf("Square's summary %q does not say it stopped early because it succeeded", s)
	} else {
		t.Logf("Square: %s", s)
	}

	// The attack network: ε snaps to its heads; its heads' verdicts replace the loss.
	x.set("ax-attack", "net:mnist-attack-net")
	x.set("ax-eps", "60")
	if eps := eval[string](t, x.ctx, `document.getElementById("ax-eps").value`); eps != "51" {
		t.Errorf("ε 60/255 with the attack network: the slider says %s, want the 51/255 head", eps)
	}
	if note := x.text("#ax-eps-note"); !strings.Contains(note, "25/255, 51/255, 76/255") || !strings.Contains(note, "snaps") {
		t.Errorf("ε note %q", note)
	}
	x.run("done")
	if sent := x.lastStart(); sent["eps"] != 51.0 {
		t.Errorf("the network ran at ε %v, want 51", sent["eps"])
	}
	if eval[bool](t, x.ctx, `document.getElementById("ax-head-verdicts").hidden || !document.getElementById("ax-curve").hidden`) {
		t.Error("the attack network shows a loss box instead of its heads' verdicts")
	}
	if n := eval[int](t, x.ctx, `document.querySelectorAll('[data-testid="head-row"]').length`); n != 3 {
		t.Errorf("%d head rows, want 3", n)
	}
	if n := eval[int](t, x.ctx, `document.querySelectorAll('[data-testid="head-row"] [data-testid="head-verdict"]').length`); n != 15 {
		t.Errorf("%d head verdicts, want 3 heads × 5 defences", n)
	}
	if s := x.text("#ax-status"); !strings.Contains(s, "after one forward pass") {
		t.Errorf("network status %q", s)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}

// TestExplorerHandOffBrowser: what comes into the explorer from elsewhere. A bad
// upload is refused when chosen; a photo is flagged as unlike the digits the
// models know; "Attack this image" on the classify page carries a sample, or an
// upload, with its model; Re-run of a saved run (/attack?from=SLUG) brings every
// setting and the stored image, and Start makes the stored adversarial image again.
func TestExplorerHandOffBrowser(t *testing.T) {
	f := newBuiltinFixture(t)
	x, exceptions := newExplorerBrowser(t, f)
	dir := t.TempDir()
	notImage := filepath.Join(dir, "notes.png")
	if err := os.WriteFile(notImage, []byte("these are not the pixels you are looking for"), 0o644); err != nil {
		t.Fatal(err)
	}
	photo, err := filepath.Abs("../inference/testdata/video-001.lossy.webp")
	if err != nil {
		t.Fatal(err)
	}

	x.open("/attack")
	if err := chromedp.Do(x.ctx, chromedp.SetUploadFiles(`#ax-file`, []string{notImage})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, x.ctx, "the refusal", `document.getElementById("ax-error").textContent !== ""`)
	if msg := x.text("#ax-error"); !strings.HasPrefix(msg, "“notes.png” cannot be used: ") {
		t.Errorf("bad upload: %q", msg)
	}
	if got := x.text("#ax-source-label"); got != "No image chosen yet." {
		t.Errorf("after a bad upload the source is %q", got)
	}
	if err := chromedp.Do(x.ctx, chromedp.SetUploadFiles(`#ax-file`, []string{photo})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, x.ctx, "the photo chosen", `document.getElementById("ax-source-label").textContent.includes("video-001")`)
	if !eval[bool](t, x.ctx, `document.getElementById("ax-ood").classList.contains("unlike")`) {
		t.Errorf("a photo is not flagged: %q", x.text("#ax-ood"))
	}
	if v := x.text(`[data-testid="ood-verdict"]`); !strings.HasPrefix(v, "The MNIST models only know handwritten digits, and this image is not like one") {
		t.Errorf("photo verdict %q", v)
	}

	// From the classify page: a sample, then an upload.
	if err := chromedp.Do(x.ctx, chromedp.Navigate(f.ts.URL+"/"), chromedp.WaitVisible(`#pad`)); err != nil {
		t.Fatal(err)
	}
	x.click(`[data-testid="sample"][data-label="3"]`)
	waitFor(t, x.ctx, "the results", `!!document.querySelector('[data-model="mnist-cnn-small"] [data-testid="attack-this"]')`)
	if eval[bool](t, x.ctx, `document.querySelector('[data-testid="ood"]').classList.contains("unlike")`) {
		t.Errorf("an MNIST test digit is flagged as unlike MNIST: %q", x.text(`[data-testid="ood"]`))
	}
	x.click(`[data-model="mnist-cnn-small"] [data-testid="attack-this"]`)
	waitFor(t, x.ctx, "the explorer with the sample", `document.getElementById("explorer")?.dataset.arrived === "true"`)
	if got := x.text("#ax-source-label"); got != "Sample digit 3" {
		t.Errorf("hand-off of a sample: the explorer has %q", got)
	}
	if s := eval[[]string](t, x.ctx, `Array.from(document.querySelectorAll('input[name="surrogate"]:checked')).map((b) => b.value)`); strings.Join(s, ",") != "mnist-cnn-small" {
		t.Errorf("hand-off: attacked models %v, want mnist-cnn-small", s)
	}
	if err := chromedp.Do(x.ctx, chromedp.Navigate(f.ts.URL+"/"), chromedp.WaitVisible(`#pad`), chromedp.SetUploadFiles(`#image`, []string{photo})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, x.ctx, "the photo's results", `!!document.querySelector('[data-model="mnist-mlp"] [data-testid="attack-this"]') && !!document.querySelector('[data-testid="ood"].unlike')`)
	x.click(`[data-model="mnist-mlp"] [data-testid="attack-this"]`)
	waitFor(t, x.ctx, "the explorer with the upload", `document.getElementById("explorer")?.dataset.arrived === "true" && document.getElementById("explorer").dataset.checking === "false"`)
	if got := x.text("#ax-source-label"); got != "Upload “video-001.lossy.webp”" {
		t.Errorf("hand-off of an upload: the explorer has %q (%s)", got, x.text("#ax-error"))
	}

	// Save a run with every option set, then Re-run it.
	x.open("/attack")
	x.click(`[data-testid="attack-sample"][data-label="9"]`)
	x.set("ax-pace", "0")
	x.set("ax-attack", "pgd")
	x.set("ax-eps", "50")
	x.set("ax-steps", "12")
	x.set("ax-seed", "4242")
	x.set("ax-alpha", "7")
	x.set("ax-loss-kind", "margin")
	x.click(`[data-testid="transform-median"]`)
	x.run("done")
	x.click(`#ax-save`)
	waitFor(t, x.ctx, "the permalink", `!!document.querySelector('[data-testid="attack-permalink"]')`)
	link := eval[string](t, x.ctx, `document.querySelector('[data-testid="attack-permalink"]').href`)
	slug := link[strings.LastIndex(link, "/")+1:]
	before := x.lastStart()

	x.open("/attack?from=" + slug)
	waitFor(t, x.ctx, "the entry's settings", `document.getElementById("explorer").dataset.arrived === "true"`)
	if msg := x.text("#ax-error"); msg != "" {
		t.Fatalf("Re-run: %s", msg)
	}
	if got := x.text("#ax-source-label"); got != "The image of gallery entry "+slug {
		t.Errorf("Re-run source %q", got)
	}
	if s := x.text("#ax-status"); !strings.HasPrefix(s, "Every setting and the image of gallery entry "+slug+" are loaded: press Start") {
		t.Errorf("Re-run status %q", s)
	}
	x.set("ax-pace", "0")
	x.run("done")
	after := x.lastStart()
	for _, k := range []string{"attack", "eps", "steps", "seed", "alpha", "loss", "surrogates", "watch"} {
		b, _ := json.Marshal(before[k])
		a, _ := json.Marshal(after[k])
		if !bytes.Equal(a, b) {
			t.Errorf("Re-run sent %s = %s, the saved run %s", k, a, b)
		}
	}
	if after["source"] != "gallery" || after["entry"] != slug {
		t.Errorf("Re-run source %v entry %v", after["source"], after["entry"])
	}
	got := x.pixels(`document.getElementById("ax-download").href`)
	resp, err := http.Get(f.ts.URL + "/g/" + slug + "/adversarial.png")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	stored, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("stored adversarial image: %v", err)
	}
	if want := grayValues(stored); !equalInts(got, want) {
		t.Errorf("Re-run made another adversarial image than the stored one (%d values against %d)", len(got), len(want))
	} else {
		t.Logf("Re-run of %s: the same %d pixel values as the stored adversarial image", slug, len(got))
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}

func grayValues(img image.Image) []int {
	b := img.Bounds()
	out := make([]int, 0, b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, _, _, _ := img.At(x, y).RGBA()
			out = append(out, int(r>>8))
		}
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
