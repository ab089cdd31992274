package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
)

// The explorer's websocket. Each connection has one reader (the handler's own
// goroutine), one writer, and at most one attack run at a time, each owned by the
// session and waited for when it ends. Messages to the client go through an outbox
// that keeps control messages in order but only the newest frame: a slow client
// skips frames, the attack never waits for it, and nothing queues without bound.
//
// Client → server, text JSON: {"type":"start", …startMsg} (an uploaded or drawn
// image follows as one binary message), {"type":"stop"}, {"type":"gain","gain":2}.
// Server → client: text JSON {"type":"queued"|"done"|"error", …}, and binary
// messages (started, frame, perturbation): a 4-byte big-endian length, that many
// bytes of JSON, then the PNG images the JSON lists by role, offset and length
// (frames: adv, perturbation, and one "head" per ε of an attack network). A frame
// carries the loss values since the previous frame sent (loss_from, loss), so the
// page's curve is complete however many frames were skipped.

// errOrigin refuses a websocket from another site's page (or from no page).
var errOrigin = userError{http.StatusForbidden, "This websocket only accepts connections from Gibbon's own pages (the Origin header must match the host)."}

// maxQueued bounds the control messages waiting for a client that does not read.
const maxQueued = 64

// checkOrigin requires the Origin header a browser sends, naming this host.
func checkOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return errOrigin
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return errOrigin
	}
	return nil
}

func (s *Server) handleAttackSocket(c echo.Context) error {
	conn, err := upgradeSocket(c, "This address is the attack explorer's websocket: open /attack in a browser.")
	if conn == nil {
		return err
	}
	// Over the per-client cap the socket is opened only to say why it closes: a
	// browser sees no status or body of a refused upgrade.
	client := c.RealIP()
	if !s.explorer.admit(client) {
		refuseSocket(conn, fmt.Sprintf("You have %d explorer pages open, the most one address may: close one of them and try again.",
			s.explorer.cfg.MaxSocketsPerClient))
		return nil
	}
	defer s.explorer.leave(client)
	ss := newWSSession(s, conn)
	ss.owner = runOwner(c)
	s.explorer.sessions.Add(1)
	defer s.explorer.sessions.Add(-1)
	ss.serve(c.Request().Context(), ss, ss.out.wake)
	return nil
}

// refuseSocket sends an error message and closes (policy violation) at once.
func refuseSocket(conn *websocket.Conn, msg string) {
	defer conn.Close()
	deadline := time.Now().Add(time.Second)
	conn.SetWriteDeadline(deadline)
	if data, err := json.Marshal(errorMsg{Type: "error", Message: msg}); err == nil {
		conn.WriteMessage(websocket.TextMessage, data)
	}
	reason := msg
	if len(reason) > 120 { // a close frame's reason fits in 123 bytes
		reason = "too many explorer connections from your address"
	}
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, reason), deadline)
}

// wsSession is one websocket connection.
type wsSession struct {
	wsConn
	out  *outbox
	gain atomic.Uint64 // float64 bits
	// owner is who opened the page (runOwner): its runs are saved by them only.
	owner string

	mu      sync.Mutex
	active  *activeRun
	last    *run // the last finished run (for gain changes)
	pending *pendingStart
	nextID  int
	runs    sync.WaitGroup
}

// pendingStart is a checked start message waiting for its image.
type pendingStart struct {
	req      *runRequest
	received time.Time
}

// activeRun is the run in progress and how to stop it.
type activeRun struct {
	run    *run
	cancel context.CancelFunc
}

func newWSSession(s *Server, conn *websocket.Conn) *wsSession {
	ss := &wsSession{wsConn: wsConn{s: s, cfg: s.explorer.cfg, conn: conn}, out: newOutbox()}
	ss.gain.Store(math.Float64bits(1))
	return ss
}

func (ss *wsSession) wait() { ss.runs.Wait() }

// clientMsg is what every client message has, and the fields of the small ones.
type clientMsg struct {
	Type string  `json:"type"`
	Gain float64 `json:"gain"`
}

func (ss *wsSession) handleText(data []byte) {
	var m clientMsg
	if err := json.Unmarshal(data, &m); err != nil {
		ss.sendError("The message is not valid JSON: " + err.Error())
		return
	}
	switch m.Type {
	case "start":
		var sm startMsg
		if err := json.Unmarshal(data, &sm); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "" {
				ss.sendError("The start message has a wrong value for " + te.Field + ": want " + jsonKind(te.Type) + ".")
			} else {
				ss.sendError("The start message could not be read: " + err.Error())
			}
			return
		}
		ss.start(sm)
	case "stop":
		ss.stop("You stopped the run.")
	case "gain":
		if math.IsNaN(m.Gain) || m.Gain < minGain || m.Gain > maxGain {
			ss.sendError("The perturbation gain must be between 0.25 and 16.")
			return
		}
		ss.gain.Store(math.Float64bits(m.Gain))
		ss.mu.Lock()
		last, busy := ss.last, ss.active != nil
		ss.mu.Unlock()
		if !busy && last != nil {
			ss.send(outMsg{build: func() (int, []byte, error) { return last.perturbationMsg(m.Gain) }})
		}
	case "":
		ss.sendError("The message has no type.")
	default:
		ss.sendError("Unknown message type " + truncate(m.Type, 40) + ".")
	}
}

// jsonKind names a Go type the way JSON would.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return "an object"
}

// start checks a start message; it runs now, or once its image arrives.
func (ss *wsSession) start(sm startMsg) {
	received := time.Now()
	ss.mu.Lock()
	busy := ss.active != nil || ss.pending != nil
	ss.mu.Unlock()
	if busy {
		ss.sendError("A run is already in progress: stop it before starting another.")
		return
	}
	req, err := ss.s.request(sm)
	if err != nil {
		ss.sendUserError(err)
		return
	}
	if req.imageBytes > 0 {
		ss.mu.Lock()
		ss.pending = &pendingStart{req: req, received: received}
		ss.mu.Unlock()
		return
	}
	ss.launch(req, nil, received)
}

func (ss *wsSession) handleImage(data []byte) {
	ss.mu.Lock()
	p := ss.pending
	ss.pending = nil
	ss.mu.Unlock()
	if p == nil {
		ss.sendError("An image arrived without a start message before it.")
		return
	}
	if int64(len(data)) != p.req.imageBytes {
		ss.sendError("The image is not the size the start message announced; try again.")
		return
	}
	ss.launch(p.req, data, p.received)
}

// launch starts the run goroutine.
func (ss *wsSession) launch(req *runRequest, image []byte, received time.Time) {
	ctx, cancel := context.WithCancel(ss.ctx)
	ss.mu.Lock()
	ss.nextID++
	r := newRun(ss, ss.nextID, req, received)
	ss.active = &activeRun{run: r, cancel: cancel}
	ss.gain.Store(math.Float64bits(req.gain))
	ss.mu.Unlock()
	ss.runs.Add(1)
	go func() {
		defer ss.runs.Done()
		defer cancel()
		r.execute(ctx, image)
		ss.ended(r)
	}()
}

// ended frees the session for its next run; a run calls it before its last
// message, so a client that starts again on reading it is not refused.
func (ss *wsSession) ended(r *run) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.active != nil && ss.active.run == r {
		ss.active = nil
	}
	if r.record != nil {
		ss.last = r
	}
}

// stop cancels the run in progress, if any, saying why.
func (ss *wsSession) stop(reason string) {
	ss.mu.Lock()
	a := ss.active
	ss.pending = nil
	ss.mu.Unlock()
	if a != nil {
		a.run.stopReason.Store(&reason)
		a.cancel()
	}
}

func (ss *wsSession) currentGain() float64 { return math.Float64frombits(ss.gain.Load()) }

// send queues a message; a client that lets too many pile up is disconnected.
func (ss *wsSession) send(m outMsg) {
	if err := ss.out.push(m); err != nil {
		ss.cancel()
	}
}

func (ss *wsSession) sendJSON(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		ss.s.log.Error("explorer: encode message", "err", err)
		return
	}
	ss.send(outMsg{typ: websocket.TextMessage, data: data})
}

type errorMsg struct {
	Type    string `json:"type"`
	Run     int    `json:"run,omitempty"`
	Message string `json:"message"`
}

func (ss *wsSession) sendError(msg string) { ss.sendJSON(errorMsg{Type: "error", Message: msg}) }

// sendUserError sends what people should read about err (internal details are logged).
func (ss *wsSession) sendUserError(err error) {
	_, msg := statusFor(err)
	ss.sendError(msg)
}

// flush writes the outbox's messages until it is empty or the session ends.
func (ss *wsSession) flush() error {
	for ss.ctx.Err() == nil {
		m, ok := ss.out.next()
		if !ok {
			break
		}
		typ, data, after, err := ss.materialize(m)
		if err != nil {
			ss.s.log.Error("explorer: render", "err", err)
			ss.sendError("A frame could not be drawn: " + err.Error())
			continue
		}
		if data == nil {
			continue
		}
		if err := ss.write(typ, data); err != nil {
			return err
		}
		if after != nil {
			after()
		}
	}
	return nil
}

// materialize turns a queued message into bytes: frames are drawn now, so frames a
// slow client skips are never drawn. after runs once the message is written.
func (ss *wsSession) materialize(m outMsg) (typ int, data []byte, after func(), err error) {
	switch {
	case m.snap != nil:
		data, err = m.snap.run.renderFrame(m.snap, ss.currentGain())
		if err != nil || data == nil {
			return 0, nil, nil, err
		}
		return websocket.BinaryMessage, data, func() { m.snap.run.frameSent(m.snap) }, nil
	case m.build != nil:
		typ, data, err = m.build()
		return typ, data, nil, err
	}
	return m.typ, m.data, nil, nil
}

// outMsg is one message for the client: ready bytes, a frame to draw, or a message
// built when its turn comes (it may depend on the frames before it).
type outMsg struct {
	typ   int
	data  []byte
	snap  *snapshot
	build func() (int, []byte, error)
}

// outbox holds control messages in order and the newest unsent frame.
type outbox struct {
	mu     sync.Mutex
	queue  []outMsg
	latest *snapshot
	wake   chan struct{}
}

func newOutbox() *outbox { return &outbox{wake: make(chan struct{}, 1)} }

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// offer makes s the frame to send next, replacing (and returning) an unsent one.
func (o *outbox) offer(s *snapshot) (replaced *snapshot) {
	o.mu.Lock()
	replaced, o.latest = o.latest, s
	o.mu.Unlock()
	o.signal()
	return replaced
}

var errOutboxFull = errors.New("the client is not reading its messages")

// push queues a message that must arrive. A frame (a run's final one) supersedes an
// unsent newer-frame slot; any other message goes after it.
func (o *outbox) push(m outMsg) error {
	o.mu.Lock()
	if len(o.queue) >= maxQueued {
		o.mu.Unlock()
		return errOutboxFull
	}
	if o.latest != nil {
		if m.snap != nil {
			o.latest.run.dropped.Add(1)
		} else {
			o.queue = append(o.queue, outMsg{snap: o.latest})
		}
		o.latest = nil
	}
	o.queue = append(o.queue, m)
	o.mu.Unlock()
	o.signal()
	return nil
}

// next is the message to write now: queued ones first, then the newest frame.
func (o *outbox) next() (outMsg, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) > 0 {
		m := o.queue[0]
		o.queue[0] = outMsg{}
		o.queue = o.queue[1:]
		return m, true
	}
	if o.latest != nil {
		s := o.latest
		o.latest = nil
		return outMsg{snap: s}, true
	}
	return outMsg{}, false
}
