package server

import (
	"fmt"
	"math"
	"strings"
	"time"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/engine"
)

// startMsg is the client's request to start a run (JSON over the websocket). An
// uploaded or drawn image follows it as one binary message of ImageBytes bytes.
type startMsg struct {
	Attack string  `json:"attack"`
	Eps    float64 `json:"eps"` // in /255 steps of the input range
	Steps  int     `json:"steps"`
	// Target is a class index; absent or null: untargeted. TargetMode
	// "least-likely" aims at the attacked models' least likely clean class.
	Target     *int    `json:"target"`
	TargetMode string  `json:"target_mode"`
	Loss       string  `json:"loss"`
	Alpha      float64 `json:"alpha"` // step size in /255 steps; 0: the attack's default
	Restarts   int     `json:"restarts"`
	Momentum   float64 `json:"momentum"`
	// Through is the index, in Watch, of a transform defence to attack through
	// (its classifier becomes the attacked model); EOTSamples its EOT draws.
	Through    *int        `json:"through"`
	EOTSamples int         `json:"eot_samples"`
	Surrogates []string    `json:"surrogates"`
	Watch      []watchSpec `json:"watch"`
	Source     string      `json:"source"` // sample, upload, drawing or gallery
	Sample     string      `json:"sample"`
	Entry      string      `json:"entry"` // source gallery: the entry whose image is re-run
	Filename   string      `json:"filename"`
	ImageBytes int64       `json:"image_bytes"`
	Gain       float64     `json:"gain"`
	PaceMS     int         `json:"pace_ms"`
	Seed       *int64      `json:"seed"`
}

// watchSpec is one defence to watch: a classifier, alone or behind a transform.
type watchSpec struct {
	Model   string `json:"model"`
	Defence string `json:"defence"` // "" or a defense.Kinds id
	Param   int    `json:"param"`
}

// runRequest is a start message read: the engine's plan, where its image comes
// from, and how the page wants it shown.
type runRequest struct {
	plan engine.Plan
	// source is sample, upload, drawing or gallery; sample the sample's name,
	// entry the gallery entry's slug, imageBytes an upload's announced size.
	source, sample, entry string
	imageBytes            int64
	pace                  time.Duration
	gain                  float64
}

const (
	minGain, maxGain = engine.MinGain, engine.MaxGain
	// networkPrefix marks attack networks in the attack menu.
	networkPrefix = engine.NetworkPrefix
)

// attackChoice is one entry of the attack menu.
type attackChoice struct {
	ID, Label, Note string
	Gradient        bool
	// Heads are an attack network's budgets in /255 steps (the ε it offers).
	Heads []int
}

func methodLabel(m attack.Method) (label, note string) {
	switch m {
	case attack.FGSM:
		return "FGSM", "one signed-gradient step of size ε"
	case attack.BIM:
		return "BIM (I-FGSM)", "signed-gradient steps of ε/steps from the image"
	case attack.PGD:
		return "PGD", "random start, steps of 2.5ε/steps, projected"
	case attack.MIFGSM:
		return "MI-FGSM", "momentum on normalised gradients (NIPS'17 winner)"
	case attack.DIFGSM:
		return "DI-FGSM", "random resize-and-pad of the input at each step"
	case attack.MDI2FGSM:
		return "M-DI²-FGSM", "momentum and input diversity"
	case attack.Square:
		return "Square Attack", "black-box: random squares, predictions only; steps are queries"
	case attack.Noise:
		return "Random noise", "baseline: ±ε noise; steps are draws"
	case attack.APGDCE:
		return "APGD-CE", "step size set by itself from progress, cross-entropy (Croce and Hein)"
	case attack.APGDDLR:
		return "APGD-DLR", "APGD on the scale-free DLR loss"
	case attack.APGDT:
		return "APGD-T", "targeted DLR at each of the 9 likeliest wrong classes in turn"
	case attack.FABT:
		return "FAB-T", "minimal-perturbation boundary search, targeted in turn"
	case attack.AutoAttack:
		return "AutoAttack", "APGD-CE, APGD-T, FAB-T, then Square (5000 queries): the standard robustness test"
	}
	return string(m), ""
}

func (s *Server) attackChoices() []attackChoice {
	var out []attackChoice
	for _, m := range attack.Methods {
		label, note := methodLabel(m)
		out = append(out, attackChoice{ID: string(m), Label: label, Note: note, Gradient: !m.BlackBox()})
	}
	for _, m := range s.models.AttackNetworks() {
		rng := m.Input.PixelRange()
		g := engine.NewGrid(m.Input)
		var eps []string
		var heads []int
		for _, e := range m.Attack.Eps {
			eps = append(eps, inference.EpsOn(float32(e), rng).String())
			heads = append(heads, g.EpsLevels(e))
		}
		out = append(out, attackChoice{ID: networkPrefix + m.Name, Label: "Attack network " + m.Name,
			Note: "one forward pass; heads ε " + strings.Join(eps, ", "), Heads: heads})
	}
	return out
}

// request reads a start message: the page's units (ε and step size in /255
// steps) become the engine's, and what only the page uses (slow motion, gain,
// the image's source) is checked here. The plan itself is checked by the engine.
func (s *Server) request(msg startMsg) (*runRequest, error) {
	cfg := s.explorer.cfg
	bad := func(format string, args ...any) error {
		return userError{400, fmt.Sprintf(format, args...)}
	}
	req := &runRequest{gain: 1}
	if math.IsNaN(msg.Eps) || msg.Eps != math.Trunc(msg.Eps) || msg.Eps < 1 || msg.Eps > 255 {
		return nil, bad("ε must be a whole number of /255 steps from 1 to 255, not %g.", msg.Eps)
	}
	if math.IsNaN(msg.Alpha) || msg.Alpha < 0 || msg.Alpha > 255 {
		return nil, bad("The step size must be between 0 (the attack's default) and 255 /255 steps, not %g.", msg.Alpha)
	}
	p := engine.Plan{Attack: strings.TrimSpace(msg.Attack), Steps: msg.Steps, Restarts: msg.Restarts, Momentum: msg.Momentum,
		Loss: strings.ToLower(strings.TrimSpace(msg.Loss)), Models: msg.Surrogates}
	if p.Loss == "ce" {
		p.Loss = "" // the default
	}
	// The attacked form's range: the models' (or the network's); the engine checks
	// that they agree.
	rng := [2]float32{0, 1}
	if name, ok := strings.CutPrefix(p.Attack, networkPrefix); ok {
		m, ok := s.models.Model(name)
		if !ok || m.Task != inference.TaskAttackNetwork {
			return nil, bad("There is no attack network called %q.", truncate(name, 60))
		}
		rng = m.Input.PixelRange()
		p.Steps = 0 // the page's step field does not apply
	} else if len(msg.Surrogates) > 0 {
		if m, ok := s.models.Classifier(msg.Surrogates[0]); ok {
			rng = m.Input.PixelRange()
		}
	}
	p.Eps = inference.EpsLevels(msg.Eps, rng).Value
	p.Alpha = inference.EpsLevels(msg.Alpha, rng).Value
	if m, err := attack.ParseMethod(p.Attack); err == nil {
		if m == attack.FGSM {
			p.Steps = 1 // one step, whatever the form says
		}
		what := "Steps"
		if m.BlackBox() {
			what = "Queries"
		}
		// The page always says how many: 0 is not "the default" here.
		if p.Steps < 1 || p.Steps > cfg.MaxSteps {
			return nil, bad("%s must be between 1 and %d (the explorer's cap per run), not %d.", what, cfg.MaxSteps, p.Steps)
		}
	}
	switch mode := strings.TrimSpace(msg.TargetMode); {
	case mode == string(attack.LeastLikely):
		if msg.Target != nil {
			return nil, bad("Choose a target class or least-likely, not both.")
		}
		p.Target = mode
	case mode != "" && mode != string(attack.TargetClass):
		return nil, bad("Unknown target mode %q: choose class or least-likely.", truncate(mode, 40))
	case msg.Target != nil:
		p.Target, p.TargetClass = string(attack.TargetClass), *msg.Target
	}
	for _, w := range msg.Watch {
		p.Defences = append(p.Defences, engine.Defence{Model: w.Model, Transform: w.Defence, Param: w.Param})
	}
	if msg.Through != nil {
		i := *msg.Through
		if i < 0 || i >= len(p.Defences) || p.Defences[i].Transform == "" {
			return nil, bad("Attack through: pick one of the watched defences with a transformation.")
		}
		name, err := p.Defences[i].Name()
		if err != nil {
			return nil, err
		}
		// The defence's classifier is the model attacked, through its transform.
		p.Through, p.Models = name, []string{p.Defences[i].Model}
	}
	p.EOTSamples = msg.EOTSamples
	if msg.Gain != 0 {
		if math.IsNaN(msg.Gain) || msg.Gain < minGain || msg.Gain > maxGain {
			return nil, bad("The perturbation gain must be between %g and %g, not %g.", minGain, maxGain, msg.Gain)
		}
		req.gain = msg.Gain
	}
	if msg.PaceMS < 0 || time.Duration(msg.PaceMS)*time.Millisecond > cfg.MaxPace {
		return nil, bad("Slow motion must be between 0 and %d ms per step, not %d.", cfg.MaxPace.Milliseconds(), msg.PaceMS)
	}
	req.pace = time.Duration(msg.PaceMS) * time.Millisecond
	if msg.Seed != nil {
		p.Seed = *msg.Seed
	} else {
		p.Seed = time.Now().UnixNano() & (1<<31 - 1)
	}

	// The image.
	switch msg.Source {
	case "sample":
		if _, ok := s.samples.get(msg.Sample); !ok {
			return nil, bad("There is no sample called %q.", truncate(msg.Sample, 60))
		}
		req.sample = msg.Sample
		p.Image = engine.ImageRef{Source: "sample", Name: msg.Sample}
	case "gallery":
		if s.gallery == nil || !gallery.ValidSlug(msg.Entry) {
			return nil, bad("There is no gallery entry %q to re-run.", truncate(msg.Entry, 40))
		}
		req.entry = msg.Entry
		p.Image = engine.ImageRef{Source: "gallery", Name: msg.Entry}
	case "upload", "drawing":
		if msg.ImageBytes < 1 {
			return nil, errNoInput
		}
		if msg.ImageBytes > s.cfg.MaxUploadBytes {
			return nil, s.errUploadTooLarge()
		}
		req.imageBytes = msg.ImageBytes
		p.Image = engine.ImageRef{Source: msg.Source, Name: cleanFilename(msg.Filename)}
	case "":
		return nil, errNoInput
	default:
		return nil, bad("Unknown image source %q: send sample, upload, drawing or gallery.", truncate(msg.Source, 40))
	}
	req.source = msg.Source
	req.plan = p
	return req, nil
}

// cleanFilename keeps an uploaded file's name for the record: no path, no
// control characters, at most 100 characters.
func cleanFilename(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return -1
		}
		return r
	}, strings.TrimSpace(name))
	if r := []rune(name); len(r) > 100 {
		name = string(r[:100])
	}
	return name
}

// engineLimits are the explorer's bounds on a plan.
func (s *Server) engineLimits() engine.Limits {
	cfg := s.explorer.cfg
	return engine.Limits{MaxSteps: cfg.MaxSteps, MaxModels: cfg.MaxDefences, MaxDefences: cfg.MaxDefences, MaxRestarts: 10}
}
