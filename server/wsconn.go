package server

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// The plumbing the explorer's and the sweeps' websockets share: the upgrade, and a
// session's reader, writer (with its pings) and shutdown. What a session does with
// the messages it reads, and what it queues to write, is its own (wsHandler).

// upgradeSocket opens a websocket on c's request from one of this site's pages;
// notSocket is the message for a request that is not a websocket upgrade. A nil
// conn with a nil error means Upgrade failed and answered the request itself.
func upgradeSocket(c echo.Context, notSocket string) (*websocket.Conn, error) {
	req := c.Request()
	if !websocket.IsWebSocketUpgrade(req) {
		return nil, userError{http.StatusBadRequest, notSocket}
	}
	if err := checkOrigin(req); err != nil {
		return nil, err
	}
	up := websocket.Upgrader{
		ReadBufferSize:  4 << 10,
		WriteBufferSize: 32 << 10,
		CheckOrigin:     func(*http.Request) bool { return true }, // checked above, with a clear message
	}
	conn, err := up.Upgrade(c.Response(), req, nil)
	if err != nil {
		c.Set(handledErrKey, err) // Upgrade answered the request itself
		return nil, nil
	}
	c.Response().Status = http.StatusSwitchingProtocols // for the request log
	return conn, nil
}

// wsConn is one websocket connection and its session's context.
type wsConn struct {
	s    *Server
	cfg  AttackConfig // ping, pong and write deadlines
	conn *websocket.Conn

	ctx    context.Context
	cancel context.CancelFunc
	// closing is the close frame to end with when the server ends the session for
	// a reason the page should show (set once, before cancel).
	closing atomic.Pointer[closeFrame]
	// refusals is the allowance of client messages answered with an error.
	refusals *rate.Limiter
}

type closeFrame struct {
	code   int
	reason string
}

// tooManyWaiting is the close reason for a client whose messages pile up: it sends
// faster than it reads the answers, or does not read at all.
const tooManyWaiting = "Too many messages were waiting for this page: it sent faster than it read the answers. Reload to go on."

// Client messages a session may have refused (answered with an error, such as
// an unknown type or bad JSON): refusalBurst at once, refusalRate a second after.
// A page sends few of those; a client sending them in bursts is closed, with the
// reason, rather than having its answers pile up unread.
const (
	refusalBurst = 32
	refusalRate  = 8
)

// tooManyRefused is the close reason for a client over that allowance.
const tooManyRefused = "Too many messages this page could not use, in a burst. Reload the page to go on."

// mayRefuse counts a client message that will be answered with an error; false
// means the client is over its allowance: the session is closing, send nothing.
func (w *wsConn) mayRefuse() bool {
	if !w.refusals.Allow() {
		w.closeWith(websocket.ClosePolicyViolation, tooManyRefused)
		return false
	}
	return true
}

// closeWith ends the session, closing with code and reason (for the page to show).
func (w *wsConn) closeWith(code int, reason string) {
	w.closing.CompareAndSwap(nil, &closeFrame{code: code, reason: closeReason(reason)})
	w.cancel()
}

// wsHandler is what a session adds to a wsConn.
type wsHandler interface {
	handleText(data []byte)
	handleImage(data []byte)
	// flush writes the queued messages (with wsConn.write) until none is left or
	// the session ends; it returns the first write's error.
	flush() error
	// wait returns once the session's runs have ended.
	wait()
}

// serve runs the session until the client leaves, the writer fails or parent ends;
// then it cancels the session, waits for its runs and for the writer, and closes
// the connection. wake says that there is something to flush.
func (w *wsConn) serve(parent context.Context, h wsHandler, wake <-chan struct{}) {
	w.ctx, w.cancel = context.WithCancel(parent)
	w.refusals = rate.NewLimiter(refusalRate, refusalBurst)
	defer w.cancel()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		w.writeLoop(h, wake)
		w.cancel()
	}()
	// Unblock the reader when the session ends for another reason. Closing with a
	// reason, it reads on a moment (discarding) until the client answers the
	// close: a socket closed with unread data is reset, and the reason lost.
	stop := context.AfterFunc(w.ctx, func() {
		deadline := time.Now()
		if w.closing.Load() != nil {
			deadline = deadline.Add(time.Second)
		}
		w.conn.SetReadDeadline(deadline)
	})
	defer stop()
	w.readLoop(h)
	w.cancel()
	h.wait()
	<-writerDone
	w.conn.Close()
}

func (w *wsConn) readLoop(h wsHandler) {
	c := w.conn
	c.SetReadLimit(w.s.cfg.MaxUploadBytes + formOverhead)
	alive := func() { c.SetReadDeadline(time.Now().Add(w.cfg.PongWait)) }
	alive()
	c.SetPongHandler(func(string) error { alive(); return nil })
	for {
		typ, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		if w.ctx.Err() != nil {
			if w.closing.Load() != nil {
				continue // draining until the client's close
			}
			return
		}
		alive()
		switch typ {
		case websocket.TextMessage:
			h.handleText(data)
		case websocket.BinaryMessage:
			h.handleImage(data)
		}
	}
}

// writeLoop flushes the session's messages and sends the pings until the session
// ends or a write fails (a client that takes WriteWait to accept one is gone).
func (w *wsConn) writeLoop(h wsHandler, wake <-chan struct{}) {
	c := w.conn
	ping := time.NewTicker(w.cfg.PingPeriod)
	defer ping.Stop()
	for {
		select {
		case <-w.ctx.Done():
			msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
			if f := w.closing.Load(); f != nil {
				msg = websocket.FormatCloseMessage(f.code, f.reason)
			} else if w.s.active.isClosed() {
				msg = websocket.FormatCloseMessage(websocket.CloseGoingAway, "the server is shutting down")
			}
			c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			return
		case <-ping.C:
			if err := c.WriteControl(websocket.PingMessage, nil, time.Now().Add(w.cfg.WriteWait)); err != nil {
				return
			}
		case <-wake:
			if err := h.flush(); err != nil {
				return
			}
		}
	}
}

// write sends one message, within WriteWait.
func (w *wsConn) write(typ int, data []byte) error {
	w.conn.SetWriteDeadline(time.Now().Add(w.cfg.WriteWait))
	return w.conn.WriteMessage(typ, data)
}
