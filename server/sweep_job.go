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

	"gibbon/gallery"
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
	st := sweepStarted{Type: "started", Run: j.id, Key: j.key, Kind: plan.Settings.Kind, Settings: plan.Settings, Command: plan.Settings.Command(),
		Input: plan.Contract.Describe(), Range: []float64{float64(plan.Range[0]), float64(plan.Range[1])}, Defences: plan.Defences, Label: -1}
	for _, e := range plan.Eps {
		st.Eps = append(st.Eps, math.Round(float64(e)*1e6)/1e6)
		st.Eps255 = append(st.Eps255, sweep.Eps255(e, plan.Range))
	}
	for _, a := range plan.Attacks {
		st.Attacks = append(st.Attacks, a.Name)
	}
	if len(plan.Defences) > 0 {
		if m, ok := s.models.Classifier(plan.Defences[0].Model); ok {
			st.Labels = m.Labels
		}
	}

	if p := plan.Settings; p.Kind == sweep.KindImage && len(st.Labels) > 0 && p.Label >= len(st.Labels) {
		return nil, userError{http.StatusBadRequest, fmt.Sprintf("The true class must be between 0 and %d (or empty), not %d.", len(st.Labels)-1, p.Label)}
	}

	// The inputs: one image on the 8-bit grid, or the data set.
	var clean *inference.Tensor
	var x *inference.Tensor
	var labels []int
	g := engine.NewGrid(plan.Contract)
	if plan.Settings.Kind == sweep.KindImage {
		if j.msg.Source == "sample" {
			sm, _ := s.samples.get(j.msg.Sample)
			image = sm.data
		}
		if clean, err = j.loadImage(ctx, image, plan, g); err != nil {
			return nil, err
		}
		st.Total = len(plan.Eps)
	} else {
		set, err := sw.mnistTest(ctx)
		if err != nil {
			return nil, err
		}
		if x, labels, err = plan.Contract.MNISTTensor(set, 0, plan.Settings.N); err != nil {
			return nil, userError{http.StatusBadRequest, upperFirst(err.Error()) + "."}
		}
		st.Total = len(labels)
	}

	release, err := sw.queue.acquire(ctx, func(pos int) {
		running, waiting := sw.queue.stats()
		j.ss.send("queued", map[string]any{"type": "queued", "run": j.id, "position": pos, "running": running, "waiting": waiting})
	})
	if err != nil {
		return nil, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, sw.lim.Timeout)
	defer cancel()
	st.QueueMS = millis(time.Since(j.received))
	start := time.Now()

	p := plan.Settings
	var result any
	var entry *gallery.Entry
	var csv bytes.Buffer
	progress := func(done int, r any) {
		j.ss.send("progress", sweepProgress{Type: "progress", Run: j.id, Done: done, Total: st.Total, Result: r})
	}
	switch p.Kind {
	case sweep.KindImage:
		spec := sweep.ImageSpec{Attack: plan.Attack, Eps: plan.Eps, Range: plan.Range, Defences: plan.Defences, Image: clean,
			Label: p.Label, Labels: st.Labels, Seed: p.Seed, Chunk: 1}
		if spec.Label, err = spec.TrueLabel(ctx); err != nil {
			return nil, err
		}
		if st.Clean, err = j.thumb(g, clean); err != nil {
			return nil, err
		}
		st.Label = spec.Label
		j.ss.send("", st)
		var advPNG []byte
		flip := -1
		res, err := sweep.RunImage(ctx, spec, func(pt sweep.Point) error {
			data, err := engine.EncodePNG(g.Image(g.Quantize(pt.Adv.Data)))
			if err != nil {
				return err
			}
			// The entry's adversarial image: the attacked model's first flip, else the last.
			if flip < 0 {
				advPNG = data
				if len(pt.Defences) > 0 && pt.Defences[0].Flipped && pt.Index > 0 {
					flip = pt.Index
				}
			}
			j.ss.send("", sweepPoint{Type: "point", Run: j.id, Point: pt, Thumb: pngDataURLBytes(data)})
			return nil
		})
		if err != nil {
			return nil, err
		}
		if err := res.WriteCSV(&csv); err != nil {
			return nil, err
		}
		result = res
		cleanPNG, err := engine.EncodePNG(g.Image(g.Quantize(clean.Data)))
		if err != nil {
			return nil, err
		}
		var linf float64
		for _, pt := range res.Points {
			linf = max(linf, pt.Linf255)
		}
		entry = j.entry(plan, res, cleanPNG, advPNG, linf, time.Since(start))
	case sweep.KindDataset:
		j.ss.send("", st)
		res, err := sweep.RunDataset(ctx, sweep.DatasetSpec{Dataset: p.Dataset, Attack: plan.Attack, Eps: plan.Eps, Range: plan.Range,
			Defences: plan.Defences, Images: x, Labels: labels, Batch: p.Batch, Seed: p.Seed},
			func(r *sweep.DatasetResult) error { progress(r.N, r.Clone()); return nil })
		if err != nil {
			return nil, err
		}
		if err := res.WriteCSV(&csv); err != nil {
			return nil, err
		}
		result, entry = res, j.entry(plan, res, nil, nil, 0, time.Since(start))
	case sweep.KindCompete:
		j.ss.send("", st)
		m, err := sweep.Compete(ctx, sweep.CompeteSpec{Dataset: p.Dataset, Attacks: plan.Attacks, Defences: plan.Defences, Images: x,
			Labels: labels, Range: plan.Range, EpsSet: plan.Eps, Batch: p.Batch, Seed: p.Seed},
			func(m *sweep.Matrix) error { progress(m.N, m.Clone()); return nil })
		if err != nil {
			return nil, err
		}
		if err := m.WriteCSV(&csv); err != nil {
			return nil, err
		}
		result, entry = m, j.entry(plan, m, nil, nil, 0, time.Since(start))
	case sweep.KindTransfer:
		j.ss.send("", st)
		t, err := sweep.Transfer(ctx, sweep.TransferSpec{Dataset: p.Dataset, Sources: plan.Attacks, Targets: plan.Defences, Images: x,
			Labels: labels, Range: plan.Range, Eps: plan.Eps[0], Batch: p.Batch, Seed: p.Seed},
			func(t *sweep.TransferMatrix) error { progress(t.N, t.Clone()); return nil })
		if err != nil {
			return nil, err
		}
		if err := t.WriteCSV(&csv); err != nil {
			return nil, err
		}
		result, entry = t, j.entry(plan, t, nil, nil, 0, time.Since(start))
	}
	done := sweepDone{Type: "done", Run: j.id, Key: j.key, Kind: p.Kind, Result: result, CSV: csv.String(), Command: p.Command(),
		Seconds: time.Since(start).Seconds()}
	why := ""
	if entry == nil {
		why = "it involves more models, or a larger result, than a gallery entry holds."
		done.NoSave = "This run cannot be saved: " + why
	}
	s.runs.close(j.key, entry, why)
	done.Saveable = entry != nil && s.gallery != nil
	return &done, nil
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
	pic, _, err := s.loadPicture(ctx, data)
	if err != nil {
		return nil, err
	}
	pre, err := pic.Preprocess(plan.Contract.Unnormalized())
	if err != nil {
		return nil, err
	}
	return g.Tensor(g.Quantize(pre.Tensor.Data)), nil
}

func (j *sweepJob) thumb(g engine.Grid, t *inference.Tensor) (string, error) {
	data, err := engine.EncodePNG(g.Image(g.Quantize(t.Data)))
	if err != nil {
		return "", err
	}
	return pngDataURLBytes(data), nil
}
