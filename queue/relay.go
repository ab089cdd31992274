package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gibbon/inference/engine"
)

// Timing of a run on the web node.
const (
	// pollEvery is how often a waiting run reads its place in line, and a running
	// one checks that its workers are still there.
	pollEvery = 500 * time.Millisecond
	// requestTimeout bounds a worker's request to the web node and the web
	// node's calls to JetStream for one run.
	requestTimeout = 5 * time.Second
	// stopWait is how long a stopped run waits for its worker's partial record.
	stopWait = 5 * time.Second
)

var errWorkersGone = errors.New("the workers that have this run's models are gone: start one (gibbon worker), or try again later")

// relay is one run on the web node: its job on the queue, and the events its
// worker sends, in order. The NATS handler answers the worker's requests at once
// and queues the events; follow hands them to the page's callbacks.
type relay struct {
	r         *Runner
	id        string
	set       string
	ref       jobRef
	timeout   time.Duration
	imageBlob string
	events    chan *event
	fail      chan error
	done      chan struct{} // closed when the run is over here

	mu      sync.Mutex
	attempt int  // the newest delivery accepted
	over    bool // requests are answered "stop"
	dropped int  // frames dropped for a slow web node
}

func newRelay(r *Runner, set string) *relay {
	// Room for every recorded frame of a run: frames are dropped only when the
	// page's side stalls.
	return &relay{r: r, id: newRunID(), set: set, events: make(chan *event, engine.MaxRecordedSteps+16),
		fail: make(chan error, 1), done: make(chan struct{})}
}

// submit publishes the job on its set's stream (its image through the object
// store when the job is too large for a message).
func (rl *relay) submit(ctx context.Context, jm jobMsg) error {
	rl.timeout = jm.timeout()
	jm.Run = rl.id
	data, err := encode(jm)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if len(data) > rl.r.conn.maxMessage() {
		name := rl.id + ".image"
		if err := rl.r.conn.putBlob(pctx, rl.r.payloads, name, *jm.image()); err != nil {
			return fmt.Errorf("the image could not be put on the job queue: %w", err)
		}
		rl.imageBlob = name
		*jm.image(), jm.ImageBlob = nil, name
		if data, err = encode(jm); err != nil {
			return err
		}
	}
	ack, err := rl.r.conn.js.Publish(pctx, jobSubject(rl.set), data, jetstream.WithExpectStream(jobStream(rl.set)))
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return ctx.Err()
	case strings.Contains(err.Error(), "maximum messages"):
		return fmt.Errorf("the workers' queue is full (%d runs waiting): try again in a minute", maxWaitingJobs)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return errWorkersGone
	default:
		return fmt.Errorf("the job could not be queued: %w", err)
	}
	rl.ref = jobRef{ack.Stream, ack.Sequence}
	rl.r.placed(rl)
	return nil
}

// handle is the NATS handler of the run's events subject.
func (rl *relay) handle(m *nats.Msg) {
	ev := new(event)
	if err := decode(m.Data, ev); err != nil {
		rl.r.log.Warn("queue: an unreadable event", "run", rl.id, "err", err)
		return
	}
	if ev.Blob != "" {
		if err := rl.fetch(ev); err != nil {
			rl.r.log.Warn("queue: an event's payload is missing", "run", rl.id, "kind", ev.Kind, "err", err)
			return // the worker hears no answer and tries again
		}
	}
	answer := rl.answer(ev)
	if m.Reply != "" {
		m.Respond(answer)
	}
	if bytes.Equal(answer, replyStop) {
		return
	}
	rl.push(ev)
}

// fetch replaces ev by the event its blob holds, and deletes the blob.
func (rl *relay) fetch(ev *event) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	name := ev.Blob
	data, err := rl.r.payloads.GetBytes(ctx, name)
	if err != nil {
		return err
	}
	rl.r.payloads.Delete(ctx, name)
	*ev = event{}
	return decode(data, ev)
}

// answer says whether the run still wants the sender: go to the newest
// delivery's worker while the run is on, stop to anyone else.
func (rl *relay) answer(ev *event) []byte {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	switch {
	case rl.over:
		return replyStop
	case ev.Kind == evAccept && ev.Attempt >= rl.attempt:
		rl.attempt = ev.Attempt
		return replyGo
	case ev.Attempt == rl.attempt:
		return replyGo
	}
	return replyStop
}

// push queues an event for follow. Frames and beats are dropped when the queue
// is full (the page's side stalls); the others wait for room.
func (rl *relay) push(ev *event) {
	if ev.Kind == evFrame || ev.Kind == evBeat {
		select {
		case rl.events <- ev:
		default:
			rl.mu.Lock()
			rl.dropped++
			rl.mu.Unlock()
		}
		return
	}
	select {
	case rl.events <- ev:
	case <-rl.done:
	}
}

func (rl *relay) failWith(err error) {
	select {
	case rl.fail <- err:
	default:
	}
}

func (rl *relay) setOver() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.over = true
}

// cleanup ends the run here: later requests are answered stop, and its image
// blob is deleted.
func (rl *relay) cleanup() {
	rl.setOver()
	close(rl.done)
	if rl.imageBlob != "" && rl.r.conn.Connected() {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		rl.r.payloads.Delete(ctx, rl.imageBlob)
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.dropped > 0 {
		rl.r.log.Info("queue: frames dropped for a slow page", "run", rl.id, "frames", rl.dropped)
	}
}

// dequeue takes the job off its stream (a page gone before a worker took it, or
// a job given up), so that no worker takes it.
func (rl *relay) dequeue() {
	rl.setOver()
	if rl.ref.seq == 0 || !rl.r.conn.Connected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if s, err := rl.r.conn.js.Stream(ctx, rl.ref.stream); err == nil {
		s.DeleteMsg(ctx, rl.ref.seq)
	}
}

// progress is what follow knows of the run.
type progress struct {
	accepted, started bool
	attempt           int
	worker            string
	position          int       // the last position reported
	heard             time.Time // the current worker's last event
}

// follow hands the worker's events to the page through f until the run ends;
// f keeps its result.
func (rl *relay) follow(ctx context.Context, f follower) error {
	p := &progress{heard: time.Now()}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return rl.abandon(p, f, ctx.Err())
		case err := <-rl.fail:
			rl.dequeue()
			return err
		case e := <-rl.events:
			if e.Kind == evDone && p.accepted && e.Attempt == p.attempt {
				return f.ended(e)
			}
			if err := rl.apply(p, e, f); err != nil {
				return rl.abandon(p, f, err)
			}
		case <-tick.C:
			if err := rl.check(ctx, p, f); err != nil {
				rl.dequeue()
				return err
			}
		}
	}
}

// apply hands on an accept, start, frame or beat of the current delivery; an
// error is the page's callback's.
func (rl *relay) apply(p *progress, e *event, f follower) error {
	if e.Kind == evAccept {
		if e.Attempt < p.attempt {
			return nil
		}
		if p.accepted {
			rl.r.log.Info("queue: run redelivered", "run", rl.id, "from", p.worker, "to", e.Worker, "delivery", e.Attempt)
		}
		p.accepted, p.attempt, p.worker, p.heard = true, e.Attempt, e.Worker, time.Now()
		return nil
	}
	if !p.accepted || e.Attempt != p.attempt {
		return nil // an older delivery's
	}
	p.heard = time.Now()
	switch e.Kind {
	case evStart:
		if p.started {
			return nil // a redelivery starts the same plan again: the page has it
		}
		p.started = true
		return f.started(e)
	case evFrame:
		if p.started {
			return f.frame(e)
		}
	}
	return nil
}

// abandon cancels the run on its worker (or takes it off the queue) and, for a
// run under way, waits briefly for the worker's end: a stopped explorer run's
// partial record, or a run that ended before the cancel reached it.
func (rl *relay) abandon(p *progress, f follower, why error) error {
	rl.r.conn.nc.Publish(cancelSubject(rl.id), nil)
	if !p.accepted {
		rl.dequeue()
		return why
	}
	timer := time.NewTimer(stopWait)
	defer timer.Stop()
	for {
		select {
		case e := <-rl.events:
			switch {
			case e.Kind == evAccept && e.Attempt > p.attempt: // redelivered meanwhile
				p.attempt = e.Attempt
				rl.r.conn.nc.Publish(cancelSubject(rl.id), nil)
			case e.Kind == evDone && e.Attempt == p.attempt:
				if f.ended(e) == nil {
					return nil // it ended before the cancel reached it
				}
				return why
			}
		case <-timer.C:
			return why
		case <-rl.fail:
			return why
		}
	}
}

// check runs every pollEvery: while the job waits it reports its position; at
// any time it ends the run when its workers are gone (their adverts expired) or
// when its worker went silent for longer than JetStream would keep trying.
func (rl *relay) check(ctx context.Context, p *progress, f follower) error {
	if !rl.r.conn.Connected() {
		return errConnectionLost
	}
	cctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if alive, err := rl.r.setAlive(cctx, rl.set); err == nil && !alive {
		return errWorkersGone
	}
	st, err := rl.r.setInfo(cctx, rl.set)
	if err != nil {
		return nil // a passing problem: the next check tries again
	}
	if !p.accepted {
		if pos := st.position(rl.ref.seq); pos > 0 && pos != p.position {
			p.position = pos
			f.queued(pos, st.inFlight, st.pending)
		}
		return nil
	}
	// The max-deliveries advisory (onGivenUp) normally ends a run whose workers
	// keep dying; this bounds the wait should it be missed.
	tries := st.maxDeliver
	if tries < 1 {
		tries = 3
	}
	if limit := time.Duration(tries+1) * (st.ackWait + rl.timeout); time.Since(p.heard) > limit {
		return givenUpError{tries}
	}
	return nil
}
