package server

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
)

// Caps on open websockets. Each holds a file descriptor and a session for as long
// as its page is open, so each kind has a cap per client address, and all of them
// together a cap below the process's file-descriptor limit (read at start), which
// leaves descriptors for plain requests, model files and the gallery. A socket
// over a cap is opened only to say why it closes: a browser sees no status or
// body of a refused upgrade, but it shows a close frame's reason.

// socketKind is one of the server's websockets.
type socketKind struct {
	name        string // in the caps' bookkeeping
	page, pages string // what sockets are, to the person: "explorer page(s)"
	notSocket   string // the answer to a plain request at its address
}

var (
	explorerSocket = socketKind{"explorer", "explorer page", "explorer pages",
		"This address is the attack explorer's websocket: open /attack in a browser."}
	sweepSocket = socketKind{"sweep", "sweep page", "sweep pages",
		"This address is the sweeps' websocket: open /sweep, /compete or /transfer in a browser."}
)

// socketCaps counts open websockets per kind and address, and in all.
type socketCaps struct {
	perClient int
	total     int

	mu     sync.Mutex
	open   int
	counts map[socketKey]int
}

type socketKey struct{ kind, client string }

func newSocketCaps(perClient, total int) *socketCaps {
	return &socketCaps{perClient: max(1, perClient), total: max(1, total), counts: map[socketKey]int{}}
}

// socketsForFDLimit is the total cap for a file-descriptor limit: three quarters
// of it, at least 16; 1024 when the limit is unknown (0).
func socketsForFDLimit(limit uint64) int {
	if limit == 0 {
		return 1024
	}
	return int(max(16, min(limit, 1<<30)*3/4))
}

// refusal is why a socket was not admitted: the sentence for the page and the
// close code (1008 policy violation for a client's own cap, 1013 try again later
// when the server is full).
type refusal struct {
	code int
	msg  string
}

// admit counts a socket of kind for client, or says why not.
func (sc *socketCaps) admit(kind socketKind, client string) (release func(), why *refusal) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	key := socketKey{kind.name, client}
	switch {
	case sc.counts[key] >= sc.perClient:
		pages := kind.pages
		if sc.perClient == 1 {
			pages = kind.page
		}
		return nil, &refusal{websocket.ClosePolicyViolation,
			fmt.Sprintf("You have %d %s open, the most one address may: close one and try again.", sc.perClient, pages)}
	case sc.open >= sc.total:
		return nil, &refusal{websocket.CloseTryAgainLater,
			fmt.Sprintf("The server has %d live connections, the most it takes: try again in a minute.", sc.total)}
	}
	sc.counts[key]++
	sc.open++
	var once sync.Once
	return func() { once.Do(func() { sc.leave(key) }) }, nil
}

func (sc *socketCaps) leave(key socketKey) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.open--
	if sc.counts[key] <= 1 {
		delete(sc.counts, key)
		return
	}
	sc.counts[key]--
}

// openSocket upgrades c's request to a websocket of kind, from one of this site's
// pages, and counts it against the caps. A nil conn means the request has been
// answered: err is the answer to return, if any.
func (s *Server) openSocket(c echo.Context, kind socketKind) (conn *websocket.Conn, release func(), err error) {
	conn, err = upgradeSocket(c, kind.notSocket)
	if conn == nil {
		return nil, nil, err
	}
	release, why := s.sockets.admit(kind, c.RealIP())
	if why != nil {
		refuseSocket(conn, why.code, why.msg)
		return nil, nil, nil
	}
	return conn, release, nil
}

// refuseSocket sends an error message and closes with code at once; the reason
// says the same, for pages that only see the close.
func refuseSocket(conn *websocket.Conn, code int, msg string) {
	defer conn.Close()
	deadline := time.Now().Add(time.Second)
	conn.SetWriteDeadline(deadline)
	if data, err := json.Marshal(errorMsg{Type: "error", Message: msg}); err == nil {
		conn.WriteMessage(websocket.TextMessage, data)
	}
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, closeReason(msg)), deadline)
}

// closeReason fits msg in a close frame (123 bytes), cutting at a rune boundary.
func closeReason(msg string) string {
	const most = 123
	if len(msg) <= most {
		return msg
	}
	cut := most - len("…")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}
