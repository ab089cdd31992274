package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
)

// MaxRecordedSteps bounds the steps a record keeps (loss and every defence's
// guess): longer runs keep every k-th step and the last. The defences classify
// exactly the recorded steps, so a replay classifies the same images.
const MaxRecordedSteps = 200

// Frame is one recorded step of a run, as adapters show it.
type Frame struct {
	// Seq numbers the steps the attack reported (from 0); Step and Steps are the
	// attack's own count (0 is the start point), Restart which PGD restart.
	Seq, Step, Steps, Restart, Restarts int
	// Final marks the run's last frame: its image is the result.
	Final bool
	// Diverse marks a loss taken on DI-FGSM's transformed image.
	Diverse bool
	// Stage names the AutoAttack stage running ("apgd-ce", "apgd-t", "fab-t",
	// "square"); "" for other attacks.
	Stage string
	// Queries so far (black-box attacks).
	Queries int
	// Loss is the objective the attack climbs (NaN when it has none).
	Loss float64
	// Pred is the attacked models' top class (−1 when unknown).
	Pred int
	// Adv is the adversarial image on the grid, inside the ε-ball.
	Adv []uint8
	// Heads are an attack network's images, one per ε (Chosen is the one the
	// defences see).
	Heads  []Head
	Chosen int
	// Verdicts are each defence's view of Adv, in plan order.
	Verdicts []Verdict
	// Errors say why a defence has no verdict ("" when it has one).
	Errors []string
	// Elapsed is the attack's own time up to this step (callbacks excluded).
	Elapsed time.Duration
}

// Head is one of an attack network's images.
type Head struct {
	Eps    float64
	Label  string // "ε 0.3 (76.5/255)"
	Levels []uint8
	Linf   int // levels
	// Verdicts are each defence's view of this head's image; nil for the chosen
	// head, whose verdicts are the frame's own.
	Verdicts []Verdict
}

// FrameFunc receives each recorded frame; Adv and the verdicts are the caller's to
// keep. A non-nil error stops the run and is returned.
type FrameFunc func(*Frame) error

// errStopAfter ends a replayed run at its recorded stopping point.
var errStopAfter = errors.New("stopped where the recorded run stopped")

// Run executes the prepared plan, reporting recorded frames to onFrame (which may be
// nil), and returns the record. When ctx ends first, the record of what was done
// so far (Stopped, up to the last recorded frame) comes back with ctx's error — or
// nil and the error when nothing was recorded yet.
func (p *Prepared) Run(ctx context.Context, onFrame FrameFunc) (*Record, error) {
	r := &runner{p: p, onFrame: onFrame, rec: newRecord(p)}
	start := time.Now()
	var err error
	if p.network != nil {
		err = r.network(ctx)
	} else {
		err = r.attack(ctx)
	}
	r.rec.Providers = p.providers() // gradient graphs exist now
	r.rec.Timings["attack_ms"] = millis(r.elapsed)
	r.rec.Timings["wall_ms"] = millis(time.Since(start))
	if n := r.reported; n > 0 {
		r.rec.Timings["step_ms"] = millis(r.elapsed) / float64(n)
	}
	r.rec.Timings["verdict_ms"] = millis(r.verdicts)
	switch {
	case err == nil:
		return r.rec, nil
	case errors.Is(err, errStopAfter):
		r.rec.finish(r.last)
		r.rec.stop("The run stopped where the recorded run stopped.")
		return r.rec, nil
	case r.last == nil:
		return nil, err
	case ctx.Err() != nil:
		// Keep what was recorded: the record ends at its last frame, and its plan
		// replays exactly that far.
		r.rec.finish(r.last)
		r.rec.stop(stopReason(ctx))
		return r.rec, err
	}
	return nil, err
}

func stopReason(ctx context.Context) string {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return "The run reached its time limit."
	}
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c.Error()
	}
	return "You stopped the run."
}

// runner is one Run's state.
type runner struct {
	p        *Prepared
	onFrame  FrameFunc
	rec      *Record
	reported int           // steps the attack reported
	stride   int           // record every stride-th step
	elapsed  time.Duration // attack time, callbacks excluded
	verdicts time.Duration
	mark     time.Time
	last     *Frame // last recorded frame
}

// attack runs a gradient or black-box attack.
func (r *runner) attack(ctx context.Context) error {
	p := r.p
	cfg := p.cfg
	total := reports(cfg)
	r.stride = max(1, (total+MaxRecordedSteps-1)/MaxRecordedSteps)
	req := attack.Request{Images: p.Grid.Tensor(p.Clean.Levels), Labels: []int{p.Label}}
	for _, m := range p.attacked {
		req.Surrogates = append(req.Surrogates, attack.Model{Name: m.Name, Net: m.Net()})
	}
	if p.through != nil {
		req.Surrogates = []attack.Model{{Name: p.Plan.Through, Net: p.through}}
	}
	r.mark = time.Now()
	res, err := attack.Run(ctx, cfg, req, func(st attack.Step) error { return r.step(ctx, st) })
	if err != nil {
		return err
	}
	r.elapsed += time.Since(r.mark)
	if len(res.Targets) > 0 {
		r.rec.Target = res.Targets[0]
	}
	r.rec.Note = res.Note
	// The result is the attack's final image; a last frame was recorded for it.
	final := p.Grid.Levels(res.Adv.Data, p.Clean.Levels, p.EpsLevels)
	if r.last == nil || !equalLevels(r.last.Adv, final) {
		return fmt.Errorf("the attack's result differs from its last reported step")
	}
	r.rec.finish(r.last)
	return nil
}

// step turns an attack step into a frame when it is recorded.
func (r *runner) step(ctx context.Context, st attack.Step) error {
	seq := r.reported
	r.reported++
	// Final marks the attack's last step (after PGD's restarts, the best of them).
	stopHere := r.p.Plan.StopAfter > 0 && r.reported >= r.p.Plan.StopAfter
	if !st.Final && !stopHere && seq%r.stride != 0 {
		return nil
	}
	f := &Frame{Seq: seq, Step: st.Step, Steps: st.Steps, Restart: st.Restart, Restarts: st.Restarts, Final: st.Final,
		Diverse: st.Diverse, Stage: st.Stage, Loss: math.NaN(), Pred: -1, Adv: r.p.Grid.Levels(st.Adv.Data, r.p.Clean.Levels, r.p.EpsLevels)}
	if len(st.Loss) > 0 {
		f.Loss = float64(st.Loss[0])
	}
	if len(st.Pred) > 0 {
		f.Pred = st.Pred[0]
	}
	if len(st.Queries) > 0 {
		f.Queries = st.Queries[0]
	}
	if err := r.emit(ctx, f); err != nil {
		return err
	}
	if stopHere && !st.Final {
		return errStopAfter
	}
	return nil
}

// network runs an attack network: one forward pass gives one image per ε head;
// the plan's head faces the defences.
func (r *runner) network(ctx context.Context) error {
	p := r.p
	net := p.network.Network()
	r.mark = time.Now()
	heads, err := net.Generate(ctx, p.Grid.Tensor(p.Clean.Levels))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("attack network %s: %w", p.network.Name, err)
	}
	r.reported = 1
	f := &Frame{Step: 1, Steps: 1, Restarts: 1, Final: true, Loss: math.NaN(), Pred: -1, Chosen: p.head}
	rng := p.Grid.Contract().PixelRange()
	for k, e := range p.network.Attack.Eps {
		if k >= len(heads) || len(heads[k].Data) != len(p.Clean.Levels) {
			return fmt.Errorf("attack network %s returned %d heads for %d budgets", p.network.Name, len(heads), len(p.network.Attack.Eps))
		}
		lv := p.Grid.Levels(heads[k].Data, p.Clean.Levels, p.Grid.EpsLevels(e))
		f.Heads = append(f.Heads, Head{Eps: e, Label: "ε " + inference.EpsOn(float32(e), rng).String(), Levels: lv, Linf: LinfLevels(lv, p.Clean.Levels)})
	}
	f.Adv = f.Heads[p.head].Levels
	// Every head faces the defences, so the page can compare the budgets.
	for k := range f.Heads {
		if k == p.head {
			continue // the frame's own verdicts
		}
		x := p.Grid.Tensor(f.Heads[k].Levels)
		for _, w := range p.Defences {
			v, err := w.verdict(ctx, x, p.Label)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				v = Verdict{TrueProb: math.NaN()}
			}
			f.Heads[k].Verdicts = append(f.Heads[k].Verdicts, v)
		}
	}
	if err := r.emit(ctx, f); err != nil {
		return err
	}
	r.rec.finish(f)
	return nil
}

// emit takes the defences' verdicts on a frame, records it and hands it on.
func (r *runner) emit(ctx context.Context, f *Frame) error {
	r.elapsed += time.Since(r.mark)
	f.Elapsed = r.elapsed
	defer func() { r.mark = time.Now() }()
	t := time.Now()
	x := r.p.Grid.Tensor(f.Adv)
	f.Verdicts = make([]Verdict, len(r.p.Defences))
	f.Errors = make([]string, len(r.p.Defences))
	for i, w := range r.p.Defences {
		v, err := w.verdict(ctx, x, r.p.Label)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f.Errors[i] = err.Error()
			continue
		}
		f.Verdicts[i] = v
	}
	r.verdicts += time.Since(t)
	r.rec.add(f)
	r.last = f
	if r.onFrame != nil {
		return r.onFrame(f)
	}
	return nil
}

// reports is about how many steps an attack with cfg (its defaults filled in)
// reports at most: what the record's stride is set from.
func reports(cfg attack.Config) int {
	targets := cfg.TargetClasses
	if targets == 0 {
		targets = 9
	}
	restarts := max(cfg.Restarts, 1)
	switch cfg.Method {
	case attack.Square, attack.Noise:
		return cfg.Queries
	case attack.APGDT, attack.FABT:
		return (cfg.Steps + 1) * targets * restarts
	case attack.AutoAttack:
		// APGD-CE, then APGD-T and FAB-T over the target classes, then Square.
		return (cfg.Steps+1)*(1+2*targets) + cfg.Queries
	}
	return (cfg.Steps + 1) * restarts
}

func equalLevels(a, b []uint8) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Tensor is a frame's image as one tensor on the attack's pixel range.
func (p *Prepared) Tensor(lv []uint8) *inference.Tensor { return p.Grid.Tensor(lv) }
