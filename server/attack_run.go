package server

import (
	"context"
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
	"gibbon/inference/defense"
	"gibbon/views"
)

// run is one attack, from its start message to its last frame. Its goroutine (the
// session's) prepares and attacks; the session's writer draws its frames.
type run struct {
	ss       *wsSession
	id       int
	plan     *runPlan
	received time.Time // when the start message (or its image) arrived

	// Set while preparing, read-only once the run is started.
	grid     grid
	cleanLv  []uint8
	clean    *inference.Tensor
	cleanPNG []byte
	source   string
	defs     []*liveDefence
	// surNets are the attacked models' nets, in plan order.
	surNets []AttackNet
	// crop says how the upload became the model's input (the preprocessing
	// steps), and srcW×srcH is the upload's size.
	crop       []string
	srcW, srcH int

	stopReason atomic.Pointer[string]
	dropped    atomic.Int64 // frames replaced by newer ones before they were drawn
	finished   atomic.Bool

	mu          sync.Mutex
	loss        []float32 // by frame sequence number
	lossSent    int
	top1        map[int][]topGuess // by sequence number, for drawn frames
	attackStart time.Time
	attackEnd   time.Time
	firstFrame  time.Time
	framesSent  int
	framesDrawn int
	encode      time.Duration
	final       *finalFrame
	attackSteps int
}

// liveDefence is one watched defence: a classifier, alone or behind a transform.
type liveDefence struct {
	plan watchPlan
	net  defense.Classifier
	// base is the classifier's own net (for its provider); input says how the
	// attack's image is fed to it when it takes another form ("" when as is).
	base      AttackNet
	input     string
	clean     []inference.Prediction
	cleanErr  string
	robust    bool
	random    bool
	transform string
}

type topGuess struct {
	model string
	pred  inference.Prediction
}

// finalFrame is what the last frame showed.
type finalFrame struct {
	lv    []uint8
	top   [][]inference.Prediction // per defence
	linf  int
	heads []pngPart
}

// snapshot is one step of the attack, copied out of the attack's callback.
type snapshot struct {
	run     *run
	seq     int
	step    int
	steps   int
	final   bool
	diverse bool
	queries int
	pred    int // the attacked models' top class, −1 if unknown
	adv     []float32
	heads   []headSnap
	chosen  string // the head shown against the defences
	// elapsed is the attack's wall time when the step was taken, after done steps.
	elapsed time.Duration
	done    int
}

type headSnap struct {
	label string
	lv    []uint8
}

func newRun(ss *wsSession, id int, plan *runPlan, received time.Time) *run {
	return &run{ss: ss, id: id, plan: plan, received: received, top1: map[int][]topGuess{}}
}

func (r *run) result() *finalFrame {
	if !r.finished.Load() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.final
}

func (r *run) stopped() bool { return r.stopReason.Load() != nil }

// execute runs the attack and ends with exactly one of: done, stopped (also a done
// message), or error — unless the client is gone.
func (r *run) execute(ctx context.Context, image []byte) {
	s := r.ss.s
	s.explorer.runs.Add(1)
	s.explorer.running.Add(1)
	defer s.explorer.running.Add(-1)
	err := r.load(ctx, image)
	var release func()
	if err == nil {
		release, err = s.explorer.queue.acquire(ctx, func(pos int) {
			running, waiting := s.explorer.queue.stats()
			r.ss.sendJSON(map[string]any{"type": "queued", "run": r.id, "position": pos, "running": running, "waiting": waiting})
		})
	}
	if err == nil {
		defer release()
		tctx, cancel := context.WithTimeout(ctx, r.ss.cfg.RunTimeout)
		defer cancel()
		err = r.setup(tctx)
		if err == nil {
			if r.plan.network != nil {
				err = r.runNetwork(tctx)
			} else {
				err = r.runAttack(tctx)
			}
		}
		if err != nil && tctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			reason := fmt.Sprintf("The run reached the explorer's time limit of %s.", r.ss.cfg.RunTimeout)
			r.stopReason.Store(&reason)
		}
	}
	switch {
	case err == nil:
		r.finished.Store(true)
		r.ss.send(outMsg{build: r.doneMsg})
	case r.ss.ctx.Err() != nil:
		// The client is gone (or the server is stopping): nobody to tell.
	case r.stopped():
		r.ss.send(outMsg{build: r.doneMsg})
	default:
		var ue userError
		var ie *inference.ImageError
		var be busyError
		msg := ""
		switch {
		case errors.As(err, &ue), errors.As(err, &ie):
			_, msg = statusFor(err)
		case errors.As(err, &be):
			msg = be.Error()
		default:
			s.log.Warn("explorer: run failed", "run", r.id, "err", err)
			msg = "The attack failed: " + err.Error()
		}
		r.ss.sendJSON(errorMsg{Type: "error", Run: r.id, Message: msg})
	}
}

// load decodes and preprocesses the image (with the server's decode slots) and
// puts it on the 8-bit grid: the clean image is what a PNG of it holds.
func (r *run) load(ctx context.Context, data []byte) error {
	s, p := r.ss.s, r.plan
	switch p.source {
	case "sample":
		sm, ok := s.samples.get(p.sample)
		if !ok {
			return userError{400, fmt.Sprintf("There is no sample called %q.", p.sample)}
		}
		data = sm.data
		r.source = "sample " + sm.Label + " (" + sm.Name + ")"
	case "drawing":
		r.source = "your drawing"
	default:
		r.source = "your upload"
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return ctx.Err()
	}
	dec, err := inference.DecodeImage(data, s.cfg.MaxPixels)
	if err != nil {
		return err
	}
	pic := inference.NewPicture(dec.Image, inference.DefaultWorkingSide)
	pre, err := pic.Preprocess(p.contract)
	if err != nil {
		return err
	}
	r.srcW, r.srcH = pic.SrcW, pic.SrcH
	if pic.W != pic.SrcW || pic.H != pic.SrcH {
		r.crop = append(r.crop, fmt.Sprintf("scaled to %d×%d px to work on (aspect kept)", pic.W, pic.H))
	}
	// The last step describes the tensor; the page shows the image.
	r.crop = append(r.crop, pre.Steps[:max(0, len(pre.Steps)-1)]...)
	r.grid = newGrid(p.contract)
	r.cleanLv = make([]uint8, len(pre.Tensor.Data))
	for i, v := range pre.Tensor.Data {
		r.cleanLv[i] = r.grid.level(v)
	}
	r.clean = r.grid.tensor(r.cleanLv)
	r.cleanPNG, err = encodePNG(r.grid.image(r.cleanLv))
	return err
}

// setup adapts the models, builds the defences, takes their clean verdicts and
// sends the started message.
func (r *run) setup(ctx context.Context) error {
	s, p := r.ss.s, r.plan
	nets := s.explorer.nets
	format := defense.Format{Layout: p.contract.Layout, Range: p.contract.PixelRange(), Color: p.contract.Color}
	for _, m := range p.surrogates {
		net, err := nets.Net(ctx, m)
		if err != nil {
			return err
		}
		r.surNets = append(r.surNets, net)
	}
	for i, w := range p.watch {
		net, err := nets.Net(ctx, w.model)
		if err != nil {
			return err
		}
		d := &liveDefence{plan: w, net: net, base: net, robust: w.model.Robust}
		if !w.model.Input.SameTensor(p.contract) {
			cv, err := newConverted(net, p.contract, w.model.Input)
			if err != nil {
				return err
			}
			d.net, d.input = cv, cv.describe()
		}
		if w.transform != nil {
			dn, err := defense.New(w.transform, d.net, format, uint64(p.seed)+uint64(i)*0x9e37)
			if err != nil {
				return err
			}
			d.net, d.random, d.transform = dn, w.kind.Random, w.transform.Name()
		}
		d.clean, err = r.verdict(ctx, d, r.clean)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.cleanErr = err.Error()
		}
		r.defs = append(r.defs, d)
	}
	return r.sendStarted()
}

// verdict is a defence's top 5 on x.
func (r *run) verdict(ctx context.Context, d *liveDefence, x *inference.Tensor) ([]inference.Prediction, error) {
	logits, err := d.net.Predict(ctx, x)
	if err != nil {
		return nil, err
	}
	if len(logits.Data) != len(d.plan.model.Labels) {
		return nil, fmt.Errorf("%d scores for %d labels", len(logits.Data), len(d.plan.model.Labels))
	}
	probs := append([]float32(nil), logits.Data...)
	inference.Softmax(probs)
	return d.plan.model.TopK(probs, topK), nil
}

// startedMsg tells the page what is being run, with the clean image and every
// defence's clean verdict.
type startedMsg struct {
	Type        string   `json:"type"`
	Run         int      `json:"run"`
	Attack      string   `json:"attack"`
	AttackLabel string   `json:"attack_label"`
	Eps         int      `json:"eps"`
	EpsLabel    string   `json:"eps_label"`
	Steps       int      `json:"steps"`
	Target      int      `json:"target"`
	TargetLabel string   `json:"target_label,omitempty"`
	Surrogates  []string `json:"surrogates"`
	Seed        int64    `json:"seed"`
	Source      string   `json:"source"`
	Input       string   `json:"input"`
	// SourceWidth×SourceHeight is the image as uploaded; Crop lists how it became
	// the clean image, the model's input (scaled, centre-cropped, ...).
	SourceWidth  int             `json:"source_width"`
	SourceHeight int             `json:"source_height"`
	Crop         []string        `json:"crop"`
	Defences     []defenceHeader `json:"defences"`
	QueueMS      float64         `json:"queue_ms"`
	Providers    []modelProvider `json:"providers"`
	Images       []frameImage    `json:"images"`
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

func (r *run) sendStarted() error {
	p := r.plan
	m := startedMsg{Type: "started", Run: r.id, Eps: p.eps, EpsLabel: inference.EpsLevels(float64(p.eps), p.contract.PixelRange()).LevelsString(),
		Steps: p.steps, Target: p.target, Seed: p.seed, Source: r.source, Input: p.contract.Describe(),
		SourceWidth: r.srcW, SourceHeight: r.srcH, Crop: r.crop,
		QueueMS: millis(time.Since(r.received)), Providers: r.providers()}
	if p.network != nil {
		m.Attack, m.AttackLabel = networkPrefix+p.network.Name, "Attack network "+p.network.Name
	} else {
		m.Attack = string(p.method)
		m.AttackLabel, _ = methodLabel(p.method)
		for _, sm := range p.surrogates {
			m.Surrogates = append(m.Surrogates, sm.Name)
		}
		if p.target >= 0 {
			m.TargetLabel = p.labels[p.target]
		}
	}
	for _, d := range r.defs {
		m.Defences = append(m.Defences, defenceHeader{Name: d.plan.name, Model: d.plan.model.Name, Transform: d.transform,
			Random: d.random, Robust: d.robust, Input: d.input, Clean: topScores(d.clean), Error: d.cleanErr})
	}
	data, err := packBinary(&m, func(im []frameImage) { m.Images = im },
		[]pngPart{{role: "clean", data: r.cleanPNG, w: p.contract.Width, h: p.contract.Height}})
	if err != nil {
		return err
	}
	r.ss.send(outMsg{typ: websocket.BinaryMessage, data: data})
	return nil
}

// runAttack runs a gradient or black-box attack, turning each step into a snapshot.
func (r *run) runAttack(ctx context.Context) error {
	p := r.plan
	req := attack.Request{Images: r.clean}
	for i, m := range p.surrogates {
		req.Surrogates = append(req.Surrogates, attack.Model{Name: m.Name, Net: r.surNets[i]})
	}
	r.mu.Lock()
	r.attackStart = time.Now()
	r.mu.Unlock()
	_, err := attack.Run(ctx, p.config(), req, func(st attack.Step) error { return r.step(ctx, st) })
	r.mu.Lock()
	r.attackEnd = time.Now()
	r.mu.Unlock()
	return err
}

// step records a step's loss and offers its snapshot to the outbox: the final one
// must arrive, the others only if the client keeps up.
func (r *run) step(ctx context.Context, st attack.Step) error {
	loss := float32(math.NaN())
	if len(st.Loss) > 0 {
		loss = st.Loss[0]
	}
	r.mu.Lock()
	r.loss = append(r.loss, loss)
	seq := len(r.loss) - 1
	r.attackSteps++
	done, elapsed := r.attackSteps, time.Since(r.attackStart)
	r.mu.Unlock()
	snap := &snapshot{run: r, seq: seq, step: st.Step, steps: st.Steps, final: st.Final, diverse: st.Diverse,
		adv: append([]float32(nil), st.Adv.Data...), pred: -1, elapsed: elapsed, done: done}
	if len(st.Pred) > 0 {
		snap.pred = st.Pred[0]
	}
	if len(st.Queries) > 0 {
		snap.queries = st.Queries[0]
	}
	if st.Final {
		r.ss.send(outMsg{snap: snap})
		return nil
	}
	if old := r.ss.out.offer(snap); old != nil {
		old.run.dropped.Add(1)
	}
	if p := r.plan.pace; p > 0 {
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

// frameMsg is one frame's JSON header.
type frameMsg struct {
	Type     string         `json:"type"`
	Run      int            `json:"run"`
	Seq      int            `json:"seq"`
	Step     int            `json:"step"`
	Steps    int            `json:"steps"`
	Final    bool           `json:"final,omitempty"`
	Diverse  bool           `json:"diverse,omitempty"`
	Queries  int            `json:"queries,omitempty"`
	LossFrom int            `json:"loss_from"`
	Loss     []*float64     `json:"loss"`
	Linf     int            `json:"linf"` // /255 steps, on the images sent
	Pred     string         `json:"pred,omitempty"`
	Gain     float64        `json:"gain"`
	Chosen   string         `json:"chosen,omitempty"` // attack networks: the head the defences see
	Defences []defenceState `json:"defences"`
	Timing   frameTiming    `json:"timing"`
	Images   []frameImage   `json:"images"`
}

// frameTiming is how long the frame took to make, and where the models ran.
type frameTiming struct {
	// ElapsedMS is the attack's wall time up to this step; StepMS its mean per step.
	ElapsedMS float64 `json:"elapsed_ms"`
	StepMS    float64 `json:"step_ms"`
	// VerdictMS is the watched defences' passes on this frame; EncodeMS its PNGs.
	VerdictMS float64         `json:"verdict_ms"`
	EncodeMS  float64         `json:"encode_ms"`
	Providers []modelProvider `json:"providers"`
}

type defenceState struct {
	Top     []views.Score `json:"top"`
	Flipped bool          `json:"flipped"`
	Error   string        `json:"error,omitempty"`
}

// renderFrame draws a snapshot: the adversarial image as the model receives it (on
// the 8-bit grid), the perturbation, every defence's top 5, and the loss values
// since the last frame drawn. It returns nil for a stale frame of a stopped run.
func (r *run) renderFrame(ctx context.Context, snap *snapshot, gain float64) ([]byte, error) {
	if r.stopped() && !snap.final {
		return nil, nil
	}
	p := r.plan
	lv := r.grid.levels(snap.adv, r.cleanLv, p.eps)
	start := time.Now()
	advPNG, err := encodePNG(r.grid.image(lv))
	if err != nil {
		return nil, err
	}
	pertPNG, err := encodePNG(r.grid.perturbation(lv, r.cleanLv, p.eps, gain))
	if err != nil {
		return nil, err
	}
	w, h := p.contract.Width, p.contract.Height
	parts := []pngPart{{role: "adv", data: advPNG, w: w, h: h}, {role: "perturbation", data: pertPNG, w: w, h: h}}
	for _, hd := range snap.heads {
		data, err := encodePNG(r.grid.image(hd.lv))
		if err != nil {
			return nil, err
		}
		parts = append(parts, pngPart{role: "head", label: hd.label, data: data, w: w, h: h, linf: linfLevels(hd.lv, r.cleanLv)})
	}
	enc := time.Since(start)

	x := r.grid.tensor(lv)
	m := frameMsg{Type: "frame", Run: r.id, Seq: snap.seq, Step: snap.step, Steps: snap.steps, Final: snap.final,
		Diverse: snap.diverse, Queries: snap.queries, Linf: linfLevels(lv, r.cleanLv), Gain: gain, Chosen: snap.chosen}
	if snap.pred >= 0 && snap.pred < len(p.labels) {
		m.Pred = p.labels[snap.pred]
	}
	tops := make([][]inference.Prediction, len(r.defs))
	var guesses []topGuess
	verdicts := time.Now()
	for i, d := range r.defs {
		top, err := r.verdict(ctx, d, x)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil
			}
			m.Defences = append(m.Defences, defenceState{Error: err.Error()})
			continue
		}
		tops[i] = top
		st := defenceState{Top: topScores(top)}
		if len(d.clean) > 0 && len(top) > 0 {
			st.Flipped = top[0].Index != d.clean[0].Index
		}
		m.Defences = append(m.Defences, st)
		if d.transform == "" && len(top) > 0 {
			guesses = append(guesses, topGuess{model: d.plan.model.Name, pred: top[0]})
		}
	}

	m.Timing = frameTiming{ElapsedMS: millis(snap.elapsed), VerdictMS: millis(time.Since(verdicts)), EncodeMS: millis(enc),
		Providers: r.providers()}
	if snap.done > 0 {
		m.Timing.StepMS = millis(snap.elapsed) / float64(snap.done)
	}
	r.mu.Lock()
	from := min(r.lossSent, snap.seq+1)
	m.LossFrom = from
	end := min(snap.seq+1, len(r.loss))
	m.Loss = jsonFloats(r.loss[from:end])
	r.lossSent = end
	r.top1[snap.seq] = guesses
	r.framesDrawn++
	r.encode += enc
	if snap.final {
		r.final = &finalFrame{lv: lv, top: tops, linf: m.Linf, heads: parts[2:]}
	}
	r.mu.Unlock()
	return packBinary(&m, func(im []frameImage) { m.Images = im }, parts)
}

// frameSent counts a frame the client was sent.
func (r *run) frameSent(*snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.framesSent == 0 {
		r.firstFrame = time.Now()
	}
	r.framesSent++
}

// perturbationMsg redraws the finished run's perturbation at another gain.
func (r *run) perturbationMsg(gain float64) (int, []byte, error) {
	f := r.result()
	if f == nil {
		return 0, nil, nil
	}
	data, err := encodePNG(r.grid.perturbation(f.lv, r.cleanLv, r.plan.eps, gain))
	if err != nil {
		return 0, nil, err
	}
	m := struct {
		Type   string       `json:"type"`
		Run    int          `json:"run"`
		Gain   float64      `json:"gain"`
		Images []frameImage `json:"images"`
	}{Type: "perturbation", Run: r.id, Gain: gain}
	out, err := packBinary(&m, func(im []frameImage) { m.Images = im },
		[]pngPart{{role: "perturbation", data: data, w: r.plan.contract.Width, h: r.plan.contract.Height}})
	return websocket.BinaryMessage, out, err
}

// doneMsg ends a run: a summary, the timings, and for a finished run the gallery
// entry the page may save.
type doneMsg struct {
	Type     string             `json:"type"`
	Run      int                `json:"run"`
	Stopped  bool               `json:"stopped"`
	Reason   string             `json:"reason,omitempty"`
	Linf     int                `json:"linf"`
	Flipped  int                `json:"flipped"`
	Watched  int                `json:"watched"`
	Steps    int                `json:"steps"`
	Seed     int64              `json:"seed"`
	Download string             `json:"download,omitempty"`
	Timings  map[string]float64 `json:"timings"`
	// Providers says where the run's passes ran.
	Providers []modelProvider `json:"providers"`
	Gallery   *galleryDraft   `json:"gallery,omitempty"`
	NoSave    string          `json:"no_save,omitempty"`
}

func (r *run) doneMsg() (int, []byte, error) {
	m := doneMsg{Type: "done", Run: r.id, Seed: r.plan.seed, Watched: len(r.defs)}
	if reason := r.stopReason.Load(); reason != nil && !r.finished.Load() {
		m.Stopped, m.Reason = true, *reason
	}
	r.mu.Lock()
	m.Steps = r.attackSteps
	m.Timings = r.timingsLocked()
	f := r.final
	r.mu.Unlock()
	m.Providers = r.providers()
	if f != nil && !m.Stopped {
		m.Linf = f.linf
		for i, d := range r.defs {
			if len(f.top[i]) > 0 && len(d.clean) > 0 && f.top[i][0].Index != d.clean[0].Index {
				m.Flipped++
			}
		}
		m.Download = r.downloadName()
		m.Gallery, m.NoSave = r.galleryDraft(f, m.Timings)
	}
	data, err := jsonBytes(m)
	return websocket.TextMessage, data, err
}

// timingsLocked are the run's measured times (r.mu held).
func (r *run) timingsLocked() map[string]float64 {
	t := map[string]float64{
		"frames_sent":    float64(r.framesSent),
		"frames_drawn":   float64(r.framesDrawn),
		"frames_skipped": float64(r.dropped.Load()),
	}
	if !r.firstFrame.IsZero() {
		t["first_frame_ms"] = millis(r.firstFrame.Sub(r.received))
	}
	if !r.attackStart.IsZero() && !r.attackEnd.IsZero() {
		wall := r.attackEnd.Sub(r.attackStart)
		t["attack_ms"] = millis(wall)
		if r.attackSteps > 0 {
			t["step_ms"] = millis(wall) / float64(r.attackSteps)
		}
		if s := wall.Seconds(); s > 0 {
			t["frames_per_second"] = float64(r.framesSent) / s
			t["steps_per_second"] = float64(r.attackSteps) / s
		}
	}
	if r.framesDrawn > 0 {
		t["encode_ms_per_frame"] = millis(r.encode) / float64(r.framesDrawn)
	}
	return t
}

func (r *run) downloadName() string {
	p := r.plan
	name := string(p.method)
	if p.network != nil {
		name = "net-" + p.network.Name
	} else {
		var ms []string
		for _, m := range p.surrogates {
			ms = append(ms, m.Name)
		}
		name += "-" + strings.Join(ms, "+")
	}
	clean := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '+' || c == '_' {
			return c
		}
		return '_'
	}, name)
	return fmt.Sprintf("gibbon-%s-eps%d-seed%d.png", clean, p.eps, p.seed)
}

// runNetwork runs an attack network: one forward pass gives one adversarial image
// per ε head. The explorer reads the output as heads × the input's shape, in the
// manifest's order of ε, on the pixel range; each head is put on the 8-bit grid
// inside its own ball, and the head nearest the chosen ε faces the defences.
func (r *run) runNetwork(ctx context.Context) error {
	m := r.plan.network
	heads := m.Attack.Eps
	x := r.clean
	x = m.Input.Normalize(x)
	r.mu.Lock()
	r.attackStart = time.Now()
	r.mu.Unlock()
	out, err := m.Session().Run(ctx, map[string]*inference.Tensor{m.InputName(): x})
	r.mu.Lock()
	r.attackEnd = time.Now()
	r.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("attack network %s: %w", m.Name, err)
	}
	y := out[m.OutputName()]
	per := len(r.clean.Data)
	if y == nil || len(y.Data) != len(heads)*per {
		var shape []int64
		if y != nil {
			shape = y.Shape
		}
		return fmt.Errorf("attack network %s returned shape %v; the explorer reads %d heads of %v images", m.Name, shape, len(heads), r.clean.Shape)
	}
	rng := m.Input.PixelRange()
	best, bestD := 0, math.Inf(1)
	snap := &snapshot{run: r, seq: 0, step: 1, steps: 1, final: true, pred: -1, done: 1}
	r.mu.Lock()
	snap.elapsed = r.attackEnd.Sub(r.attackStart)
	r.mu.Unlock()
	for k, e := range heads {
		head := inference.Eps{Value: e, Range: rng}
		levels := head.WholeLevels()
		lv := r.grid.levels(y.Data[k*per:(k+1)*per], r.cleanLv, levels)
		label := "ε " + head.String()
		snap.heads = append(snap.heads, headSnap{label: label, lv: lv})
		if d := math.Abs(float64(levels - r.plan.eps)); d < bestD {
			best, bestD = k, d
		}
	}
	chosen := snap.heads[best]
	snap.chosen = chosen.label
	snap.adv = r.grid.tensor(chosen.lv).Data
	r.mu.Lock()
	r.loss = append(r.loss, float32(math.NaN()))
	r.attackSteps = 1
	r.mu.Unlock()
	r.ss.send(outMsg{snap: snap})
	return nil
}
