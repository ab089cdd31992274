package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/engine"
	"gibbon/views"
)

// run is one attack on the explorer's websocket, from its start message to its
// last frame. The engine plans, runs and records it; the run only adapts it: its
// goroutine (the session's) prepares and runs the plan, the session's writer draws
// the frames the client has time for, and the finished record waits in the run
// book for the page to save it.
type run struct {
	ss       *wsSession
	id       int
	key      string // the run book's key
	req      *runRequest
	received time.Time // when the start message (or its image) arrived

	start *engine.Start // set once the runner prepared the plan, read-only after

	stopReason atomic.Pointer[string]
	dropped    atomic.Int64 // frames replaced by newer ones before they were drawn
	finished   atomic.Bool

	mu         sync.Mutex
	loss       []float64 // by recorded frame
	seqs       []int     // by recorded frame: its step's place among the reported ones
	conf       [][]guess // by recorded frame: each defence's guess
	lossSent   int
	firstFrame time.Time
	framesSent int
	sentSeq    int // the last frame sent: its step's place among those reported
	framesDrwn int
	encode     time.Duration
	final      *engine.Frame
	last       *engine.Frame // the last recorded frame: a stopped run's result
	record     *engine.Record
}

// snapshot is a recorded frame waiting to be drawn; idx is its place among the
// run's recorded frames (its loss is loss[idx]).
type snapshot struct {
	run *run
	f   *engine.Frame
	idx int
	// stopped marks a stopped run's result (its last recorded frame), sent once
	// more unless the page has it.
	stopped bool
}

func newRun(ss *wsSession, id int, req *runRequest, received time.Time) *run {
	return &run{ss: ss, id: id, req: req, received: received}
}

func (r *run) stopped() bool { return r.stopReason.Load() != nil }

// execute runs the attack and ends with exactly one of: done (also for a stopped
// run) or error — unless the client is gone. The runner does the work (here, or
// on a queue worker); the run relays what it reports.
func (r *run) execute(ctx context.Context, image []byte) {
	s := r.ss.s
	s.explorer.runs.Add(1)
	s.explorer.running.Add(1)
	defer s.explorer.running.Add(-1)
	r.key = s.runs.open(r.ss.owner)
	job, err := r.job(ctx, image)
	if err == nil {
		var rec *engine.Record
		rec, err = s.runner.Run(ctx, job, engine.Events{
			Queued:  func(pos, _, _ int) { r.ss.sendQueued(r.id, pos) },
			Started: r.started,
			Frame:   func(f *engine.Frame) error { return r.frame(ctx, f) },
		})
		if rec != nil {
			r.mu.Lock()
			r.record = rec
			r.mu.Unlock()
			if rec.Stopped && !r.stopped() {
				reason := rec.Reason
				if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					reason = fmt.Sprintf("The run reached the explorer's time limit of %s.", job.Timeout)
				}
				r.stopReason.Store(&reason)
			}
			if rec.Stopped {
				r.sendStoppedFinal()
			}
		}
	}
	r.book()
	r.ss.ended(r)
	switch {
	case err == nil:
		r.finished.Store(true)
		r.ss.send(outMsg{build: r.doneMsg})
	case r.ss.ctx.Err() != nil:
		// The client is gone (or the server is stopping): nobody to tell.
	case r.stopped():
		r.ss.send(outMsg{build: r.doneMsg})
	default:
		var be busyError
		var msg string
		switch {
		case errors.As(err, &be):
			msg = be.Error()
		case isUserError(err):
			_, msg = statusFor(err)
		default:
			s.log.Warn("explorer: run failed", "run", r.id, "err", err)
			msg = "The attack failed: " + err.Error()
		}
		r.ss.sendJSON(errorMsg{Type: "error", Run: r.id, Message: msg})
	}
}

// isUserError reports an error whose message is for people: a bad plan or image.
func isUserError(err error) bool {
	var ue userError
	var ie *inference.ImageError
	var pe *engine.InvalidError
	var me *engine.MissingModelError
	return errors.As(err, &ue) || errors.As(err, &ie) || errors.As(err, &pe) || errors.As(err, &me)
}

// job is the run as the runner takes it: the plan, the image's bytes (a sample,
// an upload, or a gallery entry's stored original, taken exactly), the limits.
func (r *run) job(ctx context.Context, data []byte) (engine.Job, error) {
	s, req := r.ss.s, r.req
	// Decoded here within the server's image limits and memory budget; a job that
	// goes to a queue worker is decoded there under the same limits.
	img := engine.Image{Ref: req.plan.Image, Data: data, Limits: s.images.limits,
		Decode: func(data []byte) (*inference.Picture, error) {
			pic, _, err := s.loadPicture(ctx, data)
			return pic, err
		}}
	switch req.source {
	case "sample":
		sm, ok := s.samples.get(req.sample)
		if !ok {
			return engine.Job{}, userError{400, fmt.Sprintf("There is no sample called %q.", req.sample)}
		}
		img.Data = sm.data
	case "gallery":
		e, err := s.gallery.Get(ctx, req.entry)
		if err != nil {
			return engine.Job{}, err
		}
		orig, _, err := s.gallery.Images(ctx, e)
		if err != nil {
			return engine.Job{}, err
		}
		img.Data, img.Exact = orig, true
	}
	return engine.Job{Plan: req.plan, Image: img, Limits: s.engineLimits(), Timeout: r.ss.cfg.RunTimeout}, nil
}

// started keeps the prepared run's description and sends it to the page.
func (r *run) started(st *engine.Start) error {
	r.mu.Lock()
	r.start = st
	r.mu.Unlock()
	return r.sendStarted()
}

// frame offers a recorded frame to the outbox (the final one must arrive, the
// others only if the client keeps up), paced for slow motion.
func (r *run) frame(ctx context.Context, f *engine.Frame) error {
	r.mu.Lock()
	r.loss = append(r.loss, f.Loss)
	r.seqs = append(r.seqs, f.Seq)
	r.conf = append(r.conf, guessesOf(f.Verdicts))
	r.last = f
	snap := &snapshot{run: r, f: f, idx: len(r.loss) - 1}
	r.mu.Unlock()
	if f.Final {
		r.ss.send(outMsg{snap: snap})
		return nil
	}
	if old := r.ss.out.offer(snap); old != nil {
		old.run.dropped.Add(1)
	}
	if p := r.req.pace; p > 0 {
		t := time.NewTimer(p)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// sendStoppedFinal sends a stopped run's result, its last recorded frame, marked
// stopped: the page may have skipped it, and its download and Save are that image.
func (r *run) sendStoppedFinal() {
	r.mu.Lock()
	last, idx := r.last, len(r.loss)-1
	r.mu.Unlock()
	if last == nil || last.Final {
		return
	}
	r.ss.send(outMsg{snap: &snapshot{run: r, f: last, idx: idx, stopped: true}})
}

// book files the run's entry (or why it has none) under its key.
func (r *run) book() {
	r.mu.Lock()
	rec := r.record
	r.mu.Unlock()
	if rec == nil {
		r.ss.s.runs.close(r.key, nil, "it ended before its first step.")
		return
	}
	e, err := rec.Entry()
	if err != nil {
		r.ss.s.runs.close(r.key, nil, err.Error())
		return
	}
	e.GibbonVersion = rec.Version
	r.ss.s.runs.close(r.key, e, "")
}

// startedMsg tells the page what is being run, with the clean image and every
// defence's clean verdict.
type startedMsg struct {
	Type        string   `json:"type"`
	Run         int      `json:"run"`
	Key         string   `json:"key"`
	Attack      string   `json:"attack"`
	AttackLabel string   `json:"attack_label"`
	Eps         int      `json:"eps"`
	EpsLabel    string   `json:"eps_label"`
	Steps       int      `json:"steps"`
	Target      int      `json:"target"`
	TargetLabel string   `json:"target_label,omitempty"`
	Label       int      `json:"label"`
	LabelName   string   `json:"label_name"`
	Surrogates  []string `json:"surrogates"`
	Seed        int64    `json:"seed"`
	Source      string   `json:"source"`
	Input       string   `json:"input"`
	// SourceWidth×SourceHeight is the image as uploaded; Crop lists how it became
	// the clean image, the model's input (scaled, centre-cropped, ...).
	SourceWidth  int                   `json:"source_width"`
	SourceHeight int                   `json:"source_height"`
	Crop         []string              `json:"crop"`
	Defences     []defenceHeader       `json:"defences"`
	QueueMS      float64               `json:"queue_ms"`
	Providers    []engine.PassProvider `json:"providers"`
	Images       []frameImage          `json:"images"`
}

type defenceHeader struct {
	Name      string `json:"name"`
	Model     string `json:"model"`
	Transform string `json:"transform,omitempty"`
	Random    bool   `json:"random,omitempty"`
	Robust    bool   `json:"robust,omitempty"`
	// Input says how the attack's image is fed to a classifier that takes
	// another size or form ("" when it takes the image as it is).
	Input string        `json:"input,omitempty"`
	Clean []views.Score `json:"clean"`
	Error string        `json:"error,omitempty"`
}

func topScores(ps []inference.Prediction) []views.Score {
	out := make([]views.Score, len(ps))
	for i, p := range ps {
		out[i] = views.Score{Label: p.Label, Index: p.Index, Prob: float64(p.Prob)}
	}
	return out
}

// sourceLabel says where the image came from, for people.
func sourceLabel(ref engine.ImageRef) string {
	switch ref.Source {
	case "sample":
		return "sample " + ref.Name
	case "drawing":
		return "your drawing"
	case "gallery":
		return "the image of gallery entry " + ref.Name
	}
	return "your upload"
}

func (r *run) sendStarted() error {
	p := r.start
	c := p.Contract
	m := startedMsg{Type: "started", Run: r.id, Key: r.key, Eps: p.EpsLevels, EpsLabel: inference.EpsLevels(float64(p.EpsLevels), c.PixelRange()).LevelsString(),
		Steps: p.Plan.Steps, Target: p.Target, Label: p.Label, LabelName: p.Labels[p.Label], Seed: p.Plan.Seed,
		Source: sourceLabel(p.Plan.Image), Input: c.Describe(), SourceWidth: p.Clean.SourceW, SourceHeight: p.Clean.SourceH,
		Crop: p.Clean.Steps, QueueMS: millis(time.Since(r.received)), Providers: p.Providers}
	if p.Network != "" {
		m.Attack, m.AttackLabel = networkPrefix+p.Network, "Attack network "+p.Network
		m.Steps = 1
	} else {
		cfg := p.Config
		m.Attack = string(cfg.Method)
		m.AttackLabel, _ = methodLabel(cfg.Method)
		m.Steps = cfg.Steps
		if cfg.Method.BlackBox() {
			m.Steps = cfg.Queries
		}
		m.Surrogates = p.Plan.Models
		if p.Target >= 0 {
			m.TargetLabel = p.Labels[p.Target]
		}
	}
	for _, d := range p.Defences {
		m.Defences = append(m.Defences, defenceHeader{Name: d.Name, Model: d.Model, Transform: d.Transform,
			Random: d.Random, Robust: d.Robust, Input: d.Input, Clean: topScores(d.Clean), Error: d.CleanErr})
	}
	data, err := packBinary(&m, func(im []frameImage) { m.Images = im },
		[]pngPart{{role: "clean", data: p.Clean.PNG, w: c.Width, h: c.Height}})
	if err != nil {
		return err
	}
	r.ss.send(outMsg{typ: websocket.BinaryMessage, data: data})
	return nil
}

// frameMsg is one frame's JSON header.
type frameMsg struct {
	Type  string `json:"type"`
	Run   int    `json:"run"`
	Seq   int    `json:"seq"`
	Step  int    `json:"step"`
	Steps int    `json:"steps"`
	Final bool   `json:"final,omitempty"`
	// Stopped marks a stopped run's result: its last recorded frame, sent again.
	Stopped bool `json:"stopped,omitempty"`
	Diverse bool `json:"diverse,omitempty"`
	// Stage is AutoAttack's attack running ("apgd-ce", "apgd-t", "fab-t", "square").
	Stage    string     `json:"stage,omitempty"`
	Queries  int        `json:"queries,omitempty"`
	LossFrom int        `json:"loss_from"`
	Loss     []*float64 `json:"loss"`
	// LossSeq are those recorded steps' places among the steps reported (a long
	// run records every k-th step): the charts' x positions.
	LossSeq []int `json:"loss_seq"`
	// Conf are the same recorded steps' guesses, one per defence: the top class,
	// its probability and the true class's (the confidence chart).
	Conf     [][]guess      `json:"conf"`
	Heads    []headState    `json:"heads,omitempty"`
	Linf     int            `json:"linf"` // /255 steps, on the images sent
	L2       float64        `json:"l2"`   // on the models' input range
	Pred     string         `json:"pred,omitempty"`
	Gain     float64        `json:"gain"`
	Chosen   string         `json:"chosen,omitempty"` // attack networks: the head the defences see
	Defences []defenceState `json:"defences"`
	Timing   frameTiming    `json:"timing"`
	Images   []frameImage   `json:"images"`
}

// frameTiming is how long the frame took to make, and where the models ran.
type frameTiming struct {
	// ElapsedMS is the attack's own time up to this step; StepMS its mean per step.
	ElapsedMS float64               `json:"elapsed_ms"`
	StepMS    float64               `json:"step_ms"`
	EncodeMS  float64               `json:"encode_ms"`
	Providers []engine.PassProvider `json:"providers"`
}

// guess is a defence's top class on a step, and the true class's probability.
type guess struct {
	Label    string   `json:"label"`
	Prob     float64  `json:"prob"`
	TrueProb *float64 `json:"true_prob,omitempty"`
}

func guessesOf(vs []engine.Verdict) []guess {
	out := make([]guess, len(vs))
	for i, v := range vs {
		if len(v.Top) == 0 {
			continue
		}
		out[i] = guess{Label: v.Top[0].Label, Prob: float64(v.Top[0].Prob)}
		if !math.IsNaN(v.TrueProb) {
			tp := v.TrueProb
			out[i].TrueProb = &tp
		}
	}
	return out
}

// headState is an attack network head's image as each defence sees it.
type headState struct {
	Label    string         `json:"label"`
	Linf     int            `json:"linf"`
	Chosen   bool           `json:"chosen,omitempty"`
	Defences []defenceState `json:"defences"`
}

type defenceState struct {
	Top      []views.Score `json:"top"`
	Flipped  bool          `json:"flipped"`
	TrueProb *float64      `json:"true_prob,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// renderFrame draws a recorded frame: the adversarial image, the perturbation at
// the page's gain, an attack network's heads, every defence's verdict, and the loss
// values since the last frame drawn. It returns nil for a stale frame of a stopped
// run.
func (r *run) renderFrame(snap *snapshot, gain float64) ([]byte, error) {
	f := snap.f
	if r.stopped() && !f.Final && !snap.stopped {
		return nil, nil
	}
	if snap.stopped {
		r.mu.Lock()
		had := r.framesSent > 0 && f.Seq <= r.sentSeq
		r.mu.Unlock()
		if had {
			return nil, nil
		}
	}
	p := r.start
	g := p.Grid()
	c := g.Contract()
	start := time.Now()
	advPNG, err := engine.EncodePNG(g.Image(f.Adv))
	if err != nil {
		return nil, err
	}
	pertPNG, err := engine.EncodePNG(g.Perturbation(f.Adv, p.Clean.Levels, p.EpsLevels, gain))
	if err != nil {
		return nil, err
	}
	parts := []pngPart{{role: "adv", data: advPNG, w: c.Width, h: c.Height}, {role: "perturbation", data: pertPNG, w: c.Width, h: c.Height}}
	for _, hd := range f.Heads {
		data, err := engine.EncodePNG(g.Image(hd.Levels))
		if err != nil {
			return nil, err
		}
		parts = append(parts, pngPart{role: "head", label: hd.Label, data: data, w: c.Width, h: c.Height, linf: hd.Linf})
	}
	enc := time.Since(start)

	m := frameMsg{Type: "frame", Run: r.id, Seq: f.Seq, Step: f.Step, Steps: f.Steps, Final: f.Final, Stopped: snap.stopped,
		Diverse: f.Diverse, Stage: f.Stage, Queries: f.Queries, Linf: engine.LinfLevels(f.Adv, p.Clean.Levels), L2: g.L2(f.Adv, p.Clean.Levels), Gain: gain}
	if len(f.Heads) > 0 {
		m.Chosen = f.Heads[f.Chosen].Label
	}
	if f.Pred >= 0 && f.Pred < len(p.Labels) {
		m.Pred = p.Labels[f.Pred]
	}
	m.Defences = r.defenceStates(f.Verdicts, f.Errors)
	for k, hd := range f.Heads {
		hs := headState{Label: hd.Label, Linf: hd.Linf, Chosen: k == f.Chosen, Defences: m.Defences}
		if k != f.Chosen {
			hs.Defences = r.defenceStates(hd.Verdicts, nil)
		}
		m.Heads = append(m.Heads, hs)
	}
	m.Timing = frameTiming{ElapsedMS: millis(f.Elapsed), EncodeMS: millis(enc), Providers: p.Providers}
	if f.Seq >= 0 {
		m.Timing.StepMS = millis(f.Elapsed) / float64(f.Seq+1)
	}
	r.mu.Lock()
	idx := snap.idx
	from := min(r.lossSent, idx+1)
	m.LossFrom = from
	end := min(idx+1, len(r.loss))
	m.Loss = jsonFloats(r.loss[from:end])
	m.LossSeq = r.seqs[from:end]
	m.Conf = r.conf[from:end]
	r.lossSent = end
	r.framesDrwn++
	r.encode += enc
	if f.Final {
		r.final = f
	}
	r.mu.Unlock()
	return packBinary(&m, func(im []frameImage) { m.Images = im }, parts)
}

// defenceStates are verdicts as the page shows them, flips marked against each
// defence's clean verdict.
func (r *run) defenceStates(vs []engine.Verdict, errs []string) []defenceState {
	out := make([]defenceState, len(r.start.Defences))
	for i, d := range r.start.Defences {
		v := vs[i]
		if len(v.Top) == 0 {
			if errs != nil {
				out[i].Error = errs[i]
			}
			continue
		}
		st := defenceState{Top: topScores(v.Top)}
		if len(d.Clean) > 0 {
			st.Flipped = v.Top[0].Index != d.Clean[0].Index
		}
		if !math.IsNaN(v.TrueProb) {
			tp := v.TrueProb
			st.TrueProb = &tp
		}
		out[i] = st
	}
	return out
}

// frameSent counts a frame the client was sent.
func (r *run) frameSent(snap *snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sentSeq = snap.f.Seq
	if r.framesSent == 0 {
		r.firstFrame = time.Now()
	}
	r.framesSent++
}

// perturbationMsg redraws the finished run's perturbation at another gain.
func (r *run) perturbationMsg(gain float64) (int, []byte, error) {
	r.mu.Lock()
	rec := r.record
	r.mu.Unlock()
	if rec == nil || rec.Adv == nil {
		return 0, nil, nil
	}
	g := rec.Grid()
	data, err := engine.EncodePNG(g.Perturbation(rec.Adv, rec.Clean, rec.EpsLevels, gain))
	if err != nil {
		return 0, nil, err
	}
	m := struct {
		Type   string       `json:"type"`
		Run    int          `json:"run"`
		Gain   float64      `json:"gain"`
		Images []frameImage `json:"images"`
	}{Type: "perturbation", Run: r.id, Gain: gain}
	c := g.Contract()
	out, err := packBinary(&m, func(im []frameImage) { m.Images = im },
		[]pngPart{{role: "perturbation", data: data, w: c.Width, h: c.Height}})
	return websocket.BinaryMessage, out, err
}

// doneMsg ends a run: a summary, the timings, and whether the page may save it
// (by its key: the server keeps what it computed).
type doneMsg struct {
	Type    string `json:"type"`
	Run     int    `json:"run"`
	Key     string `json:"key"`
	Stopped bool   `json:"stopped"`
	Reason  string `json:"reason,omitempty"`
	Linf    int    `json:"linf"`
	// L2 is on the models' input range.
	L2      float64 `json:"l2"`
	Flipped int     `json:"flipped"`
	Watched int     `json:"watched"`
	// Steps counts the steps the attack reported (queries for black-box ones);
	// StepsAsked what the plan asked for; Taken the steps (or queries) the attack
	// took by its own count: 40 for PGD-40, whose start point is a reported step too.
	Steps      int `json:"steps"`
	StepsAsked int `json:"steps_asked"`
	Taken      int `json:"taken"`
	// Early says why a black-box attack ended before its budget ("" if it did not).
	Early string `json:"early,omitempty"`
	// Note is what to know to read the result (AutoAttack's black-box part only).
	Note     string             `json:"note,omitempty"`
	Seed     int64              `json:"seed"`
	Download string             `json:"download,omitempty"`
	Timings  map[string]float64 `json:"timings"`
	// Providers says where the run's passes ran; Deterministic whether all of them
	// ran on the CPU, which replays bit for bit.
	Providers     []engine.PassProvider `json:"providers"`
	Deterministic bool                  `json:"deterministic"`
	Saveable      bool                  `json:"saveable"`
	NoSave        string                `json:"no_save,omitempty"`
}

func (r *run) doneMsg() (int, []byte, error) {
	m := doneMsg{Type: "done", Run: r.id, Key: r.key, Seed: r.req.plan.Seed}
	r.mu.Lock()
	if p := r.start; p != nil {
		m.Watched = len(p.Defences)
	}
	r.mu.Unlock()
	if reason := r.stopReason.Load(); reason != nil && !r.finished.Load() {
		m.Stopped, m.Reason = true, *reason
	}
	r.mu.Lock()
	rec, last := r.record, r.last
	m.Timings = r.timingsLocked()
	r.mu.Unlock()
	if rec != nil && rec.Adv != nil {
		m.Linf, m.L2, m.Flipped, m.Steps = rec.Linf, rec.L2, rec.Flipped(), rec.StepsRun
		m.Providers, m.Deterministic = rec.Providers, rec.Deterministic()
		m.Download, m.Note = r.downloadName(rec), rec.Note
		m.StepsAsked, m.Taken = 1, 1
		if cfg := rec.Config; cfg.Method != "" && last != nil {
			m.StepsAsked, m.Taken = cfg.Steps, last.Step
			if cfg.Method.BlackBox() {
				m.StepsAsked, m.Taken = cfg.Queries, last.Queries
				if m.Taken < m.StepsAsked && !m.Stopped {
					m.Early = r.earlyReason(rec, last, m.Taken, m.StepsAsked)
				}
			}
		}
		m.Saveable = r.ss.s.gallery != nil
	} else {
		m.NoSave = "The run stopped before its first step: there is nothing to save."
	}
	data, err := json.Marshal(m)
	return websocket.TextMessage, data, err
}

// earlyReason says why a black-box attack used fewer queries than it had.
func (r *run) earlyReason(rec *engine.Record, last *engine.Frame, taken, asked int) string {
	label, _ := methodLabel(rec.Config.Method)
	what := "queries"
	if rec.Config.Method == attack.Noise {
		what = "draws"
	}
	why := "the attacked model's answer had changed"
	if rec.Target >= 0 {
		why = "the attacked model answered the target"
	}
	if last.Pred < 0 || (rec.Target >= 0 && last.Pred != rec.Target) || (rec.Target < 0 && last.Pred == rec.Label) {
		why = "it had nothing left to try"
	}
	return fmt.Sprintf("%s stopped after %d of %d %s: %s.", label, taken, asked, what, why)
}

// timingsLocked are the run's measured times (r.mu held).
func (r *run) timingsLocked() map[string]float64 {
	t := map[string]float64{
		"frames_sent":    float64(r.framesSent),
		"frames_drawn":   float64(r.framesDrwn),
		"frames_skipped": float64(r.dropped.Load()),
	}
	if !r.firstFrame.IsZero() {
		t["first_frame_ms"] = millis(r.firstFrame.Sub(r.received))
	}
	if rec := r.record; rec != nil {
		for k, v := range rec.Timings {
			t[k] = v
		}
		if ms := rec.Timings["attack_ms"]; ms > 0 {
			t["frames_per_second"] = float64(r.framesSent) / (ms / 1000)
			t["steps_per_second"] = float64(rec.StepsRun) / (ms / 1000)
		}
	}
	if r.framesDrwn > 0 {
		t["encode_ms_per_frame"] = millis(r.encode) / float64(r.framesDrwn)
	}
	return t
}

// downloadName names the adversarial PNG: attack, models, ε and seed.
func (r *run) downloadName(rec *engine.Record) string {
	name := rec.AttackName()
	if n := rec.Plan.Network(); n != "" {
		name = "net-" + n
	} else {
		name += "-" + strings.Join(rec.Plan.Models, "+")
	}
	clean := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '+' || c == '_' {
			return c
		}
		return '_'
	}, name)
	stopped := ""
	if rec.Stopped {
		stopped = fmt.Sprintf("-stopped%d", rec.StepsRun)
	}
	return fmt.Sprintf("gibbon-%s-eps%d-seed%d%s.png", clean, rec.EpsLevels, rec.Plan.Seed, stopped)
}
