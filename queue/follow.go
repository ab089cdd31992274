package queue

import (
	"errors"

	"gibbon/inference/engine"
	"gibbon/inference/sweep"
)

// follower hands one kind of run's events to its page. The relay calls it for
// the current delivery only: its start once, frames after the start, and its
// end. A redelivered run replays what the page has already: a follower hands on
// only what is new.
type follower interface {
	queued(position, running, waiting int)
	started(*event) error
	frame(*event) error
	// ended keeps the result the end carries and returns the run's error.
	ended(*event) error
}

// queueReport hands a waiting run's place in line to the page's callback.
type queueReport func(position, running, waiting int)

func (q queueReport) queued(position, running, waiting int) {
	if q != nil {
		q(position, running, waiting)
	}
}

// attackFollower relays an explorer run: the engine's start, frames and record.
type attackFollower struct {
	queueReport
	ev      engine.Events
	begun   bool
	lastSeq int // the last frame handed on
	rec     *engine.Record
}

func newAttackFollower(ev engine.Events) *attackFollower {
	return &attackFollower{queueReport: ev.Queued, ev: ev, lastSeq: -1}
}

func (f *attackFollower) started(e *event) error {
	f.begun = true
	if f.ev.Started != nil {
		return f.ev.Started(e.Start)
	}
	return nil
}

func (f *attackFollower) frame(e *event) error {
	if e.Frame == nil || e.Frame.Seq <= f.lastSeq {
		return nil
	}
	f.lastSeq = e.Frame.Seq
	if f.ev.Frame != nil {
		return f.ev.Frame(e.Frame)
	}
	return nil
}

// ended hands on the final frame and keeps the record (a stopped run's partial
// one too).
func (f *attackFollower) ended(e *event) error {
	if fr := e.Frame; fr != nil && f.begun && fr.Seq > f.lastSeq && f.ev.Frame != nil {
		f.lastSeq = fr.Seq
		f.ev.Frame(fr) // the final frame: the page gets it whatever the callback says
	}
	if e.Record == nil && e.Err == nil {
		return errors.New("the worker sent no record")
	}
	f.rec = e.Record
	return e.Err.err()
}

// sweepFollower relays a sweep, competition or transfer run: its start, an
// image sweep's points, a data set run's partial results, the outcome.
type sweepFollower struct {
	queueReport
	ev        sweep.Events
	lastPoint int // the index of the last point handed on
	lastDone  int // the images of the last partial result handed on
	outcome   *sweep.Outcome
}

func newSweepFollower(ev sweep.Events) *sweepFollower {
	return &sweepFollower{queueReport: ev.Queued, ev: ev, lastPoint: -1}
}

func (f *sweepFollower) started(e *event) error {
	if e.Sweep == nil {
		return errors.New("the worker sent a start that is not a sweep's")
	}
	if f.ev.Started != nil {
		return f.ev.Started(e.Sweep.Total, e.Sweep.Label)
	}
	return nil
}

func (f *sweepFollower) frame(e *event) error {
	s := e.Sweep
	switch {
	case s == nil:
	case s.Point != nil && s.Point.Index > f.lastPoint:
		f.lastPoint = s.Point.Index
		if f.ev.Point != nil {
			return f.ev.Point(*s.Point)
		}
	case s.Partial != nil && s.Done > f.lastDone:
		f.lastDone = s.Done
		if f.ev.Progress != nil {
			return f.ev.Progress(s.Done, s.Partial)
		}
	}
	return nil
}

func (f *sweepFollower) ended(e *event) error {
	if e.Err != nil {
		return e.Err.err()
	}
	if e.Sweep == nil || e.Sweep.Outcome == nil || e.Sweep.Outcome.Result == nil {
		return errors.New("the worker sent no result")
	}
	f.outcome = e.Sweep.Outcome
	return nil
}
