package server

import (
	"context"

	"gibbon/inference/sweep"
)

// SweepRunner executes sweeps, competitions and transfer runs: in this process
// (localSweeps, the default), or on queue workers when the server is scaled out.
// plan is job planned on the server's zoo (the page's started message and the
// run's models come from it); a runner elsewhere plans job again on its own.
type SweepRunner interface {
	RunSweep(ctx context.Context, plan *sweep.Plan, job sweep.Job, ev sweep.Events) (*sweep.Outcome, error)
}

// localSweeps runs them here: the input is loaded (the data set once per
// server), then the run waits its turn in the sweeps' run queue and executes
// within the job's time limit.
type localSweeps struct{ sw *sweeper }

func (l localSweeps) RunSweep(ctx context.Context, plan *sweep.Plan, job sweep.Job, ev sweep.Events) (*sweep.Outcome, error) {
	sw := l.sw
	in, err := plan.LoadInput(ctx, job, &sw.data)
	if err != nil {
		return nil, err
	}
	release, err := sw.queue.acquire(ctx, func(pos int) {
		if ev.Queued != nil {
			running, waiting := sw.queue.stats()
			ev.Queued(pos, running, waiting)
		}
	})
	if err != nil {
		return nil, err
	}
	defer release()
	if job.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, job.Timeout)
		defer cancel()
	}
	return sweep.Execute(ctx, plan, in, ev)
}
