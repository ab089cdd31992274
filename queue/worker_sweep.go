package queue

import (
	"context"

	"gibbon/inference/sweep"
)

// runSweep plans a sweep, competition or transfer run again on the worker's zoo
// (the web node chose a set with the same model files), loads its input and
// runs it with the one executor, sending its start, an image sweep's points and
// a data set run's partial results; the outcome travels with the end.
func (j *jobRun) runSweep(ctx context.Context) (*sweep.Outcome, error) {
	job := *j.jm.Sweep
	plan, err := job.Settings.Plan(ctx, sweep.FromZoo(j.w.zoo), job.Limits)
	if err != nil {
		return nil, err // sent as the worker's message
	}
	in, err := plan.LoadInput(ctx, job, &j.w.datasets)
	if err != nil {
		return nil, err
	}
	if job.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, job.Timeout)
		defer cancel()
	}
	return sweep.Execute(ctx, plan, in, sweep.Events{
		Started: func(total, label int) error {
			return j.start(&event{Kind: evStart, Sweep: &sweepEvent{Total: total, Label: label}})
		},
		// Points and partial results are published as frames are: a slow web node
		// may drop some, and the outcome holds them all.
		Point: func(p sweep.Point) error {
			return j.publish(&event{Kind: evFrame, Sweep: &sweepEvent{Point: &p}})
		},
		Progress: func(done int, partial any) error {
			r, _ := partial.(sweep.Result)
			return j.publish(&event{Kind: evFrame, Sweep: &sweepEvent{Done: done, Partial: r}})
		},
	})
}
