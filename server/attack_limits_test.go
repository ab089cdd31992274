package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// One address may hold MaxSocketsPerClient explorer pages; the next is told why
// and closed (a browser reads no body from a refused upgrade), and a page closed
// frees its place.
func TestExplorerCapsSocketsPerClient(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) { c.MaxSocketsPerClient = 2 })
	a, _ := dial(t, f), dial(t, f)
	waitUntil(t, "two sessions", func() bool { return f.srv.explorer.sessions.Load() == 2 })
	over := dial(t, f)
	m := over.read(10 * time.Second)
	if m.Type != "error" || !strings.Contains(m.Message, "2 explorer pages open") {
		t.Fatalf("third page: %+v, want an error naming the cap", m)
	}
	_, err := over.tryRead(10 * time.Second)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("third page: %v, want a policy-violation close", err)
	}
	if n := f.srv.explorer.sessions.Load(); n != 2 {
		t.Fatalf("%d sessions after the refusal, want 2", n)
	}
	a.conn.Close()
	waitUntil(t, "the closed page leaves", func() bool { return f.srv.explorer.sessions.Load() == 1 })
	again := dial(t, f)
	again.send(pgd(40, 3))
	if s, _ := again.until("started", 30*time.Second); s.Type != "started" {
		t.Fatalf("a page after one closed: %+v", s)
	}
	again.until("done", 30*time.Second)
}

func TestAttackConfigCheck(t *testing.T) {
	if err := DefaultAttackConfig().Check(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(*AttackConfig){
		"runs":    func(c *AttackConfig) { c.MaxRuns = -1 },
		"steps":   func(c *AttackConfig) { c.MaxSteps = -5 },
		"time":    func(c *AttackConfig) { c.RunTimeout = -time.Second },
		"sockets": func(c *AttackConfig) { c.MaxSocketsPerClient = -1 },
	} {
		c := DefaultAttackConfig()
		edit(&c)
		if err := c.Check(); err == nil {
			t.Errorf("%s: no error for %+v", name, c)
		}
	}
}
