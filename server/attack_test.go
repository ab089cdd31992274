package server

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"gibbon/inference"
	"gibbon/inference/engine"
)

// TestExplorerRefusesBadInput sends one bad request after another on one socket:
// each gets an error message saying what to change, the socket stays open, and a
// good run afterwards works (nothing is lost).
func TestExplorerRefusesBadInput(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) { c.MaxSteps = 300 })
	c := dial(t, f)
	with := func(edit func(m map[string]any)) map[string]any {
		m := pgd(96, 10)
		edit(m)
		return m
	}
	cases := []struct {
		name string
		msg  any
		want string
	}{
		{"unknown attack", with(func(m map[string]any) { m["attack"] = "deepfool" }), `Unknown attack "deepfool"`},
		{"eps 0", with(func(m map[string]any) { m["eps"] = 0 }), "from 1 to 255"},
		{"eps 256", with(func(m map[string]any) { m["eps"] = 256 }), "from 1 to 255"},
		{"eps between steps", with(func(m map[string]any) { m["eps"] = 2.5 }), "whole number of /255 steps"},
		{"eps as text", with(func(m map[string]any) { m["eps"] = "8/255" }), "wrong value for eps: want a number"},
		{"steps over the cap", with(func(m map[string]any) { m["steps"] = 301 }), "between 1 and 300"},
		{"no steps", with(func(m map[string]any) { m["steps"] = 0 }), "between 1 and 300"},
		{"square queries", with(func(m map[string]any) { m["attack"], m["steps"] = "square", 5000 }), "Queries must be between"},
		{"unknown model", with(func(m map[string]any) { m["surrogates"] = []string{"resnet9000"} }), `no classifier called "resnet9000" to attack`},
		{"no model", with(func(m map[string]any) { m["surrogates"] = []string{} }), "at least one model to attack"},
		{"mixed inputs", with(func(m map[string]any) { m["surrogates"] = []string{"cosine", "colours"} }), "take the same input together"},
		{"target out of range", with(func(m map[string]any) { m["target"] = 10 }), "Target class 10 does not exist"},
		{"unknown watch", with(func(m map[string]any) { m["watch"] = []map[string]any{{"model": "nope"}} }), `no classifier called "nope" to watch`},
		{"watch of another input", with(func(m map[string]any) { m["watch"] = []map[string]any{{"model": "colours"}} }), "cannot watch this attack"},
		{"no defence", with(func(m map[string]any) { m["watch"] = []map[string]any{} }), "at least one defence"},
		{"unknown defence", with(func(m map[string]any) { m["watch"] = []map[string]any{{"model": "cosine", "defence": "blur"}} }), `Unknown defence "blur"`},
		{"defence parameter", with(func(m map[string]any) {
			m["watch"] = []map[string]any{{"model": "cosine", "defence": "jpeg", "param": 0}}
		}), "quality must be between 1 and 100"},
		{"defence twice", with(func(m map[string]any) { m["watch"] = []map[string]any{{"model": "cosine"}, {"model": "cosine"}} }), "listed twice"},
		{"unknown sample", with(func(m map[string]any) { m["sample"] = "digit-9-9.png" }), `no sample called "digit-9-9.png"`},
		{"no image", with(func(m map[string]any) { m["source"] = "" }), "Choose an image file"},
		{"upload too large", with(func(m map[string]any) { m["source"], m["image_bytes"] = "upload", 20_000_000 }), "upload limit"},
		{"slow motion", with(func(m map[string]any) { m["pace_ms"] = 5000 }), "Slow motion must be between 0 and 1000 ms"},
		{"gain", with(func(m map[string]any) { m["gain"] = 100 }), "gain must be between"},
		{"no type", map[string]any{"attack": "pgd"}, "no type"},
		{"unknown type", map[string]any{"type": "launch"}, "Unknown message type launch"},
		{"gain message", map[string]any{"type": "gain", "gain": 0}, "gain must be between"},
	}
	for _, tc := range cases {
		c.send(tc.msg)
		m := c.read(10 * time.Second)
		if m.Type != "error" || !strings.Contains(m.Message, tc.want) {
			t.Errorf("%s: got %s %q, want an error saying %q", tc.name, m.Type, m.Message, tc.want)
		}
	}
	// Not JSON at all, and an image nobody announced.
	if err := c.conn.WriteMessage(1, []byte("{start")); err != nil {
		t.Fatal(err)
	}
	if m := c.read(5 * time.Second); m.Type != "error" || !strings.Contains(m.Message, "not valid JSON") {
		t.Errorf("bad JSON: %+v", m)
	}
	c.sendBinary([]byte{1, 2, 3})
	if m := c.read(5 * time.Second); m.Type != "error" || !strings.Contains(m.Message, "without a start message") {
		t.Errorf("stray image: %+v", m)
	}

	// Bad images: decoded after the start message, answered as a run error.
	for _, img := range []struct {
		name string
		data []byte
		want string
	}{
		{"text", []byte("this is not an image at all"), "not an image"},
		{"blank", pngBytes(t, drawShape("none", 40, 40)), "blank"},
	} {
		m := pgd(96, 10)
		m["source"], m["image_bytes"] = "upload", len(img.data)
		delete(m, "sample")
		c.send(m)
		c.sendBinary(img.data)
		got := c.read(10 * time.Second)
		if got.Type != "error" || !strings.Contains(strings.ToLower(got.Message), img.want) {
			t.Errorf("%s image: %s %q, want an error saying %q", img.name, got.Type, got.Message, img.want)
		}
	}

	// After all that, the same socket runs an uploaded drawing.
	seven := pngBytes(t, drawShape("7", 120, 120))
	m := pgd(96, 10)
	m["source"], m["image_bytes"] = "drawing", len(seven)
	delete(m, "sample")
	c.send(m)
	c.sendBinary(seven)
	started, _ := c.until("started", 30*time.Second)
	if len(started.Defences) == 0 || started.Defences[0].Clean[0].Label != "7" {
		t.Fatalf("the drawing's run: %+v", started)
	}
	// A second start while one runs replaces it: the first ends stopped, saying
	// why, and the second runs to the end.
	c.send(pgd(96, 10))
	first, _ := c.until("done", 30*time.Second)
	if first.Run != started.Run || !first.Stopped || first.Reason != replacedReason {
		t.Fatalf("the replaced run ended %+v", first)
	}
	second, _ := c.until("started", 30*time.Second)
	if second.Run <= started.Run {
		t.Fatalf("the newer start ran as run %d after run %d", second.Run, started.Run)
	}
	if done, _ := c.until("done", 30*time.Second); done.Run != second.Run || done.Stopped {
		t.Fatalf("the newer run ended %+v", done)
	}
	if n := strings.Count(f.logs.String(), "panic"); n > 0 {
		t.Fatalf("the server panicked:\n%s", f.logs.String())
	}
}

// TestExplorerTargetedAndBlackBox runs a targeted PGD (it reaches the target) and
// Square Attack (predictions only) through the explorer.
func TestExplorerTargetedAndBlackBox(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dial(t, f)
	m := pgd(128, 40)
	m["target"] = 1
	c.send(m)
	started, msgs := c.until("done", 60*time.Second)
	var last wsMsg
	for _, x := range msgs {
		if x.Type == "frame" {
			last = x
		}
	}
	if started.Stopped || last.Defences[0].Top[0].Label != "1" {
		t.Fatalf("targeted PGD towards 1 ended at %+v", last.Defences[0].Top)
	}

	sq := pgd(96, 60)
	sq["attack"] = "square"
	c.send(sq)
	done, msgs := c.until("done", 60*time.Second)
	var frames int
	for _, x := range msgs {
		if x.Type == "frame" {
			frames++
			if x.Linf > 96 {
				t.Fatalf("square frame L∞ %d > 96", x.Linf)
			}
		}
	}
	if done.Stopped || frames == 0 {
		t.Fatalf("square: %d frames, %+v", frames, done)
	}

	// AutoAttack's frames name the stage running; it starts with APGD-CE.
	aa := pgd(96, 5)
	aa["attack"] = "autoattack"
	// Paced, so every step's frame is sent: unpaced, a fast machine coalesces the
	// frames of a run this short into the final one.
	aa["pace_ms"] = 50
	c.send(aa)
	done, msgs = c.until("done", 60*time.Second)
	var stages []string
	for _, x := range msgs {
		if x.Type == "frame" && !x.Final {
			stages = append(stages, x.Stage)
		}
	}
	if done.Stopped || len(stages) == 0 || stages[0] != "apgd-ce" {
		t.Fatalf("autoattack: stages %v, %+v", stages, done)
	}
	// It sets its own step size and loss: a page sending one is told so.
	aa["loss"] = "margin"
	c.send(aa)
	if e, _ := c.until("error", 10*time.Second); !strings.Contains(e.Message, "autoattack has no loss option") {
		t.Fatalf("autoattack with a loss: %q", e.Message)
	}
}

// TestExplorerGainRedrawsThePerturbation: after a run, a new gain redraws the last
// perturbation (more saturated at a higher gain).
func TestExplorerGainRedrawsThePerturbation(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dial(t, f)
	c.send(pgd(16, 10))
	_, msgs := c.until("done", 60*time.Second)
	var final wsMsg
	for _, m := range msgs {
		if m.Final {
			final = m
		}
	}
	c.send(map[string]any{"type": "gain", "gain": 8})
	p := c.read(10 * time.Second)
	if p.Type != "perturbation" || p.Gain != 8 || p.Run != final.Run {
		t.Fatalf("after a gain change: %+v", p)
	}
	saturation := func(data []byte) int {
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		s := 0
		b := img.Bounds()
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				s += int(max(r, g, bl)-min(r, g, bl)) >> 8
			}
		}
		return s
	}
	if before, after := saturation(final.images["perturbation"]), saturation(p.images["perturbation"]); after <= before {
		t.Fatalf("gain ×8 gave saturation %d, gain ×1 %d", after, before)
	}
}

// TestExplorerAttackNetwork runs an attack network: one frame with every ε head,
// each within its own bound, and the head nearest the chosen ε against the defences.
func TestExplorerAttackNetwork(t *testing.T) {
	net := modelFile{inference.ModelEntry{Name: "pushnet", File: "pushnet.onnx", Task: inference.TaskAttackNetwork,
		Input: mnistContract, Attack: &inference.AttackNetInfo{Eps: []float64{0.1, 0.2, 0.3}, Targets: []string{"cosine"}}}, attackNetModel()}
	f := newExplorerFixture(t, nil, net)
	c := dial(t, f)
	m := pgd(51, 1) // 51/255 = 0.2: the middle head
	m["attack"] = "net:pushnet"
	m["surrogates"] = nil
	c.send(m)
	started, _ := c.until("started", 30*time.Second)
	clean := decodeGray(t, started.images["clean"])
	done, msgs := c.until("done", 30*time.Second)
	var frame wsMsg
	for _, x := range msgs {
		if x.Type == "frame" {
			frame = x
		}
	}
	if !frame.Final || frame.Chosen != "ε 0.2 (51/255)" || done.Stopped {
		t.Fatalf("network frame: final %v chosen %q; done %+v", frame.Final, frame.Chosen, done)
	}
	heads := 0
	for _, im := range frame.metas {
		if im.Role != "head" {
			continue
		}
		heads++
		limit := map[string]int{"ε 0.1 (25.5/255)": 25, "ε 0.2 (51/255)": 51, "ε 0.3 (76.5/255)": 76}[im.Label]
		img := decodeGray(t, frame.images["head:"+im.Label])
		worst := 0
		for p := range img.Pix {
			d := int(img.Pix[p]) - int(clean.Pix[p])
			worst = max(worst, d, -d)
		}
		if limit == 0 || worst > limit || worst != im.Linf || worst < limit-1 {
			t.Fatalf("head %q: L∞ %d/255 (says %d), bound %d", im.Label, worst, im.Linf, limit)
		}
	}
	if heads != 3 || frame.Linf != 51 {
		t.Fatalf("%d heads, chosen L∞ %d", heads, frame.Linf)
	}
	// Targeting is not something an attack network does.
	m["target"] = 3
	c.send(m)
	if e := c.read(10 * time.Second); e.Type != "error" || !strings.Contains(e.Message, "untargeted") {
		t.Fatalf("targeted network: %+v", e)
	}
}

// TestAttackPage checks the page: menu entry, attacks, models with their input
// keys, the transforms, the save form, and the scripts it loads.
func TestAttackPage(t *testing.T) {
	f := newExplorerFixture(t, nil)
	resp, err := http.Get(f.ts.URL + "/attack")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("GET /attack: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if cur := doc.Find(`[data-testid="nav-link"][aria-current="page"]`).Text(); cur != "Attack" {
		t.Errorf("current menu entry %q", cur)
	}
	var attacks []string
	doc.Find(`#ax-attack option`).Each(func(_ int, s *goquery.Selection) { attacks = append(attacks, s.AttrOr("value", "")) })
	if strings.Join(attacks, ",") != "fgsm,bim,pgd,mi-fgsm,di-fgsm,m-di2-fgsm,square,noise,apgd-ce,apgd-dlr,apgd-t,fab-t,autoattack" {
		t.Errorf("attacks %v", attacks)
	}
	if sel := doc.Find(`#ax-attack option[selected]`).AttrOr("value", ""); sel != "pgd" {
		t.Errorf("default attack %q", sel)
	}
	keys := map[string]string{}
	doc.Find(`[data-testid="attack-surrogate"]`).Each(func(_ int, s *goquery.Selection) {
		keys[s.AttrOr("value", "")] = s.AttrOr("data-input-key", "")
	})
	if len(keys) != 3 || keys["cosine"] != keys["cosine-b"] || keys["cosine"] == keys["colours"] {
		t.Errorf("surrogates and input keys: %v", keys)
	}
	if checked := doc.Find(`[data-testid="attack-surrogate"][checked]`).AttrOr("value", ""); checked != "cosine" {
		t.Errorf("checked surrogate %q (the first not adversarially trained)", checked)
	}
	if n := doc.Find(`[data-testid="attack-transform"]`).Length(); n != 4 {
		t.Errorf("%d transforms", n)
	}
	// A transform defence that holds only against attacks ignoring it says so.
	if c := doc.Find(`[data-testid="caveat-bits"]`).Text(); !strings.Contains(c, "Athalye") || doc.Find(`[data-testid="caveat-jpeg"]`).Length() != 0 {
		t.Errorf("transform caveats: bits %q, jpeg shown %v", c, doc.Find(`[data-testid="caveat-jpeg"]`).Length() != 0)
	}
	if doc.Find(`[data-testid="attack-save"]`).Length() != 1 || doc.Find(`#explorer`).AttrOr("data-gallery", "") != "true" {
		t.Error("no save form although the gallery is there")
	}
	if sock := doc.Find(`#explorer`).AttrOr("data-socket", ""); sock != attackSocketPath {
		t.Errorf("socket %q", sock)
	}
	scripts := doc.Find(`script[src*="/static/attack."]`).Length()
	styles := doc.Find(`link[href*="/static/attack."]`).Length()
	if scripts != 1 || styles != 1 {
		t.Errorf("%d attack scripts, %d stylesheets", scripts, styles)
	}
	if doc.Find(`[style]`).Length() > 0 || doc.Find(`script:not([src])`).Length() > 0 {
		t.Error("inline style or script on the page (the CSP forbids them)")
	}

	// Without the explorer's dependencies, neither the page nor its menu entry exists.
	plain := newFixture(t, nil)
	resp2, err := http.Get(plain.ts.URL + "/attack")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotFound {
		t.Errorf("/attack without the explorer: %d", resp2.StatusCode)
	}
}

// TestOutboxKeepsOnlyTheNewestFrame: frames offered while nothing is written
// replace each other; control messages keep their order; a final frame supersedes
// an unsent one; and the queue is bounded.
func TestOutboxKeepsOnlyTheNewestFrame(t *testing.T) {
	o := newOutbox()
	r := &run{}
	for i := range 1000 {
		if old := o.offer(&snapshot{run: r, f: &engine.Frame{Seq: i}}); old != nil {
			old.run.dropped.Add(1)
		}
	}
	if r.dropped.Load() != 999 || len(o.queue) != 0 {
		t.Fatalf("%d dropped, %d queued", r.dropped.Load(), len(o.queue))
	}
	if err := o.push(outMsg{data: []byte("done")}); err != nil {
		t.Fatal(err)
	}
	m1, _ := o.next()
	m2, _ := o.next()
	if m1.snap == nil || m1.snap.f.Seq != 999 || string(m2.data) != "done" {
		t.Fatalf("order: %+v then %+v", m1, m2)
	}
	if _, ok := o.next(); ok {
		t.Fatal("the outbox is not empty")
	}
	o.offer(&snapshot{run: r, f: &engine.Frame{Seq: 1000}})
	if err := o.push(outMsg{snap: &snapshot{run: r, f: &engine.Frame{Seq: 1001, Final: true}}}); err != nil {
		t.Fatal(err)
	}
	if m, _ := o.next(); m.snap == nil || m.snap.f.Seq != 1001 || r.dropped.Load() != 1000 {
		t.Fatalf("a final frame must supersede the unsent one: %+v, %d dropped", m, r.dropped.Load())
	}
	for i := range maxQueued {
		if err := o.push(outMsg{data: []byte{byte(i)}}); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if err := o.push(outMsg{data: []byte("one too many")}); err != errOutboxFull {
		t.Fatalf("a full outbox answered %v", err)
	}
}

// TestRunQueueOrder: waiting runs start in order, hear their positions move, and
// one that gives up leaves the line.
func TestRunQueueOrder(t *testing.T) {
	q := newRunQueue(1, 3)
	rel1, err := q.acquire(context.Background(), func(int) { t.Error("the first run waited") })
	if err != nil {
		t.Fatal(err)
	}
	type waiter struct {
		pos     chan int
		granted chan func()
		cancel  context.CancelFunc
	}
	start := func() *waiter {
		ctx, cancel := context.WithCancel(context.Background())
		w := &waiter{pos: make(chan int, 10), granted: make(chan func(), 1), cancel: cancel}
		go func() {
			rel, err := q.acquire(ctx, func(p int) { w.pos <- p })
			if err == nil {
				w.granted <- rel
			} else {
				close(w.granted)
			}
		}()
		return w
	}
	a := start()
	if p := <-a.pos; p != 1 {
		t.Fatalf("a at %d", p)
	}
	b := start()
	if p := <-b.pos; p != 2 {
		t.Fatalf("b at %d", p)
	}
	c := start()
	if p := <-c.pos; p != 3 {
		t.Fatalf("c at %d", p)
	}
	if _, err := q.acquire(context.Background(), func(int) {}); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("a fourth waiter: %v", err)
	}
	b.cancel() // b gives up: c moves to 2
	if _, ok := <-b.granted; ok {
		t.Fatal("b was granted after giving up")
	}
	if p := <-c.pos; p != 2 {
		t.Fatalf("c moved to %d", p)
	}
	rel1() // a starts, c moves to 1
	relA := <-a.granted
	if p := <-c.pos; p != 1 {
		t.Fatalf("c moved to %d", p)
	}
	relA()
	relA() // twice is harmless
	relC := <-c.granted
	if running, waiting := q.stats(); running != 1 || waiting != 0 {
		t.Fatalf("%d running, %d waiting", running, waiting)
	}
	relC()
	if running, _ := q.stats(); running != 0 {
		t.Fatalf("%d running after every release", running)
	}
}

// The explorer attacks through a chosen transform defence: its classifier becomes
// the attacked model, the record says so, and a bad choice is refused in words.
func TestExplorerAttacksThroughADefence(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dial(t, f)
	m := pgd(96, 8)
	m["surrogates"] = []string{"cosine-b"} // replaced by the defence's own classifier
	m["through"] = 2                       // cosine + 1-bit
	c.send(m)
	done, _ := c.until("done", 30*time.Second)
	if done.Stopped || !done.Saveable {
		t.Fatalf("done: %+v", done)
	}
	resp, saved := saveRun(t, f, done.Key, "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("save: %d", resp.StatusCode)
	}
	e, err := f.store.Get(context.Background(), saved.Slug)
	if err != nil {
		t.Fatal(err)
	}
	params, err := engine.ParamsOf(e)
	if err != nil {
		t.Fatal(err)
	}
	if params.Plan.Through != "cosine + 1-bit" || len(params.Plan.Models) != 1 || params.Plan.Models[0] != "cosine" {
		t.Fatalf("plan %+v", params.Plan)
	}
	for _, bad := range []any{0, 7, -1} { // not a transform defence; out of range
		m := pgd(96, 8)
		m["through"] = bad
		c.send(m)
		if msg := c.read(10 * time.Second); msg.Type != "error" || !strings.Contains(msg.Message, "Attack through: pick one of the watched defences with a transformation") {
			t.Errorf("through %v: %s %q", bad, msg.Type, msg.Message)
		}
	}
}
