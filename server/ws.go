package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
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
var errOrigin = userError{http.StatusForbidden, "This websocket only accepts connections from Gibbon's own pages (the Origin header must name this site: scheme, host and port)."}

// maxQueued bounds the control messages waiting for a client that does not read.
const maxQueued = 64

// checkOrigin requires the Origin header a browser sends, naming this site:
// the same scheme, host and port (an https page is another site than an http one).
func checkOrigin(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return errOrigin
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || u.Path != "" || u.User != nil {
		return errOrigin
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if !strings.EqualFold(u.Scheme, scheme) || !strings.EqualFold(hostPort(u.Host, scheme), hostPort(r.Host, scheme)) {
		return errOrigin
	}
	return nil
}

// hostPort writes host with its port, the scheme's default when it has none.
func hostPort(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

func (s *Server) handleAttackSocket(c echo.Context) error {
	conn, release, err := s.openSocket(c, explorerSocket)
	if conn == nil {
		return err
	}
	defer release()
	ss := newWSSession(s, conn)
	ss.owner = runOwner(c)
	s.explorer.sessions.Add(1)
	defer s.explorer.sessions.Add(-1)
	ss.serve(c.Request().Context(), ss, ss.out.wake)
	return nil
}

// wsSession is one websocket connection.
type wsSession struct {
	wsConn
	out  *outbox
	gain atomic.Uint64 // float64 bits
	// place is the active run's latest place in line (sendQueued).
	place atomic.Int64
	// owner is who opened the page (runOwner): its runs are saved by them only.
	owner string

	mu     sync.Mutex
	active *activeRun
	last   *run // the last finished run (for gain changes)
	// pending is a checked start waiting for its image; next is a start that
	// replaces the active run, waiting for it to end. A newer start replaces both,
	// so a burst of starts runs the last one.
	pending *pendingStart
	next    *pendingStart
	nextID  int
	runs    sync.WaitGroup
}

// pendingStart is a checked start message, and its image once it has arrived.
type pendingStart struct {
	req      *runRequest
	image    []byte
	received time.Time
}

// replacedReason is how a run stopped by a newer start ends.
const replacedReason = "A newer start replaced this run."

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
		ss.refuse(describeJSONError("message", err))
		return
	}
	switch m.Type {
	case "start":
		var sm startMsg
		if err := json.Unmarshal(data, &sm); err != nil {
			ss.refuse(describeJSONError("start message", err))
			return
		}
		ss.start(sm)
	case "stop":
		ss.stop("You stopped the run.")
	case "gain":
		if math.IsNaN(m.Gain) || m.Gain < minGain || m.Gain > maxGain {
			ss.refuse("The perturbation gain must be between 0.25 and 16.")
			return
		}
		ss.gain.Store(math.Float64bits(m.Gain))
		ss.mu.Lock()
		last, busy := ss.last, ss.active != nil
		ss.mu.Unlock()
		if !busy && last != nil {
			// Drawn at the gain current when its turn comes; an unsent one is
			// replaced, so a slider dragged fast queues one message, not one a move.
			ss.send(outMsg{key: "perturbation", build: func() (int, []byte, error) { return last.perturbationMsg(ss.currentGain()) }})
		}
	case "":
		ss.refuse("The message has no type.")
	default:
		ss.refuse("Unknown message type " + truncate(m.Type, 40) + ".")
	}
}

// describeJSONError says in words what is wrong with a client's JSON message
// (what names it: "message", "start message"), never naming Go types.
func describeJSONError(what string, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("The %s is not valid JSON (at byte %d).", what, se.Offset)
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("The %s has a wrong value for %s: want %s, not %s.", what, te.Field, jsonKind(te.Type), jsonValueName(te.Value))
	case errors.As(err, &te):
		return fmt.Sprintf("The %s must be a JSON object, not %s.", what, jsonValueName(te.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Sprintf("The %s has a field Gibbon does not know: %s.", what, strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Sprintf("The %s could not be read as JSON.", what)
}

// jsonValueName names the kind of JSON value UnmarshalTypeError.Value holds.
func jsonValueName(v string) string {
	switch {
	case v == "number" || strings.HasPrefix(v, "number "):
		return "a number"
	case v == "array", v == "object":
		return "an " + v
	case v == "string":
		return "a string"
	case v == "bool":
		return "true or false"
	}
	return "that value"
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

// start checks a start message; it runs now, or once its image arrives, or once
// the run it replaces has stopped.
func (ss *wsSession) start(sm startMsg) {
	received := time.Now()
	req, err := ss.s.request(sm)
	if err != nil {
		_, msg := statusFor(err)
		ss.refuse(msg)
		return
	}
	p := &pendingStart{req: req, received: received}
	if req.imageBytes > 0 {
		ss.mu.Lock()
		ss.pending = p // replaces a start still waiting for its image
		ss.mu.Unlock()
		return
	}
	ss.begin(p)
}

func (ss *wsSession) handleImage(data []byte) {
	ss.mu.Lock()
	p := ss.pending
	ss.pending = nil
	ss.mu.Unlock()
	if p == nil {
		ss.refuse("An image arrived without a start message before it.")
		return
	}
	if int64(len(data)) != p.req.imageBytes {
		ss.refuse("The image is not the size the start message announced; try again.")
		return
	}
	p.image = data
	ss.begin(p)
}

// begin launches p now, or, while a run is active, stops that run and makes p the
// one to launch when it ends (replacing an earlier start waiting there).
func (ss *wsSession) begin(p *pendingStart) {
	ss.mu.Lock()
	a := ss.active
	if a != nil {
		ss.next = p
	}
	ss.mu.Unlock()
	if a == nil {
		ss.launch(p)
		return
	}
	reason := replacedReason
	a.run.stopReason.CompareAndSwap(nil, &reason)
	a.cancel()
}

// launch starts the run goroutine; when the run ends, a start that replaced it
// is launched.
func (ss *wsSession) launch(p *pendingStart) {
	ctx, cancel := context.WithCancel(ss.ctx)
	ss.mu.Lock()
	ss.nextID++
	r := newRun(ss, ss.nextID, p.req, p.received)
	ss.active = &activeRun{run: r, cancel: cancel}
	ss.gain.Store(math.Float64bits(p.req.gain))
	ss.mu.Unlock()
	ss.runs.Add(1)
	go func() {
		defer ss.runs.Done()
		defer cancel()
		r.execute(ctx, p.image)
		ss.ended(r)
		ss.mu.Lock()
		next := ss.next
		ss.next = nil
		ss.mu.Unlock()
		if next != nil && ss.ctx.Err() == nil {
			ss.launch(next)
		}
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

// stop cancels the run in progress, if any, and the starts waiting, saying why.
func (ss *wsSession) stop(reason string) {
	ss.mu.Lock()
	a := ss.active
	ss.pending, ss.next = nil, nil
	ss.mu.Unlock()
	if a != nil {
		a.run.stopReason.Store(&reason)
		a.cancel()
	}
}

func (ss *wsSession) currentGain() float64 { return math.Float64frombits(ss.gain.Load()) }

// send queues a message; a client that lets too many pile up is disconnected,
// with the reason.
func (ss *wsSession) send(m outMsg) {
	if err := ss.out.push(m); err != nil {
		ss.closeWith(websocket.ClosePolicyViolation, tooManyWaiting)
	}
}

// sendQueued tells the client its run's place in line. The message is written
// with the place current then, so while one is unsent the next is not queued: a
// long line moving fast sends each client a few messages, not one per move.
func (ss *wsSession) sendQueued(run, pos int) {
	ss.place.Store(int64(pos))
	ss.send(outMsg{key: "queued " + strconv.Itoa(run), build: func() (int, []byte, error) {
		running, waiting := ss.s.explorer.queue.stats()
		data, err := json.Marshal(map[string]any{"type": "queued", "run": run, "position": ss.place.Load(), "running": running, "waiting": waiting})
		return websocket.TextMessage, data, err
	}})
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

// refuse answers a client's message that cannot be used (within the allowance).
func (ss *wsSession) refuse(msg string) {
	if ss.mayRefuse() {
		ss.sendError(msg)
	}
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
// built when its turn comes (it may depend on the frames before it). A message
// with a key is dropped while an unsent one with the same key waits.
type outMsg struct {
	typ   int
	data  []byte
	snap  *snapshot
	build func() (int, []byte, error)
	key   string
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
	if m.key != "" && slices.ContainsFunc(o.queue, func(q outMsg) bool { return q.key == m.key }) {
		o.mu.Unlock()
		return nil
	}
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
