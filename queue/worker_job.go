package queue

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gibbon/inference/engine"
)

// Why a worker's run ends early: nobody wants it any more, or the web node that
// asked for it is gone.
var (
	errNotWanted   = errors.New("the web node no longer wants the run")
	errWebNodeGone = errors.New("the web node that asked for the run is gone")
)

// doneTries is how many times the end of a run is sent before the worker gives
// up on its web node.
const doneTries = 3

// jobRun is one delivery of a job on a worker.
type jobRun struct {
	w       *Worker
	msg     jetstream.Msg
	jm      jobMsg
	attempt int
}

// runJob runs one delivered job and acks it; a worker stopping hands it back
// (Nak: another worker takes it at once), a lost connection leaves it for
// JetStream to redeliver.
func (w *Worker) runJob(parent context.Context, msg jetstream.Msg) {
	w.jobs.Add(1)
	j := &jobRun{w: w, msg: msg, attempt: 1}
	if err := decode(msg.Data(), &j.jm); err != nil {
		w.log.Warn("queue: an unreadable job, dropped", "err", err)
		msg.TermWithReason("unreadable job")
		return
	}
	if meta, err := msg.Metadata(); err == nil {
		j.attempt = int(meta.NumDelivered)
	}
	log := w.log.With("run", j.jm.Run, "delivery", j.attempt)
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	sub, err := w.conn.nc.Subscribe(cancelSubject(j.jm.Run), func(*nats.Msg) { cancel(nil) })
	if err != nil {
		return // the connection is down: JetStream redelivers the job
	}
	defer sub.Unsubscribe()
	w.register(j.jm.Run, cancel)
	defer w.unregister(j.jm.Run)

	if wanted, err := j.request(&event{Kind: evAccept}, 2, requestTimeout); !wanted {
		log.Info("queue: run no longer wanted, dropped", "err", err)
		msg.Ack()
		return
	}
	if m := w.lacks(j.jm.Needs); m != "" { // the web node's choice of set prevents this
		j.finish(&event{Kind: evDone, Err: toWire(fmt.Errorf("worker %s has no model %s with the checksum asked for", w.cfg.Name, m))})
		msg.TermWithReason("model missing")
		return
	}
	log.Info("queue: run accepted", append([]any{"worker", w.cfg.Name}, j.jm.describe()...)...)
	stopBeats := j.heartbeat(ctx, cancel)
	end, err := j.execute(ctx)
	stopBeats()
	// Why the run ended early, if it did: read now, as the worker stopping after
	// the run did not stop it.
	cause := context.Cause(ctx)
	switch {
	case parent.Err() != nil:
		log.Info("queue: worker stopping, run handed back")
		msg.Nak()
		return
	case errors.Is(cause, errLostConnection):
		return
	}
	j.finish(end)
	msg.Ack()
	if cause != nil {
		log.Info("queue: run stopped", "why", cause)
		return
	}
	log.Info("queue: run ended", "err", err)
}

// execute runs the job and returns its end (an explorer run's record and final
// frame, or a sweep's outcome: worker_sweep.go) with the run's error, which the
// end carries too.
func (j *jobRun) execute(ctx context.Context) (*event, error) {
	if err := j.fetchImage(ctx); err != nil {
		return &event{Kind: evDone, Err: toWire(err)}, err
	}
	if j.jm.Sweep != nil {
		o, err := j.runSweep(ctx)
		return &event{Kind: evDone, Sweep: &sweepEvent{Outcome: o}, Err: toWire(err)}, err
	}
	rec, final, err := j.runAttack(ctx)
	return &event{Kind: evDone, Record: rec, Frame: final, Err: toWire(err)}, err
}

// fetchImage puts the job's image back from the object store, when it went
// there.
func (j *jobRun) fetchImage(ctx context.Context) error {
	if j.jm.ImageBlob == "" {
		return nil
	}
	gctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	data, err := j.w.payloads.GetBytes(gctx, j.jm.ImageBlob)
	if err != nil {
		return fmt.Errorf("the job's image is not in the payload store: %w", err)
	}
	*j.jm.image() = data
	return nil
}

// runAttack prepares and runs an explorer plan, sending the start and the
// frames (the final frame is kept for the end).
func (j *jobRun) runAttack(ctx context.Context) (*engine.Record, *engine.Frame, error) {
	job := j.jm.Job
	p, err := engine.Prepare(ctx, j.w.zoo, job.Plan, job.Image, job.Limits)
	if err != nil {
		return nil, nil, err
	}
	var final *engine.Frame
	rec, err := p.Execute(ctx, job.Timeout, engine.Events{
		Started: func(s *engine.Start) error { return j.start(&event{Kind: evStart, Start: s}) },
		Frame: func(f *engine.Frame) error {
			if f.Final {
				final = f
				return nil
			}
			return j.publish(&event{Kind: evFrame, Frame: f})
		},
	})
	return rec, final, err
}

// heartbeat tells JetStream the job is in progress every third of AckWait, and
// asks the web node whether it still wants the run: a stop or a web node gone
// cancels it.
func (j *jobRun) heartbeat(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	every := j.w.cfg.AckWait / 3
	hctx, hcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
			}
			j.msg.InProgress()
			wanted, err := j.request(&event{Kind: evBeat}, 1, min(every, requestTimeout))
			switch {
			case errors.Is(err, nats.ErrNoResponders):
				cancel(errWebNodeGone)
			case err == nil && !wanted:
				cancel(errNotWanted)
			}
		}
	}()
	return func() {
		hcancel()
		<-done
	}
}

// start tells the web node the prepared run starts, and stops the run when the
// web node no longer wants it.
func (j *jobRun) start(ev *event) error {
	wanted, err := j.request(ev, 2, requestTimeout)
	if !wanted {
		return cmp.Or(err, errNotWanted)
	}
	return nil
}

// finish sends the end of the run (an evDone). A web node that does not answer
// after doneTries is gone, and the run with it.
func (j *jobRun) finish(end *event) {
	if _, err := j.request(end, doneTries, requestTimeout); err != nil {
		j.w.log.Warn("queue: the end of the run did not reach its web node", "run", j.jm.Run, "err", err)
	}
}

// wire encodes ev as this delivery's, through the object store when it is too
// large for a message (big is false for frames: they are dropped instead).
func (j *jobRun) wire(ctx context.Context, ev *event, big bool) ([]byte, error) {
	ev.Worker, ev.Attempt = j.w.cfg.Name, j.attempt
	data, err := encode(ev)
	if err != nil || len(data) <= j.w.conn.maxMessage() {
		return data, err
	}
	if !big {
		return nil, nil
	}
	name := fmt.Sprintf("%s.%d.%s", j.jm.Run, j.attempt, ev.Kind)
	if err := j.w.conn.putBlob(ctx, j.w.payloads, name, data); err != nil {
		return nil, err
	}
	return encode(&event{Kind: ev.Kind, Worker: ev.Worker, Attempt: ev.Attempt, Blob: name})
}

// publish sends a frame; a frame too large for a message is skipped (the
// final one travels with the end).
func (j *jobRun) publish(ev *event) error {
	data, err := j.wire(context.Background(), ev, false)
	if err != nil || data == nil {
		return err
	}
	return j.w.conn.nc.Publish(eventSubject(j.jm.Run), data)
}

// request sends ev to the web node and reads its answer, trying up to tries
// times while it times out. No responders means the web node is gone.
func (j *jobRun) request(ev *event, tries int, timeout time.Duration) (wanted bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout*time.Duration(tries))
	defer cancel()
	data, err := j.wire(ctx, ev, true)
	if err != nil {
		return false, err
	}
	for range tries {
		var reply *nats.Msg
		reply, err = j.w.conn.nc.Request(eventSubject(j.jm.Run), data, timeout)
		switch {
		case err == nil:
			return bytes.Equal(reply.Data, replyGo), nil
		case errors.Is(err, nats.ErrNoResponders):
			return false, err
		}
	}
	return false, err
}
