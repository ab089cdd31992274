package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/inference/sweep"
)

// sweepJob is one run of a sweep or matrix, from its start message to done.
type sweepJob struct {
	ss       *sweepSession
	id       int
	key      string // the run book's key
	msg      sweepStartMsg
	received time.Time
	cancel   context.CancelFunc
	stopped  atomic.Bool
}

// sweepStarted tells the page what runs: the settings with defaults filled in, the
// budgets with their units, the defences, and for one image the clean image.
type sweepStarted struct {
	Type     string          `json:"type"`
	Run      int             `json:"run"`
	Key      string          `json:"key"`
	Kind     string          `json:"kind"`
	Settings sweep.Settings  `json:"settings"`
	Command  string          `json:"command"`
	Input    string          `json:"input"`
	Range    []float64       `json:"range"`
	Eps      []float64       `json:"eps"`
	Eps255   []float64       `json:"eps_255"`
	Defences []sweep.Defence `json:"defences"`
	Attacks  []string        `json:"attacks,omitempty"`
	Total    int             `json:"total"`
	Label    int             `json:"label"`
	Labels   []string        `json:"labels,omitempty"`
	Clean    string          `json:"clean,omitempty"`
	QueueMS  float64         `json:"queue_ms"`
}

type sweepPoint struct {
	Type  string      `json:"type"`
	Run   int         `json:"run"`
	Point sweep.Point `json:"point"`
	Thumb string      `json:"thumb"`
}

type sweepProgress struct {
	Type   string `json:"type"`
	Run    int    `json:"run"`
	Done   int    `json:"done"`
	Total  int    `json:"total"`
	Result any    `json:"result"`
}

type sweepDone struct {
	Type    string  `json:"type"`
	Run     int     `json:"run"`
	Key     string  `json:"key"`
	Kind    string  `json:"kind"`
	Result  any     `json:"result"`
	CSV     string  `json:"csv"`
	Command string  `json:"command"`
	Seconds float64 `json:"seconds"`
	// Saveable says the page may save the run by its key; NoSave why it may not.
	Saveable bool   `json:"saveable"`
	NoSave   string `json:"no_save,omitempty"`
}

// execute runs the job and ends with exactly one of done, stopped or error, unless
// the client is gone.
func (j *sweepJob) execute(ctx context.Context, image []byte) {
	sw := j.ss.s.sweeps
	sw.running.Add(1)
	defer sw.running.Add(-1)
	j.key = j.ss.s.runs.open(j.ss.owner)
	final, err := j.run(ctx, image)
	if final == nil {
		j.ss.s.runs.close(j.key, nil, "it did not finish.")
	}
	// The run is over before its last message leaves: a client may start the next
	// one as soon as it reads it.
	j.ss.finished(j)
	switch {
	case err == nil:
		j.ss.send("", final)
	case j.ss.ctx.Err() != nil:
		// The client is gone, or the server is stopping: nobody to tell.
	case j.stopped.Load():
		j.ss.send("", map[string]any{"type": "stopped", "run": j.id, "message": "You stopped the run."})
	case errors.Is(err, context.DeadlineExceeded):
		j.ss.sendError(j.id, fmt.Sprintf("The run reached the time limit of %s: ask for fewer images, ε values or steps.", sw.lim.Timeout))
	default:
		var ue userError
		var ie *inference.ImageError
		var be busyError
		switch {
		case errors.As(err, &ue), errors.As(err, &ie):
			j.ss.sendUserError(j.id, err)
		case errors.As(err, &be):
			j.ss.sendError(j.id, strings.Replace(be.Error(), "attack(s)", "sweep(s)", 1))
		default:
			j.ss.s.log.Warn("sweeps: run failed", "run", j.id, "err", err)
			j.ss.sendError(j.id, "The run failed: "+err.Error())
		}
	}
}

func (j *sweepJob) run(ctx context.Context, image []byte) (*sweepDone, error) {
	s := j.ss.s
	sw := s.sweeps
	set := j.msg.Settings
	if set.Kind == sweep.KindImage {
		set.Image = imageName(j.msg, set.Image)
	}
	plan, err := set.Plan(ctx, sweep.FromZoo(s.models), sw.lim.Limits)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, userError{http.StatusBadRequest, upperFirst(strings.TrimSuffix(err.Error(), ".")) + "."}
	}
	st := j.startedMsg(plan)
	if p := plan.Settings; p.Kind == sweep.KindImage && len(st.Labels) > 0 && p.Label >= len(st.Labels) {
		return nil, userError{http.StatusBadRequest, fmt.Sprintf("The true class must be between 0 and %d (or empty), not %d.", len(st.Labels)-1, p.Label)}
	}

	// The job: an image sweep's image goes on the 8-bit grid here (the page sees
	// it in the started message), the data set is the runner's to load.
	job := sweep.Job{Settings: plan.Settings, Limits: sw.lim.Limits, Timeout: sw.lim.Timeout}
	g := engine.NewGrid(plan.Contract)
	if plan.Settings.Kind == sweep.KindImage {
		if j.msg.Source == "sample" {
			sm, _ := s.samples.get(j.msg.Sample)
			image = sm.data
		}
		clean, err := j.loadImage(ctx, image, plan, g)
		if err != nil {
			return nil, err
		}
		if job.Image, err = plan.CleanPNG(clean); err != nil {
			return nil, err
		}
		st.Clean = pngDataURLBytes(job.Image)
	}

	// The executor the commands use too, here or on a worker; the page hears its events.
	o, err := sw.runner.RunSweep(ctx, plan, job, j.events(&st, g))
	if err != nil {
		return nil, err
	}
	var csv bytes.Buffer
	if err := o.WriteCSV(&csv); err != nil {
		return nil, err
	}
	p := plan.Settings
	done := sweepDone{Type: "done", Run: j.id, Key: j.key, Kind: p.Kind, Result: o.Result, CSV: csv.String(), Command: p.Command(),
		Seconds: o.Seconds}
	if o.Entry == nil {
		done.NoSave = "This run cannot be saved: " + o.NoSave + "."
	}
	s.runs.close(j.key, o.Entry, o.NoSave)
	done.Saveable = o.Entry != nil && s.gallery != nil
	return &done, nil
}

// startedMsg tells the page what plan runs; the runner's start fills in the
// work to do and the true class.
func (j *sweepJob) startedMsg(plan *sweep.Plan) sweepStarted {
	st := sweepStarted{Type: "started", Run: j.id, Key: j.key, Kind: plan.Settings.Kind, Settings: plan.Settings, Command: plan.Settings.Command(),
		Input: plan.Contract.Describe(), Range: []float64{float64(plan.Range[0]), float64(plan.Range[1])}, Defences: plan.Defences,
		Label: -1, Labels: plan.Labels}
	for _, e := range plan.Eps {
		st.Eps = append(st.Eps, math.Round(float64(e)*1e6)/1e6)
		st.Eps255 = append(st.Eps255, sweep.Eps255(e, plan.Range))
	}
	for _, a := range plan.Attacks {
		st.Attacks = append(st.Attacks, a.Name)
	}
	return st
}

// events send the run's place in line, its start (st), an image sweep's points
// with their thumbnails on grid g, and a data set run's partial results.
func (j *sweepJob) events(st *sweepStarted, g engine.Grid) sweep.Events {
	return sweep.Events{
		Queued: func(pos, running, waiting int) {
			j.ss.send("queued", map[string]any{"type": "queued", "run": j.id, "position": pos, "running": running, "waiting": waiting})
		},
		Started: func(total, label int) error {
			st.Total, st.Label, st.QueueMS = total, label, millis(time.Since(j.received))
			j.ss.send("", *st)
			return nil
		},
		Point: func(pt sweep.Point) error {
			data, err := engine.EncodePNG(g.Image(g.Quantize(pt.Adv.Data)))
			if err != nil {
				return err
			}
			j.ss.send("", sweepPoint{Type: "point", Run: j.id, Point: pt, Thumb: pngDataURLBytes(data)})
			return nil
		},
		Progress: func(done int, partial any) error {
			j.ss.send("progress", sweepProgress{Type: "progress", Run: j.id, Done: done, Total: st.Total, Result: partial})
			return nil
		},
	}
}

// imageName is what an image sweep records as its image: the sample's file name, or
// the uploaded file's (sent by the page), cleaned.
func imageName(m sweepStartMsg, given string) string {
	if m.Source == "sample" {
		return m.Sample
	}
	name := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '/' || r == '\\' {
			return -1
		}
		return r
	}, strings.TrimSpace(given))
	if r := []rune(name); len(r) > 100 {
		name = string(r[:100])
	}
	if name == "" {
		name = "upload"
	}
	return name
}

// loadImage decodes and preprocesses the image (with the server's decode slots) and
// puts it on the 8-bit grid: the clean image is what a PNG of it holds.
func (j *sweepJob) loadImage(ctx context.Context, data []byte, plan *sweep.Plan, g engine.Grid) (*inference.Tensor, error) {
	s := j.ss.s
	clean, err := engine.LoadImage(engine.Image{Data: data, Decode: func(data []byte) (*inference.Picture, error) {
		pic, _, err := s.loadPicture(ctx, data)
		return pic, err
	}}, plan.Contract)
	if err != nil {
		return nil, err
	}
	return g.Tensor(clean.Levels), nil
}
