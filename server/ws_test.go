package server

import (
	"bytes"
	"context"
	"errors"
	"gibbon/inference/engine"
	"image/png"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestExplorerStreamsARun runs PGD on a sample seven and checks the whole stream:
// started (clean image, clean verdicts), frames in order with the L∞ bound on every
// frame's PNG, the loss curve complete despite skipped frames, a label flip, the
// done message, and that its gallery entry saves through POST /api/gallery.
func TestExplorerStreamsARun(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dial(t, f)
	const eps, steps = 96, 30
	c.send(pgd(eps, steps))
	started, _ := c.until("started", 30*time.Second)
	if !started.binary || started.Eps != eps || started.Steps != steps || len(started.Defences) != 3 {
		t.Fatalf("started: %+v", started)
	}
	clean := decodeGray(t, started.images["clean"])
	if b := clean.Bounds(); b.Dx() != 28 || b.Dy() != 28 {
		t.Fatalf("clean image %v, want the model's 28×28 input", b)
	}
	for _, d := range started.Defences {
		if len(d.Clean) != 5 || d.Clean[0].Label != "7" {
			t.Fatalf("defence %s on the clean seven: %+v", d.Name, d.Clean)
		}
	}

	done, msgs := c.until("done", 60*time.Second)
	var frames []wsMsg
	for _, m := range msgs {
		if m.Type == "frame" {
			frames = append(frames, m)
		}
	}
	if len(frames) == 0 || !frames[len(frames)-1].Final || frames[len(frames)-1].Step != steps {
		t.Fatalf("%d frames; the last must be the final step %d", len(frames), steps)
	}
	loss := map[int]bool{}
	for i, fr := range frames {
		if i > 0 && fr.Seq <= frames[i-1].Seq {
			t.Fatalf("frame %d has seq %d after %d: out of order", i, fr.Seq, frames[i-1].Seq)
		}
		adv := decodeGray(t, fr.images["adv"])
		worst := 0
		for p := range adv.Pix {
			d := int(adv.Pix[p]) - int(clean.Pix[p])
			worst = max(worst, d, -d)
		}
		if worst > eps || worst != fr.Linf {
			t.Fatalf("frame %d (step %d): L∞ %d/255 in the PNG, frame says %d, ε %d", fr.Seq, fr.Step, worst, fr.Linf, eps)
		}
		if fr.LossFrom != len(loss) {
			t.Fatalf("frame %d: loss from %d, have %d values", fr.Seq, fr.LossFrom, len(loss))
		}
		for k, v := range fr.Loss {
			if v == nil {
				t.Fatalf("frame %d: loss %d is not a number", fr.Seq, fr.LossFrom+k)
			}
			loss[fr.LossFrom+k] = true
		}
		if len(fr.Defences) != 3 {
			t.Fatalf("frame %d has %d defences", fr.Seq, len(fr.Defences))
		}
		pert, err := png.Decode(bytes.NewReader(fr.images["perturbation"]))
		if err != nil || pert.Bounds().Dx() != 28 {
			t.Fatalf("frame %d perturbation: %v", fr.Seq, err)
		}
	}
	// PGD reports steps 0..steps-1 and the final quantised point: steps+1 losses,
	// every one recorded (fewer than engine.MaxRecordedSteps).
	if len(loss) != steps+1 {
		t.Fatalf("the loss curve has %d points, want %d", len(loss), steps+1)
	}
	last := frames[len(frames)-1]
	if !last.Defences[0].Flipped || last.Defences[0].Top[0].Label == "7" {
		t.Fatalf("PGD at ε %d/255 did not flip the attacked model: %+v", eps, last.Defences[0])
	}
	if done.Stopped || done.Run != started.Run || done.Linf != last.Linf || done.Flipped < 1 || done.Watched != 3 {
		t.Fatalf("done: %+v", done)
	}
	if got := done.Timings["frames_sent"]; int(got) != len(frames) {
		t.Fatalf("done counts %g frames sent, the client got %d", got, len(frames))
	}
	if sent, skipped := done.Timings["frames_sent"], done.Timings["frames_skipped"]; int(sent+skipped) != steps+1 {
		t.Fatalf("%g frames sent + %g skipped, want every one of the %d recorded steps accounted for", sent, skipped, steps+1)
	}
	for _, k := range []string{"first_frame_ms", "attack_ms", "encode_ms_per_frame", "frames_per_second"} {
		if _, ok := done.Timings[k]; !ok {
			t.Errorf("done timings lack %s: %v", k, done.Timings)
		}
	}
	t.Logf("%d frames of %d steps; timings %v", len(frames), steps+1, done.Timings)
	if !strings.HasSuffix(done.Download, ".png") {
		t.Errorf("download name %q", done.Download)
	}

	// The page saves the run by its key: the server stores what it computed.
	if !done.Saveable || done.Key != started.Key {
		t.Fatalf("done: saveable %v, key %q (started %q): %s", done.Saveable, done.Key, started.Key, done.NoSave)
	}
	resp, saved := saveRun(t, f, done.Key, "PGD on a seven")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("saving the run: %d", resp.StatusCode)
	}
	stored, err := f.store.Get(context.Background(), saved.Slug)
	if err != nil {
		t.Fatal(err)
	}
	orig, adv, err := f.store.Images(context.Background(), stored)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(orig, started.images["clean"]) || !bytes.Equal(adv, last.images["adv"]) || stored.Width != 28 {
		t.Fatalf("stored images are not the run's (%d×%d)", stored.Width, stored.Height)
	}
	if resp, _ := saveRun(t, f, done.Key, "again"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("saving twice: %d", resp.StatusCode)
	}
	s := newSession(t, f)
	page := readAll(t, s.get(saved.Permalink).Body)
	for _, want := range []string{"PGD on a seven", "cosine", "PGD"} {
		if !strings.Contains(page, want) {
			t.Errorf("the permalink page lacks %q", want)
		}
	}
}

func (s *session) postJSON(path string, body []byte) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.f.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", s.token)
	resp, err := s.c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp
}

func (s *session) get(url string) *http.Response {
	s.t.Helper()
	resp, err := s.c.Get(url)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp
}

// TestExplorerStopCancelsAtOnce stops a slowed-down run after its first frame: the
// run ends with a stopped done message well before its last step, and its slot and
// goroutine are freed.
func TestExplorerStopCancelsAtOnce(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) { c.MaxRuns = 1 })
	c := dial(t, f)
	m := pgd(96, 500)
	m["pace_ms"] = 20 // 500 steps would take 10 s
	c.send(m)
	first, _ := c.until("frame", 30*time.Second)
	c.send(map[string]string{"type": "stop"})
	done, msgs := c.until("done", 10*time.Second)
	// A stopped run can still be saved: its last frame, marked as stopped.
	if !done.Stopped || !strings.Contains(done.Reason, "You stopped") || !done.Saveable {
		t.Fatalf("done after stop: %+v", done)
	}
	last := first
	for _, m := range msgs {
		if m.Type == "frame" {
			if m.Seq <= last.Seq {
				t.Fatalf("frame %d after %d", m.Seq, last.Seq)
			}
			last = m
		}
	}
	if last.Final || last.Step >= 500 {
		t.Fatalf("the run reached step %d (final %v) after a stop at step %d", last.Step, last.Final, first.Step)
	}
	if steps := int(done.Timings["frames_sent"] + done.Timings["frames_skipped"]); steps >= 500 {
		t.Fatalf("%d steps ran after the stop", steps)
	}
	waitUntil(t, "the run is gone", func() bool { return f.srv.explorer.running.Load() == 0 })
	if running, waiting := f.srv.explorer.queue.stats(); running != 0 || waiting != 0 {
		t.Fatalf("queue after the stop: %d running, %d waiting", running, waiting)
	}
	// The same socket runs again (the one slot was freed).
	c.send(pgd(96, 5))
	if done, _ := c.until("done", 30*time.Second); done.Stopped {
		t.Fatalf("second run: %+v", done)
	}
}

// TestExplorerSlowReaderDoesNotStallTheAttack: a client that reads nothing while
// the attack runs does not hold it up (the run ends on the server first), then it
// still gets the final frame and the done message; skipped frames are counted,
// never queued.
func TestExplorerSlowReaderDoesNotStallTheAttack(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dialWith(t, f, smallBufferDialer)
	const steps = 1000
	c.send(pgd(96, steps))
	// Not reading: the run must still finish.
	t0 := time.Now()
	waitUntil(t, "the run finishes while its client reads nothing", func() bool {
		return f.srv.explorer.runs.Load() == 1 && f.srv.explorer.running.Load() == 0
	})
	t.Logf("the run finished %v after its start, unread", time.Since(t0))
	time.Sleep(200 * time.Millisecond) // the reader dawdles on, then reads at full speed
	c.conn.NetConn().(*net.TCPConn).SetReadBuffer(1 << 20)
	done, msgs := c.until("done", 30*time.Second)
	var frames []wsMsg
	for _, m := range msgs {
		if m.Type == "frame" {
			frames = append(frames, m)
		}
	}
	if len(frames) == 0 || !frames[len(frames)-1].Final || frames[len(frames)-1].Step != steps {
		t.Fatalf("the slow reader got %d frames, the last not the final one", len(frames))
	}
	for i := 1; i < len(frames); i++ {
		if frames[i].Seq <= frames[i-1].Seq {
			t.Fatalf("frames out of order: %d after %d", frames[i].Seq, frames[i-1].Seq)
		}
	}
	// Long runs record every k-th step (engine.MaxRecordedSteps): each recorded
	// frame is sent or counted as skipped.
	stride := (steps + 1 + engine.MaxRecordedSteps - 1) / engine.MaxRecordedSteps
	recorded := (steps+1+stride-1)/stride + 1 // every stride-th step, and the final one
	sent, skipped := int(done.Timings["frames_sent"]), int(done.Timings["frames_skipped"])
	if sent != len(frames) || sent+skipped != recorded || skipped == 0 {
		t.Fatalf("%d frames received, %d sent, %d skipped of %d recorded steps", len(frames), sent, skipped, recorded)
	}
	t.Logf("slow reader: %d frames of %d steps", len(frames), steps+1)
}

// TestExplorerDisconnectCancelsTheRun: a client that vanishes mid-run (TCP closed,
// no close frame) has its run cancelled and its slot freed for the next client.
func TestExplorerDisconnectCancelsTheRun(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) { c.MaxRuns, c.MaxQueue = 1, -1 })
	c := dial(t, f)
	m := pgd(96, 500)
	m["pace_ms"] = 20
	c.send(m)
	c.until("frame", 30*time.Second)
	c.conn.NetConn().Close()
	waitUntil(t, "the run and the session end", func() bool {
		return f.srv.explorer.running.Load() == 0 && f.srv.explorer.sessions.Load() == 0
	})
	c2 := dial(t, f)
	c2.send(pgd(96, 5))
	if done, _ := c2.until("done", 30*time.Second); done.Stopped {
		t.Fatalf("the next client's run: %+v", done)
	}
}

// TestExplorerRunTimeLimit: a run that outlasts RunTimeout is stopped and says so.
func TestExplorerRunTimeLimit(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) { c.RunTimeout = 300 * time.Millisecond })
	c := dial(t, f)
	m := pgd(96, 200)
	m["pace_ms"] = 50
	c.send(m)
	done, _ := c.until("done", 30*time.Second)
	if !done.Stopped || !strings.Contains(done.Reason, "time limit") {
		t.Fatalf("done: %+v", done)
	}
}

// TestExplorerQueueAndBusy: with one slot and room for one in line, a second run
// waits with its position shown and starts when the first stops; a third is
// refused as busy.
func TestExplorerQueueAndBusy(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) { c.MaxRuns, c.MaxQueue = 1, 1 })
	long := pgd(96, 500)
	long["pace_ms"] = 20
	a, b, c := dial(t, f), dial(t, f), dial(t, f)
	a.send(long)
	a.until("frame", 30*time.Second)
	b.send(long)
	q := b.read(10 * time.Second)
	if q.Type != "queued" || q.Position != 1 {
		t.Fatalf("second client: %+v, want queued at position 1", q)
	}
	c.send(long)
	busy := c.read(10 * time.Second)
	if busy.Type != "error" || !strings.Contains(busy.Message, "busy") {
		t.Fatalf("third client: %+v, want a busy message", busy)
	}
	a.send(map[string]string{"type": "stop"})
	if d, _ := a.until("done", 10*time.Second); !d.Stopped {
		t.Fatalf("first client: %+v", d)
	}
	b.until("started", 30*time.Second)
	b.until("frame", 30*time.Second)
	b.send(map[string]string{"type": "stop"})
	b.until("done", 10*time.Second)
	// A queued run whose client leaves gives up its place.
	a.send(long)
	a.until("frame", 30*time.Second)
	b.send(long)
	if q := b.read(10 * time.Second); q.Type != "queued" {
		t.Fatalf("%+v", q)
	}
	b.conn.Close()
	waitUntil(t, "the queued run leaves the line", func() bool {
		_, waiting := f.srv.explorer.queue.stats()
		return waiting == 0
	})
}

// TestExplorerPingPong: a client that answers no ping is disconnected after
// PongWait; one that does stays connected.
func TestExplorerPingPong(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) {
		c.PongWait, c.PingPeriod = 400*time.Millisecond, 100*time.Millisecond
	})
	deaf := dial(t, f)
	deaf.conn.SetPingHandler(func(string) error { return nil }) // reads, but never pongs
	alive := dial(t, f)
	go func() { // the default handler pongs while reading
		for {
			if _, _, err := alive.conn.NextReader(); err != nil {
				return
			}
		}
	}()
	_, err := deaf.tryRead(10 * time.Second)
	var ce *websocket.CloseError
	if err == nil {
		t.Fatal("the silent client got a message instead of being disconnected")
	}
	if !errorsAs(err, &ce) && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the silent client's read ended with %v", err)
	}
	waitUntil(t, "only the ponging session remains", func() bool { return f.srv.explorer.sessions.Load() == 1 })
	time.Sleep(600 * time.Millisecond) // longer than PongWait
	if n := f.srv.explorer.sessions.Load(); n != 1 {
		t.Fatalf("%d sessions; the client that answers pings was dropped", n)
	}
}

// TestExplorerChecksOrigin: only Gibbon's own pages may open the websocket: the
// same scheme, host and port as the server's.
func TestExplorerChecksOrigin(t *testing.T) {
	f := newExplorerFixture(t, nil)
	host := strings.TrimPrefix(f.ts.URL, "http://")
	name, port, _ := strings.Cut(host, ":")
	for _, origin := range []string{"", "http://evil.example", "null", "https://" + host, "http://" + name,
		"http://" + name + ":1" + port, "ws://" + host, "http://" + host + "/attack"} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		_, resp, err := websocket.DefaultDialer.Dial(wsURL(f), h)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("origin %q: %v, %+v", origin, err, resp)
		}
		if body := readAll(t, resp.Body); !strings.Contains(body, "Origin header must name this site: scheme, host and port") {
			t.Errorf("origin %q: body %q", origin, body)
		}
	}
	resp, err := http.Get(f.ts.URL + attackSocketPath)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp.Body); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "open /attack") {
		t.Fatalf("a plain GET: %d %s", resp.StatusCode, body)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// TestExplorerShutdownClosesSockets: at shutdown a running attack is cancelled, its
// client is told the server is going away, and Serve returns cleanly.
func TestExplorerShutdownClosesSockets(t *testing.T) {
	f := newExplorerFixture(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+attackSocketPath, http.Header{"Origin": {base}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &wsClient{socketClient{t: t, conn: conn}}
	m := pgd(96, 500)
	m["pace_ms"] = 20
	c.send(m)
	c.until("frame", 30*time.Second)
	stop()
	var ce *websocket.CloseError
	for {
		_, err := c.tryRead(10 * time.Second)
		if err == nil {
			continue // frames already on their way
		}
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || !strings.Contains(ce.Text, "shutting down") {
			t.Fatalf("the client's socket ended with %v, want a going-away close", err)
		}
		break
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after the shutdown")
	}
	if n := f.srv.explorer.running.Load(); n != 0 {
		t.Fatalf("%d runs left after the shutdown", n)
	}
}
