package server

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// readClose reads until the server closes the socket, and returns the close
// frame and the error messages that came before it.
func readClose(t *testing.T, conn *websocket.Conn, within time.Duration) (*websocket.CloseError, []string) {
	t.Helper()
	var errs []string
	conn.SetReadDeadline(time.Now().Add(within))
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("the socket ended without a close frame: %v (after %d errors)", err, len(errs))
			}
			return ce, errs
		}
		if s := string(data); strings.Contains(s, `"type":"error"`) {
			errs = append(errs, s)
		}
	}
}

// Point 3: the sweeps' websocket has the explorer's per-address cap; the socket
// over it is told why, in a message and in the close frame's reason.
func TestSweepSocketsAreCappedPerAddress(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) { c.MaxSocketsPerClient = 2 })
	dialSweep(t, f)
	dialSweep(t, f)
	waitUntil(t, "two sweep sessions", func() bool { return f.srv.sweeps.sessions.Load() == 2 })
	over := dialSweep(t, f)
	ce, errs := readClose(t, over.conn, 10*time.Second)
	const says = "You have 2 sweep pages open, the most one address may"
	if ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, says) || len(errs) != 1 || !strings.Contains(errs[0], says) {
		t.Fatalf("third sweep page: close %d %q after %v; want 1008 saying %q", ce.Code, ce.Text, errs, says)
	}
	// The explorer's sockets are counted apart: this address may still open them.
	c := dial(t, f)
	c.send(pgd(40, 2))
	c.until("done", 30*time.Second)
	if n := f.srv.sweeps.sessions.Load(); n != 2 {
		t.Fatalf("%d sweep sessions after the refusal, want 2", n)
	}
}

// Point 3: all websockets together are capped (below the file-descriptor limit,
// read at start); the one over the cap is told to come back later (1013), and
// plain requests are still served.
func TestSocketsAreCappedInAll(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) { c.MaxSocketsPerClient = 10 })
	if lim := fdLimit(); lim > 0 && uint64(f.srv.sockets.total) >= lim {
		t.Fatalf("the socket cap %d is not below the file-descriptor limit %d", f.srv.sockets.total, lim)
	}
	f.srv.sockets = newSocketCaps(10, 3)
	dial(t, f)
	dialSweep(t, f)
	dial(t, f)
	waitUntil(t, "three sessions", func() bool {
		return f.srv.explorer.sessions.Load()+f.srv.sweeps.sessions.Load() == 3
	})
	for _, d := range []func() *websocket.Conn{func() *websocket.Conn { return dial(t, f).conn }, func() *websocket.Conn { return dialSweep(t, f).conn }} {
		ce, errs := readClose(t, d(), 10*time.Second)
		const says = "The server has 3 live connections, the most it takes"
		if ce.Code != websocket.CloseTryAgainLater || !strings.Contains(ce.Text, says) || len(errs) != 1 {
			t.Fatalf("a fourth socket: close %d %q after %v; want 1013 saying %q", ce.Code, ce.Text, errs, says)
		}
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, f.ts.URL+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s /healthz with the sockets full: %v %v", method, resp, err)
		}
		resp.Body.Close()
	}
}

func TestSocketCapFollowsTheFileDescriptorLimit(t *testing.T) {
	for _, tc := range []struct {
		limit uint64
		want  int
	}{{256, 192}, {1024, 768}, {20, 16}, {0, 1024}, {1 << 40, 3 << 28}} {
		if got := socketsForFDLimit(tc.limit); got != tc.want {
			t.Errorf("limit %d: cap %d, want %d", tc.limit, got, tc.want)
		}
	}
}

// Point 4: a burst of starts runs the newest. Each start replaces the run before
// it (which ends stopped, saying so) or the start waiting to replace it; the
// socket stays open and nothing piles up.
func TestExplorerBurstOfStartsRunsTheNewest(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dial(t, f)
	const burst = 70
	for i := range burst {
		m := pgd(40, 3)
		m["seed"] = i + 1
		c.send(m)
	}
	var last wsMsg
	for {
		m := c.read(60 * time.Second)
		if m.Type == "error" {
			t.Fatalf("an error during the burst: %s", m.Message)
		}
		if m.Type != "done" {
			continue
		}
		if !m.Stopped {
			last = m
			break
		}
		if m.Reason != replacedReason {
			t.Fatalf("a run ended stopped for %q", m.Reason)
		}
	}
	var seed struct {
		Seed int `json:"seed"`
	}
	if err := json.Unmarshal(last.raw, &seed); err != nil || seed.Seed != burst {
		t.Fatalf("the run that finished has seed %d (%v), want the newest start's %d", seed.Seed, err, burst)
	}
	if runs := f.srv.explorer.runs.Load(); runs >= burst {
		t.Fatalf("%d runs began for %d starts: replaced starts must not run", runs, burst)
	}
	waitUntil(t, "the session is idle", func() bool { return f.srv.explorer.running.Load() == 0 })
	c.send(pgd(40, 2)) // still open
	c.until("done", 30*time.Second)
}

// Point 4: a burst of gain changes after a run is coalesced: far fewer redraws
// than changes, the last at the last gain, and the socket stays open.
func TestExplorerBurstOfGainsIsCoalesced(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dial(t, f)
	c.send(pgd(96, 5))
	c.until("done", 30*time.Second)
	const burst = 100
	for i := range burst {
		c.send(map[string]any{"type": "gain", "gain": 1 + float64(i%7)})
	}
	c.send(map[string]any{"type": "gain", "gain": 12})
	redraws := 0
	for {
		m := c.read(30 * time.Second)
		if m.Type == "error" {
			t.Fatalf("an error during the burst: %s", m.Message)
		}
		if m.Type != "perturbation" {
			continue
		}
		redraws++
		if m.Gain == 12 {
			break
		}
	}
	t.Logf("%d gain changes drew %d perturbations", burst+1, redraws)
	if redraws > burst/2 {
		t.Fatalf("%d gain changes drew %d perturbations: not coalesced", burst+1, redraws)
	}
	c.send(pgd(40, 2))
	c.until("done", 30*time.Second)
}

// Point 4: a burst of messages the server cannot use is answered up to an
// allowance (answers still queued when it runs out are dropped), then the socket
// is closed with 1008 and a reason the page shows, never silently; the same holds
// on the sweeps' socket.
func TestBurstsOfBadMessagesCloseWithAReason(t *testing.T) {
	f := newExplorerFixture(t, nil)
	for name, conn := range map[string]*websocket.Conn{"explorer": dial(t, f).conn, "sweeps": dialSweep(t, f).conn} {
		for range 100 {
			if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"bogus"}`)); err != nil {
				break // closed by the server meanwhile
			}
		}
		ce, errs := readClose(t, conn, 30*time.Second)
		if ce.Code != websocket.ClosePolicyViolation || ce.Text != tooManyRefused || len(errs) > refusalBurst+2 {
			t.Fatalf("%s: close %d %q after %d errors; want 1008 %q", name, ce.Code, ce.Text, len(errs), tooManyRefused)
		}
		for _, e := range errs {
			if !strings.Contains(e, "Unknown message type bogus") {
				t.Fatalf("%s: answered %s", name, e)
			}
		}
	}
}

// Point 11 and 5: what is wrong with a message is said in words, naming the field,
// never a Go type; and a message beginning with ε reaches the client as UTF-8.
func TestSocketErrorsSayWhatIsWrongInWords(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dial(t, f)
	s := dialSweep(t, f)
	for _, tc := range []struct {
		sweep bool
		msg   string
		says  string
	}{
		{false, `{"type": 5}`, "The message has a wrong value for type: want a string, not a number."},
		{false, `[1, 2]`, "The message must be a JSON object, not an array."},
		{false, `{"type": "start", "eps": "lots"}`, "The start message has a wrong value for eps: want a number, not a string."},
		{false, `{"type": "gain", "gain": true}`, "The message has a wrong value for gain: want a number, not true or false."},
		{false, `{"type": `, "The message is not valid JSON"},
		{true, `{"type": {}}`, "The message has a wrong value for type: want a string, not an object."},
		{true, `{"type": "start", "settings": {"kind": "image", "eps": "lots"}, "source": "sample", "sample": "digit-7-0.png"}`, `ε \"lots\" is not a number`},
	} {
		conn := c.conn
		if tc.sweep {
			conn = s.conn
		}
		if err := conn.WriteMessage(websocket.TextMessage, []byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		got := string(data)
		if !utf8.Valid(data) || !strings.Contains(got, tc.says) || strings.Contains(got, "Go ") || strings.Contains(got, "server.") {
			t.Errorf("%s: %s, want it to say %q in words", tc.msg, got, tc.says)
		}
	}
}

// Point 11: the Origin must name this site: scheme, host and port, a port the
// scheme implies counting as written.
func TestCheckOriginComparesSchemeHostAndPort(t *testing.T) {
	for _, tc := range []struct {
		host, origin string
		tls, ok      bool
	}{
		{"gibbon.example", "http://gibbon.example", false, true},
		{"gibbon.example:80", "http://gibbon.example", false, true},
		{"gibbon.example", "http://GIBBON.example:80", false, true},
		{"gibbon.example", "https://gibbon.example", false, false},
		{"gibbon.example", "https://gibbon.example", true, true},
		{"gibbon.example:443", "https://gibbon.example", true, true},
		{"gibbon.example", "http://gibbon.example", true, false},
		{"gibbon.example:8080", "http://gibbon.example", false, false},
		{"gibbon.example:8080", "http://gibbon.example:8080", false, true},
		{"[::1]:8080", "http://[::1]:8080", false, true},
		{"gibbon.example", "http://gibbon.example.evil", false, false},
		{"gibbon.example", "http://user@gibbon.example", false, false},
		{"gibbon.example", "", false, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+"/api/attack/ws", nil)
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if err := checkOrigin(r); (err == nil) != tc.ok {
			t.Errorf("host %s (TLS %v), origin %q: %v, want ok %v", tc.host, tc.tls, tc.origin, err, tc.ok)
		}
	}
}
