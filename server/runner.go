package server

import (
	"context"

	"gibbon/inference/engine"
)

// Runner executes the explorer's runs: in this process (localRunner, the
// default), or on queue workers when the server is scaled out.
type Runner interface {
	Run(ctx context.Context, job engine.Job, ev engine.Events) (*engine.Record, error)
}

// localRunner runs jobs here, on the server's zoo: the plan is prepared (the
// image decoded as the job's Image says: within the server's memory budget),
// then the run waits its turn in the fair run queue.
type localRunner struct{ s *Server }

func (l localRunner) Run(ctx context.Context, job engine.Job, ev engine.Events) (*engine.Record, error) {
	s := l.s
	p, err := engine.Prepare(ctx, s.models, job.Plan, job.Image, job.Limits)
	if err != nil {
		return nil, err
	}
	release, err := s.explorer.queue.acquire(ctx, func(pos int) {
		if ev.Queued != nil {
			running, waiting := s.explorer.queue.stats()
			ev.Queued(pos, running, waiting)
		}
	})
	if err != nil {
		return nil, err
	}
	defer release()
	return p.Execute(ctx, job.Timeout, ev)
}
