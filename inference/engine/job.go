package engine

import (
	"context"
	"time"
)

// Job is one run to execute, as adapters hand it to a runner (in this process, or
// on a queue worker): the plan, its image's bytes and the bounds.
type Job struct {
	Plan   Plan
	Image  Image
	Limits Limits
	// Timeout bounds the run once it starts (queueing excluded); 0: none.
	Timeout time.Duration
}

// Events are what an executing job reports, in order: its place in line while it
// waits (Queued, any number of times), its start once prepared, then its frames.
// Any of them may be nil.
type Events struct {
	Queued  func(position, running, waiting int)
	Started func(*Start) error
	Frame   FrameFunc
}

// Execute reports the prepared run's start, then runs it within timeout (0: no
// limit), reporting frames. Errors and partial records are Run's.
func (p *Prepared) Execute(ctx context.Context, timeout time.Duration, ev Events) (*Record, error) {
	if ev.Started != nil {
		if err := ev.Started(p.Start()); err != nil {
			return nil, err
		}
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return p.Run(ctx, ev.Frame)
}
