package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"gibbon/inference/sweep"
)

// The sweeps' websocket: one per page, one run at a time. Like the explorer's, each
// connection has one reader (the handler's goroutine), one writer, and the run's
// goroutine, owned by the session and waited for when it ends. Every message is
// JSON text; thumbnails travel as data: URLs (28×28 PNGs are a few hundred bytes).
//
// Client → server: {"type":"start","settings":{…sweep.Settings},"source":"sample",
// "sample":NAME} or "source":"upload" with "image_bytes" (the image follows as one
// binary message); {"type":"stop"}.
// Server → client: queued, started, point (image sweeps), progress (data sets and
// matrices: the partial result), done (the result, its CSV and a gallery draft),
// stopped, error.

// maxSweepQueued bounds the messages waiting for a client that does not read;
// progress messages replace their unsent predecessor, so only points accumulate.
const maxSweepQueued = 256

func (s *Server) handleSweepSocket(c echo.Context) error {
	conn, release, err := s.openSocket(c, sweepSocket)
	if conn == nil {
		return err
	}
	defer release()
	ss := &sweepSession{wsConn: wsConn{s: s, cfg: s.explorer.cfg, conn: conn}, out: &sweepOutbox{wake: make(chan struct{}, 1)},
		owner: runOwner(c)}
	s.sweeps.sessions.Add(1)
	defer s.sweeps.sessions.Add(-1)
	ss.serve(c.Request().Context(), ss, ss.out.wake)
	return nil
}

type sweepSession struct {
	wsConn // the connection and its plumbing, shared with the explorer
	out    *sweepOutbox
	// owner is who opened the page (runOwner): its runs are saved by them only.
	owner string

	mu      sync.Mutex
	active  *sweepJob
	pending *sweepJob // an upload's start message, waiting for its image
	nextID  int
	jobs    sync.WaitGroup
}

func (ss *sweepSession) wait() { ss.jobs.Wait() }

func (ss *sweepSession) handleText(data []byte) {
	var m struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		ss.refuse(describeJSONError("message", err))
		return
	}
	switch m.Type {
	case "start":
		var sm sweepStartMsg
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sm); err != nil {
			ss.refuse(describeJSONError("start message", err))
			return
		}
		ss.start(sm)
	case "stop":
		ss.mu.Lock()
		j := ss.active
		ss.pending = nil
		ss.mu.Unlock()
		if j != nil {
			j.stopped.Store(true)
			j.cancel()
		}
	case "":
		ss.refuse("The message has no type.")
	default:
		ss.refuse("Unknown message type " + truncate(m.Type, 40) + ".")
	}
}

func (ss *sweepSession) start(sm sweepStartMsg) {
	ss.mu.Lock()
	busy := ss.active != nil || ss.pending != nil
	ss.mu.Unlock()
	if busy {
		ss.refuse("A run is already in progress: stop it before starting another.")
		return
	}
	j, err := ss.newJob(sm)
	if err != nil {
		_, msg := statusFor(err)
		ss.refuse(msg)
		return
	}
	if sm.Source == "upload" {
		ss.mu.Lock()
		ss.pending = j
		ss.mu.Unlock()
		return
	}
	ss.launch(j, nil)
}

func (ss *sweepSession) handleImage(data []byte) {
	ss.mu.Lock()
	j := ss.pending
	ss.pending = nil
	ss.mu.Unlock()
	if j == nil {
		ss.refuse("An image arrived without a start message before it.")
		return
	}
	if int64(len(data)) != j.msg.ImageBytes {
		ss.refuse("The image is not the size the start message announced; try again.")
		return
	}
	ss.launch(j, data)
}

func (ss *sweepSession) launch(j *sweepJob, image []byte) {
	ctx, cancel := context.WithCancel(ss.ctx)
	j.cancel = cancel
	ss.mu.Lock()
	ss.active = j
	ss.mu.Unlock()
	ss.jobs.Add(1)
	go func() {
		defer ss.jobs.Done()
		defer cancel()
		j.execute(ctx, image)
	}()
}

// finished marks j's run as over.
func (ss *sweepSession) finished(j *sweepJob) {
	ss.mu.Lock()
	if ss.active == j {
		ss.active = nil
	}
	ss.mu.Unlock()
}

// send queues a message; a client that lets too many pile up is disconnected. A
// message with a key replaces an unsent one with the same key.
func (ss *sweepSession) send(key string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		ss.s.log.Error("sweeps: encode message", "err", err)
		return
	}
	if err := ss.out.push(key, data); err != nil {
		ss.closeWith(websocket.ClosePolicyViolation, tooManyWaiting)
	}
}

func (ss *sweepSession) sendError(run int, msg string) {
	ss.send("", errorMsg{Type: "error", Run: run, Message: msg})
}

// refuse answers a client's message that cannot be used (within the allowance).
func (ss *sweepSession) refuse(msg string) {
	if ss.mayRefuse() {
		ss.sendError(0, msg)
	}
}

func (ss *sweepSession) sendUserError(run int, err error) {
	_, msg := statusFor(err)
	ss.sendError(run, msg)
}

// flush writes the queued messages until none is left or the session ends.
func (ss *sweepSession) flush() error {
	for ss.ctx.Err() == nil {
		data, ok := ss.out.next()
		if !ok {
			break
		}
		if err := ss.write(websocket.TextMessage, data); err != nil {
			return err
		}
	}
	return nil
}

// sweepOutbox holds messages in order; a keyed message replaces its unsent
// predecessor in place.
type sweepOutbox struct {
	mu    sync.Mutex
	queue []outItem
	wake  chan struct{}
}

type outItem struct {
	key  string
	data []byte
}

func (o *sweepOutbox) push(key string, data []byte) error {
	o.mu.Lock()
	replaced := false
	if key != "" {
		for i := range o.queue {
			if o.queue[i].key == key {
				o.queue[i].data, replaced = data, true
			}
		}
	}
	if !replaced {
		if len(o.queue) >= maxSweepQueued {
			o.mu.Unlock()
			return errOutboxFull
		}
		o.queue = append(o.queue, outItem{key: key, data: data})
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

func (o *sweepOutbox) next() ([]byte, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return nil, false
	}
	d := o.queue[0].data
	o.queue[0] = outItem{}
	o.queue = o.queue[1:]
	return d, true
}

func (ss *sweepSession) newJob(sm sweepStartMsg) (*sweepJob, error) {
	bad := func(format string, args ...any) error {
		return userError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
	}
	if sm.Settings.Kind == "image" {
		switch sm.Source {
		case "sample":
			if _, ok := ss.s.samples.get(sm.Sample); !ok {
				return nil, bad("There is no sample called %q.", truncate(sm.Sample, 60))
			}
		case "upload":
			if sm.ImageBytes < 1 {
				return nil, errNoInput
			}
			if sm.ImageBytes > ss.s.cfg.MaxUploadBytes {
				return nil, ss.s.errUploadTooLarge()
			}
		case "":
			return nil, bad("Choose an image to sweep: a sample or an upload.")
		default:
			return nil, bad("Unknown image source %q: send sample or upload.", truncate(sm.Source, 40))
		}
	} else if sm.Source != "" || sm.ImageBytes != 0 {
		return nil, bad("Only a sweep of one image takes an image.")
	}
	ss.mu.Lock()
	ss.nextID++
	id := ss.nextID
	ss.mu.Unlock()
	return &sweepJob{ss: ss, id: id, msg: sm, received: time.Now()}, nil
}

// sweepStartMsg is the client's request to run.
type sweepStartMsg struct {
	Type       string         `json:"type"`
	Settings   sweep.Settings `json:"settings"`
	Source     string         `json:"source"`
	Sample     string         `json:"sample"`
	ImageBytes int64          `json:"image_bytes"`
}
