package server

import (
	"fmt"
	"math"
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
)

// startMsg is the client's request to start a run (JSON over the websocket). An
// uploaded or drawn image follows it as one binary message of ImageBytes bytes.
type startMsg struct {
	Attack     string      `json:"attack"`
	Eps        float64     `json:"eps"` // in /255 steps of the input range
	Steps      int         `json:"steps"`
	Target     *int        `json:"target"` // class index; absent or null: untargeted
	Loss       string      `json:"loss"`
	Surrogates []string    `json:"surrogates"`
	Watch      []watchSpec `json:"watch"`
	Source     string      `json:"source"` // sample, upload or drawing
	Sample     string      `json:"sample"`
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

// runPlan is a checked start message.
type runPlan struct {
	method     attack.Method    // gradient or black-box attack; "" with network
	network    *inference.Model // attack network, or nil
	eps        int              // /255 steps
	steps      int
	target     int // −1: untargeted
	loss       attack.Loss
	surrogates []*inference.Model
	watch      []watchPlan
	contract   inference.InputContract // the attacked form, on the pixel range
	labels     []string
	seed       int64
	pace       time.Duration
	gain       float64
	source     string // "sample", "upload" or "drawing"
	sample     string
	imageBytes int64
}

type watchPlan struct {
	name      string // what the page shows: "cnn" or "cnn + JPEG q75"
	model     *inference.Model
	kind      *defense.Kind
	transform defense.Transform
	param     int
}

const (
	minGain, maxGain = 0.25, 16.0
	// networkPrefix marks attack networks in the attack menu.
	networkPrefix = "net:"
)

// attackChoice is one entry of the attack menu.
type attackChoice struct {
	ID, Label, Note string
	Gradient        bool
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
	}
	return string(m), ""
}

func (s *Server) attackChoices() []attackChoice {
	var out []attackChoice
	for _, m := range attack.Methods {
		label, note := methodLabel(m)
		out = append(out, attackChoice{ID: string(m), Label: label, Note: note, Gradient: !m.BlackBox()})
	}
	for _, m := range s.models.All() {
		if m.Task == inference.TaskAttackNetwork && m.Attack != nil {
			var eps []string
			for _, e := range m.Attack.Eps {
				eps = append(eps, inference.EpsOn(float32(e), m.Input.PixelRange()).String())
			}
			out = append(out, attackChoice{ID: networkPrefix + m.Name, Label: "Attack network " + m.Name,
				Note: "one forward pass; heads ε " + strings.Join(eps, ", ")})
		}
	}
	return out
}

func (s *Server) classifier(name string) (*inference.Model, bool) {
	for _, m := range s.models.Classifiers() {
		if m.Name == name {
			return m, true
		}
	}
	return nil, false
}

// plan checks a start message against the served models and the limits. Every
// problem is a userError whose message says what to change.
func (s *Server) plan(msg startMsg) (*runPlan, error) {
	cfg := s.explorer.cfg
	bad := func(format string, args ...any) error {
		return userError{400, fmt.Sprintf(format, args...)}
	}
	p := &runPlan{target: -1, loss: attack.LossCE, gain: 1}

	// The attack.
	id := strings.TrimSpace(msg.Attack)
	if name, ok := strings.CutPrefix(id, networkPrefix); ok {
		for _, m := range s.models.All() {
			if m.Name == name && m.Task == inference.TaskAttackNetwork && m.Attack != nil {
				p.network = m
			}
		}
		if p.network == nil {
			return nil, bad("There is no attack network called %q.", truncate(name, 60))
		}
	} else {
		m, err := attack.ParseMethod(id)
		if err != nil || id == "" {
			names := make([]string, len(attack.Methods))
			for i, m := range attack.Methods {
				names[i] = string(m)
			}
			return nil, bad("Unknown attack %q: choose one of %s.", truncate(id, 40), strings.Join(names, ", "))
		}
		p.method = m
	}

	// ε in /255 steps.
	if math.IsNaN(msg.Eps) || msg.Eps != math.Trunc(msg.Eps) || msg.Eps < 1 || msg.Eps > 255 {
		return nil, bad("ε must be a whole number of /255 steps from 1 to 255, not %g.", msg.Eps)
	}
	p.eps = int(msg.Eps)

	// Steps (queries for the black-box attacks).
	if p.network == nil {
		if p.method == attack.FGSM {
			msg.Steps = 1 // one step, whatever the form says
		}
		if msg.Steps < 1 || msg.Steps > cfg.MaxSteps {
			what := "Steps"
			if p.method.BlackBox() {
				what = "Queries"
			}
			return nil, bad("%s must be between 1 and %d (the explorer's cap per run), not %d.", what, cfg.MaxSteps, msg.Steps)
		}
		if p.method == attack.Square && msg.Steps < 2 {
			return nil, bad("Square Attack needs at least 2 queries (the first one reads the clean prediction).")
		}
		p.steps = msg.Steps
	}
	switch strings.ToLower(strings.TrimSpace(msg.Loss)) {
	case "", "ce":
	case "margin":
		p.loss = attack.LossMargin
	default:
		return nil, bad("Unknown loss %q: choose ce or margin.", truncate(msg.Loss, 40))
	}

	// The attacked models, or the network's input form.
	if p.network != nil {
		p.contract = p.network.Input.Unnormalized()
		if msg.Target != nil {
			return nil, bad("Attack networks are untargeted: clear the target class.")
		}
	} else {
		if len(msg.Surrogates) == 0 {
			return nil, bad("Pick at least one model to attack.")
		}
		if len(msg.Surrogates) > cfg.MaxDefences {
			return nil, bad("At most %d models can be attacked together.", cfg.MaxDefences)
		}
		seen := map[string]bool{}
		for _, name := range msg.Surrogates {
			m, ok := s.classifier(name)
			if !ok {
				return nil, bad("There is no classifier called %q to attack.", truncate(name, 60))
			}
			if seen[name] {
				return nil, bad("Model %s is listed twice among the attacked models.", name)
			}
			seen[name] = true
			if len(p.surrogates) > 0 {
				first := p.surrogates[0]
				if !m.Input.SameTensor(first.Input) {
					return nil, bad("%s takes %s and %s takes %s: attack models that take the same input together.",
						first.Name, first.Input.Describe(), m.Name, m.Input.Describe())
				}
				if len(m.Labels) != len(first.Labels) {
					return nil, bad("%s has %d classes and %s has %d: attack models with the same classes together.",
						first.Name, len(first.Labels), m.Name, len(m.Labels))
				}
			}
			p.surrogates = append(p.surrogates, m)
		}
		p.contract = p.surrogates[0].Input.Unnormalized()
		p.labels = p.surrogates[0].Labels
		if msg.Target != nil {
			t := *msg.Target
			if t < 0 || t >= len(p.labels) {
				return nil, bad("Target class %d does not exist: the attacked models have classes 0 to %d.", t, len(p.labels)-1)
			}
			p.target = t
		}
	}

	// Defences to watch.
	if len(msg.Watch) > cfg.MaxDefences {
		return nil, bad("At most %d defences can be watched in one run, not %d.", cfg.MaxDefences, len(msg.Watch))
	}
	names := map[string]bool{}
	for _, w := range msg.Watch {
		m, ok := s.classifier(w.Model)
		if !ok {
			return nil, bad("There is no classifier called %q to watch.", truncate(w.Model, 60))
		}
		// Another size, layout or range is converted (attack_convert.go).
		if why := convertible(p.contract, m.Input); why != "" {
			return nil, bad("%s cannot watch this attack: %s.", m.Name, why)
		}
		wp := watchPlan{name: m.Name, model: m}
		if w.Defence != "" {
			k, ok := defense.KindByID(w.Defence)
			if !ok {
				return nil, bad("Unknown defence %q.", truncate(w.Defence, 40))
			}
			t, err := defense.NewTransform(k.ID, w.Param)
			if err != nil {
				return nil, bad("%s.", upperFirst(err.Error()))
			}
			wp.kind, wp.transform, wp.param = &k, t, w.Param
			wp.name = m.Name + " + " + t.Name()
		}
		if names[wp.name] {
			return nil, bad("The defence %s is listed twice.", wp.name)
		}
		names[wp.name] = true
		p.watch = append(p.watch, wp)
	}
	if len(p.watch) == 0 {
		return nil, bad("Pick at least one defence to watch.")
	}

	// Display and pacing.
	if msg.Gain != 0 {
		if math.IsNaN(msg.Gain) || msg.Gain < minGain || msg.Gain > maxGain {
			return nil, bad("The perturbation gain must be between %g and %g, not %g.", minGain, maxGain, msg.Gain)
		}
		p.gain = msg.Gain
	}
	if msg.PaceMS < 0 || time.Duration(msg.PaceMS)*time.Millisecond > cfg.MaxPace {
		return nil, bad("Slow motion must be between 0 and %d ms per step, not %d.", cfg.MaxPace.Milliseconds(), msg.PaceMS)
	}
	p.pace = time.Duration(msg.PaceMS) * time.Millisecond
	if msg.Seed != nil {
		p.seed = *msg.Seed
	} else {
		p.seed = time.Now().UnixNano() & (1<<31 - 1)
	}

	// The image.
	switch msg.Source {
	case "sample":
		if _, ok := s.samples.get(msg.Sample); !ok {
			return nil, bad("There is no sample called %q.", truncate(msg.Sample, 60))
		}
		p.sample = msg.Sample
	case "upload", "drawing":
		if msg.ImageBytes < 1 {
			return nil, errNoInput
		}
		if msg.ImageBytes > s.cfg.MaxUploadBytes {
			return nil, s.errUploadTooLarge()
		}
		p.imageBytes = msg.ImageBytes
	case "":
		return nil, errNoInput
	default:
		return nil, bad("Unknown image source %q: send sample, upload or drawing.", truncate(msg.Source, 40))
	}
	p.source = msg.Source
	return p, nil
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// config is the attack package's configuration for the plan.
func (p *runPlan) config() attack.Config {
	rng := p.contract.PixelRange()
	cfg := attack.Config{Method: p.method, Eps: float32(inference.EpsLevels(float64(p.eps), rng).Value), Range: rng,
		Loss: p.loss, Layout: p.contract.TensorLayout(), Seed: p.seed}
	if p.method.BlackBox() {
		cfg.Queries = p.steps
	} else {
		cfg.Steps = p.steps
	}
	if p.target >= 0 {
		cfg.Target, cfg.TargetClass = attack.TargetClass, p.target
	}
	return cfg
}
