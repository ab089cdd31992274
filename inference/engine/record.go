package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/attack"
)

// Record is what a run computed, and all of it: a gallery entry is made from it
// and nothing else.
type Record struct {
	Plan Plan
	// Input describes the attacked form ("28×28 gray images on [0,1]"); Crop how
	// the file became it; SourceW×SourceH the file's size.
	Input            string
	Crop             []string
	SourceW, SourceH int
	// Label is the true class, Target the targeted class (−1: untargeted).
	Label, Target int
	Labels        []string
	EpsLevels     int
	// Config is the attack's configuration with its defaults (methods only).
	Config attack.Config
	Clean  []uint8
	Adv    []uint8
	Heads  []Head // attack networks
	// Defences are every watched defence's verdicts, in plan order.
	Defences []DefenceResult
	Steps    []RecordedStep
	// StepsRun counts the steps the attack reported (queries for black-box ones).
	StepsRun int
	Linf     int     // levels
	L2       float64 // on the input range
	Stopped  bool
	Reason   string
	// Note is what a reader must know about the attack's result (AutoAttack on a
	// model Gibbon cannot differentiate ran its black-box part only).
	Note    string
	Timings map[string]float64
	Models  []gallery.ModelRef
	// Providers say where each model's passes ran; Runtime and Version what ran them.
	Providers []PassProvider
	Runtime   string
	Version   string
	// Contract is the attacked form (its pixel range and layout): the images' grid.
	Contract inference.InputContract
}

// DefenceResult is one defence's verdicts on the clean and the final image.
type DefenceResult struct {
	Name, Model, Transform string
	Param                  int
	Random, Robust         bool
	Input                  string
	Clean, Adv             []inference.Prediction
	CleanErr, AdvErr       string
}

// Flipped reports whether the defence's top class changed.
func (d DefenceResult) Flipped() bool {
	return len(d.Clean) > 0 && len(d.Adv) > 0 && d.Clean[0].Index != d.Adv[0].Index
}

// RecordedStep is one recorded step: the loss and each defence's guess.
type RecordedStep struct {
	Seq     int
	Loss    float64
	Guesses []Guess
}

// Guess is a defence's top class on a step's image, and the true class's probability.
type Guess struct {
	Defence  string
	Model    string
	Index    int
	Label    string
	Prob     float64
	TrueProb float64
}

// PassProvider is one model pass and the execution provider it ran on.
type PassProvider struct {
	Model string `json:"model"`
	// Pass is "gradient" (the attack's steps), "forward" (predictions) or
	// "network" (an attack network's pass).
	Pass string `json:"pass"`
	EP   string `json:"ep"`
}

func newRecord(p *Prepared) *Record {
	r := &Record{Plan: p.Plan, Input: p.Grid.Contract().Describe(), Crop: p.Clean.Steps, SourceW: p.Clean.SourceW,
		SourceH: p.Clean.SourceH, Label: p.Label, Target: p.Target, Labels: p.Labels, EpsLevels: p.EpsLevels,
		Config: p.cfg, Clean: p.Clean.Levels, Timings: map[string]float64{}, Models: p.Models(),
		Runtime: "ONNX Runtime " + inference.ORTVersion, Version: inference.Version(), Contract: p.Grid.Contract()}
	for _, w := range p.Defences {
		r.Defences = append(r.Defences, DefenceResult{Name: w.Name, Model: w.Model, Transform: w.Transform, Param: w.Param,
			Random: w.Random, Robust: w.Robust, Input: w.Input, Clean: w.Clean, CleanErr: w.CleanErr})
	}
	r.Providers = p.providers()
	return r
}

// add records a frame's step.
func (r *Record) add(f *Frame) {
	r.StepsRun = f.Seq + 1
	st := RecordedStep{Seq: f.Seq, Loss: f.Loss}
	for i, v := range f.Verdicts {
		if len(v.Top) == 0 {
			continue
		}
		d := r.Defences[i]
		st.Guesses = append(st.Guesses, Guess{Defence: d.Name, Model: d.Model, Index: v.Top[0].Index, Label: v.Top[0].Label,
			Prob: float64(v.Top[0].Prob), TrueProb: v.TrueProb})
	}
	r.Steps = append(r.Steps, st)
}

// finish makes f the result.
func (r *Record) finish(f *Frame) {
	r.Adv = f.Adv
	r.Heads = f.Heads
	r.Linf = LinfLevels(r.Adv, r.Clean)
	r.L2 = r.Grid().L2(r.Adv, r.Clean)
	for i := range r.Defences {
		r.Defences[i].Adv = f.Verdicts[i].Top
		r.Defences[i].AdvErr = f.Errors[i]
	}
}

// stop ends the record at its last recorded step, with the plan that replays it
// that far.
func (r *Record) stop(reason string) {
	r.Stopped, r.Reason = true, reason
	if len(r.Steps) > 0 {
		r.Plan.StopAfter = r.Steps[len(r.Steps)-1].Seq + 1
		r.StepsRun = r.Plan.StopAfter
	}
}

// Grid is the record's image grid.
func (r *Record) Grid() Grid { return NewGrid(r.Contract) }

// Flipped counts the defences whose top class changed.
func (r *Record) Flipped() int {
	n := 0
	for _, d := range r.Defences {
		if d.Flipped() {
			n++
		}
	}
	return n
}

// Params is a run entry's params: the plan that replays it, and what the run
// resolved and measured, for people.
type Params struct {
	Plan Plan `json:"plan"`
	// Method is the attack with its defaults filled in (steps, step size, ...).
	Method    *attack.Config `json:"method,omitempty"`
	Eps       string         `json:"eps"`
	Input     string         `json:"input"`
	Crop      []string       `json:"crop,omitempty"`
	SourceW   int            `json:"source_width,omitempty"`
	SourceH   int            `json:"source_height,omitempty"`
	Label     int            `json:"label"`
	LabelName string         `json:"label_name"`
	Target    int            `json:"target"`
	Head      string         `json:"head,omitempty"`
	StepsRun  int            `json:"steps_run"`
	Stopped   bool           `json:"stopped,omitempty"`
	Reason    string         `json:"reason,omitempty"`
	// Defences say how each defence saw the image (transform, conversion).
	Defences  []DefenceInfo  `json:"defences"`
	Providers []PassProvider `json:"providers"`
}

// DefenceInfo is what a record keeps of a defence besides its verdicts.
type DefenceInfo struct {
	Name      string `json:"name"`
	Random    bool   `json:"random,omitempty"`
	Robust    bool   `json:"robust,omitempty"`
	Input     string `json:"input,omitempty"`
	CleanErr  string `json:"clean_error,omitempty"`
	AdvErr    string `json:"adv_error,omitempty"`
	Transform string `json:"transform,omitempty"`
}

// AttackName is what the gallery files the run under: the method, or
// "attack-network".
func (r *Record) AttackName() string {
	if r.Plan.Network() != "" {
		return string(attack.AttackNetwork)
	}
	return string(r.Config.Method)
}

// Entry is the record as a gallery entry: the images at the models' input size,
// every defence's verdicts, the recorded steps, the plan and provenance.
func (r *Record) Entry() (*gallery.Entry, error) {
	if r.Adv == nil {
		return nil, fmt.Errorf("the run has no result to save")
	}
	g := r.Grid()
	rng := g.Contract().PixelRange()
	width := float64(rng[1] - rng[0])
	params := Params{Plan: r.Plan, Eps: inference.EpsOn(float32(r.Plan.Eps), rng).String(), Input: r.Input, Crop: r.Crop,
		SourceW: r.SourceW, SourceH: r.SourceH, Label: r.Label, LabelName: labelName(r.Labels, r.Label), Target: r.Target,
		StepsRun: r.StepsRun, Stopped: r.Stopped, Reason: r.Reason, Providers: r.Providers}
	if r.Plan.Network() == "" {
		cfg := r.Config
		params.Method = &cfg
	} else {
		for _, h := range r.Heads {
			if g.EpsLevels(h.Eps) == r.EpsLevels {
				params.Head = h.Label
			}
		}
	}
	e := &gallery.Entry{Kind: gallery.KindRun, GibbonVersion: r.Version, Models: r.Models, Attack: r.AttackName(),
		Seed: r.Plan.Seed, Eps: r.Plan.Eps / width * 255, EpsUnit: gallery.Unit255, LInf: float64(r.Linf), L2: r.L2,
		Runtime: r.Runtime, Provider: r.providerSummary(), Timings: map[string]float64{}}
	for k, v := range r.Timings {
		e.Timings[k] = v
	}
	for _, d := range r.Defences {
		params.Defences = append(params.Defences, DefenceInfo{Name: d.Name, Random: d.Random, Robust: d.Robust, Input: d.Input,
			CleanErr: d.CleanErr, AdvErr: d.AdvErr, Transform: d.Transform})
		e.Predictions = append(e.Predictions, gallery.DefencePrediction{Name: d.Name, Model: d.Model, Transform: d.Transform,
			Param: d.Param, Original: galleryPreds(d.Clean), Adversarial: galleryPreds(d.Adv)})
	}
	for _, st := range r.Steps {
		if math.IsNaN(st.Loss) || math.IsInf(st.Loss, 0) {
			continue // an attack network's one pass has no loss
		}
		gs := gallery.Step{Step: st.Seq, Loss: st.Loss, Top1: []gallery.Top1{}}
		for _, g := range st.Guesses {
			t := gallery.Top1{Defence: g.Defence, Model: g.Model, Label: g.Label, Prob: g.Prob}
			if !math.IsNaN(g.TrueProb) {
				tp := g.TrueProb
				t.TrueProb = &tp
			}
			gs.Top1 = append(gs.Top1, t)
		}
		e.Steps = append(e.Steps, gs)
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	e.Params = raw
	if e.Original, err = EncodePNG(g.Image(r.Clean)); err != nil {
		return nil, err
	}
	if e.Adversarial, err = EncodePNG(g.Image(r.Adv)); err != nil {
		return nil, err
	}
	return e, nil
}

func labelName(labels []string, k int) string {
	if k >= 0 && k < len(labels) {
		return labels[k]
	}
	return fmt.Sprint(k)
}

func galleryPreds(ps []inference.Prediction) []gallery.Prediction {
	out := make([]gallery.Prediction, len(ps))
	for i, p := range ps {
		out[i] = gallery.Prediction{Index: p.Index, Label: p.Label, Prob: float64(p.Prob)}
	}
	return out
}

// providerSummary is the providers the run's passes used: "cpu", or "webgpu+cpu".
func (r *Record) providerSummary() string {
	var eps []string
	for _, p := range r.Providers {
		if p.EP != "" && !slices.Contains(eps, p.EP) {
			eps = append(eps, p.EP)
		}
	}
	return strings.Join(eps, "+")
}

// providers lists where the run's passes run: the attacked models' gradient graphs
// (forward sessions for black-box attacks), or the attack network, then each
// defence's classifier. A model appears once per pass.
func (p *Prepared) providers() []PassProvider {
	var out []PassProvider
	add := func(pp PassProvider) {
		if pp.EP != "" && !slices.Contains(out, pp) {
			out = append(out, pp)
		}
	}
	if p.network != nil {
		add(PassProvider{Model: p.network.Name, Pass: "network", EP: p.network.Provider()})
	}
	for _, m := range p.attacked {
		fwd, grad := m.Net().Providers()
		if p.method.BlackBox() {
			add(PassProvider{Model: m.Name, Pass: "forward", EP: fwd})
		} else {
			if grad == "" {
				// The gradient graph is built on the first gradient: it runs where the
				// runtime's provider puts it, as the forward session does.
				grad = fwd
			}
			add(PassProvider{Model: m.Name, Pass: "gradient", EP: grad})
		}
	}
	for _, w := range p.Defences {
		add(PassProvider{Model: w.Model, Pass: "forward", EP: w.model.Provider()})
	}
	return out
}

// Providers are where the run's passes run (known before it runs, but for
// gradient graphs not built yet).
func (p *Prepared) Providers() []PassProvider { return p.providers() }

// Deterministic reports whether every pass runs on the CPU provider, the one that
// promises the same result for the same inputs.
func (r *Record) Deterministic() bool {
	for _, p := range r.Providers {
		if p.EP != inference.EPCPU {
			return false
		}
	}
	return true
}
