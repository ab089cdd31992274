// Package engine plans, executes and records Gibbon's runs: one attack on one
// image, watched by defences. Every adapter — the explorer's websocket, `gibbon
// attack`, `gibbon rerun`, a queue worker — goes through it:
//
//	Plan (as asked) ──Prepare──► Prepared (checked, models resolved, image on the grid)
//	                  ──Run────► frames through a callback ──► Record (the gallery entry)
//
// A Plan is what a permalink stores and what Re-run and Verify replay: the same
// plan, image, model checksums and seed on the CPU provider give the same
// adversarial image, bit for bit. A Record holds only what the engine computed.
package engine

import (
	"fmt"
	"math"
	"strings"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
)

// NetworkPrefix marks an attack network among attack names ("net:mnist-attack-net").
const NetworkPrefix = "net:"

// Plan is one run as asked for. Zero values take the attack's defaults. It is
// recorded with every run, in this JSON form.
type Plan struct {
	// Attack is a method ("pgd", see attack.Methods) or NetworkPrefix+name.
	Attack string `json:"attack"`
	// Eps is the L∞ budget on the models' input range (0.3 on [0,1] is 76.5/255).
	Eps float64 `json:"eps"`
	// Steps of a gradient attack, queries of Square Attack, draws of noise.
	Steps int `json:"steps,omitempty"`
	// Alpha is the step size on the input range.
	Alpha float64 `json:"alpha,omitempty"`
	// Restarts of PGD from random starts (the best per image is kept).
	Restarts int `json:"restarts,omitempty"`
	// Momentum μ of MI-FGSM and M-DI²-FGSM.
	Momentum float64 `json:"momentum,omitempty"`
	// NoRandomStart starts PGD at the clean image.
	NoRandomStart bool `json:"no_random_start,omitempty"`
	// DiversityProb and DiversityMin shape DI-FGSM's random resize-and-pad.
	DiversityProb float64 `json:"diversity_prob,omitempty"`
	DiversityMin  float64 `json:"diversity_min,omitempty"`
	// SquareP is Square Attack's initial fraction of pixels per square.
	SquareP float64 `json:"square_p,omitempty"`
	// Loss is "ce" (default), "margin" (C&W) or "dlr" (APGD's).
	Loss string `json:"loss,omitempty"`
	// TargetClasses is how many of the likeliest wrong classes APGD-T, FAB-T and
	// AutoAttack aim at in turn (default 9).
	TargetClasses int `json:"target_classes,omitempty"`
	// Target is "" (untargeted), "class" (TargetClass) or "least-likely".
	Target      string `json:"target,omitempty"`
	TargetClass int    `json:"target_class,omitempty"`
	Seed        int64  `json:"seed"`
	// Models are the classifiers attacked together (none for an attack network).
	Models []string `json:"models,omitempty"`
	// Defences watch the run: classifiers alone or behind an input transformation.
	Defences []Defence `json:"defences"`
	// Label is the image's true class; nil takes the attacked models' (or, for an
	// attack network, the first defence's) clean prediction.
	Label *int `json:"label,omitempty"`
	// Through attacks through a watched transform defence, named as Defence.Name
	// gives it ("mnist-mlp + JPEG q75"): its classifier is the attacked model, and
	// the attack sees the transform as an adaptive attacker does (BPDA for JPEG
	// and bit depth, the transform's own derivative for median and resize-and-pad,
	// EOT over EOTSamples draws of a random one).
	Through    string `json:"through,omitempty"`
	EOTSamples int    `json:"eot_samples,omitempty"`
	// StopAfter ends the run after this many reported steps (a run that was
	// stopped, replayed to the same point); 0 runs to the end.
	StopAfter int `json:"stop_after,omitempty"`
	// Image says where the image came from; it does not hold it.
	Image ImageRef `json:"image"`
}

// Defence is one watched classifier, alone or behind an input transformation
// (defense.Kinds: jpeg, bits, median, resize-pad) with its parameter.
type Defence struct {
	Model     string `json:"model"`
	Transform string `json:"transform,omitempty"`
	Param     int    `json:"param,omitempty"`
}

// ImageRef records where a run's image came from: a sample's name, an upload's or
// drawing's file name, a gallery entry's slug. SHA256 is the clean PNG's (at the
// models' input size), filled in by Prepare.
type ImageRef struct {
	Source string `json:"source"` // sample, upload, drawing, file or gallery
	Name   string `json:"name,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// Limits bound what one plan may ask for: the explorer's are tighter than the
// command line's.
type Limits struct {
	MaxSteps    int // steps or queries
	MaxModels   int // attacked together
	MaxDefences int
	MaxRestarts int
}

// CLILimits are the command line's.
var CLILimits = Limits{MaxSteps: 100000, MaxModels: 16, MaxDefences: 32, MaxRestarts: 1000}

// InvalidError is a plan that cannot run, with a sentence saying what to change.
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// Is makes an InvalidError match inference.ErrInvalid: a mistake in what was asked.
func (e *InvalidError) Is(target error) bool { return target == inference.ErrInvalid }

func invalid(format string, args ...any) error {
	return &InvalidError{Msg: fmt.Sprintf(format, args...)}
}

// Network is the attack network's name, or "" for a method.
func (p Plan) Network() string {
	name, _ := strings.CutPrefix(strings.TrimSpace(p.Attack), NetworkPrefix)
	if name == strings.TrimSpace(p.Attack) {
		return ""
	}
	return name
}

// method checks the attack's name; "" for an attack network.
func (p Plan) method() (attack.Method, error) {
	if p.Network() != "" {
		return "", nil
	}
	id := strings.TrimSpace(p.Attack)
	m, err := attack.ParseMethod(id)
	if err != nil || id == "" {
		names := make([]string, len(attack.Methods))
		for i, m := range attack.Methods {
			names[i] = string(m)
		}
		return "", invalid("Unknown attack %q: choose one of %s, or %sNAME for an attack network.", clip(id), strings.Join(names, ", "), NetworkPrefix)
	}
	return m, nil
}

// checkNumbers checks the plan's numbers against lim, before any model is looked
// at; the budget against the input range comes later.
func (p Plan) checkNumbers(m attack.Method, lim Limits) error {
	if math.IsNaN(p.Eps) || math.IsInf(p.Eps, 0) || p.Eps <= 0 {
		return invalid("ε must be a positive number, not %g.", p.Eps)
	}
	if p.Network() != "" {
		switch {
		case p.Steps != 0 || p.Alpha != 0 || p.Restarts != 0 || p.Momentum != 0 || p.Loss != "":
			return invalid("An attack network makes its image in one pass: it takes no steps, step size, restarts, momentum or loss.")
		case p.Target != "":
			return invalid("Attack networks are untargeted: clear the target class.")
		case len(p.Models) > 0:
			return invalid("An attack network attacks no model of its own: leave the models to attack out.")
		case p.Through != "":
			return invalid("An attack network cannot attack through a defence: it makes its image in one pass, for the models it was trained on.")
		}
		return nil
	}
	what := "Steps"
	if m.BlackBox() {
		what = "Queries"
	}
	if p.Steps < 0 || p.Steps > lim.MaxSteps {
		return invalid("%s must be between 1 and %d, not %d.", what, lim.MaxSteps, p.Steps)
	}
	if m == attack.Square && p.Steps == 1 {
		return invalid("Square Attack needs at least 2 queries (the first one reads the clean prediction).")
	}
	if math.IsNaN(p.Alpha) || math.IsInf(p.Alpha, 0) || p.Alpha < 0 {
		return invalid("The step size must be a positive number, not %g.", p.Alpha)
	}
	if p.Alpha > 0 && m.BlackBox() {
		return invalid("%s takes no step size.", m)
	}
	if p.Restarts < 0 || p.Restarts > lim.MaxRestarts {
		return invalid("Restarts must be between 1 and %d, not %d.", lim.MaxRestarts, p.Restarts)
	}
	if p.Restarts > 1 && !restarts(m) {
		return invalid("Only PGD, APGD and FAB-T restart; %s runs once.", m)
	}
	if p.TargetClasses < 0 || p.TargetClasses > 1000 {
		return invalid("Target classes must be between 1 and 1000, not %d.", p.TargetClasses)
	}
	if p.TargetClasses > 0 && m != attack.APGDT && m != attack.FABT && m != attack.AutoAttack {
		return invalid("Only APGD-T, FAB-T and AutoAttack aim at several target classes.")
	}
	if math.IsNaN(p.Momentum) || math.IsInf(p.Momentum, 0) || p.Momentum < 0 || p.Momentum > 10 {
		return invalid("The momentum μ must be between 0 and 10, not %g.", p.Momentum)
	}
	if p.Momentum > 0 && m != attack.MIFGSM && m != attack.MDI2FGSM {
		return invalid("Only MI-FGSM and M-DI²-FGSM take a momentum.")
	}
	if p.NoRandomStart && m != attack.PGD {
		return invalid("Only PGD starts at random; %s starts at the image already.", m)
	}
	if (p.DiversityProb != 0 || p.DiversityMin != 0) && m != attack.DIFGSM && m != attack.MDI2FGSM {
		return invalid("Only DI-FGSM and M-DI²-FGSM transform their input (diversity).")
	}
	if p.SquareP != 0 && m != attack.Square {
		return invalid("Only Square Attack takes a square fraction p.")
	}
	switch attack.Loss(p.Loss) {
	case "", attack.LossCE, attack.LossMargin:
	case attack.LossDLR:
		if m != attack.APGDDLR && m != attack.APGDT {
			return invalid("The DLR loss is APGD-DLR's and APGD-T's, not %s's.", m)
		}
	default:
		return invalid("Unknown loss %q: choose ce, margin or dlr.", clip(p.Loss))
	}
	if p.Loss != "" && m.BlackBox() {
		return invalid("%s uses predictions only: it takes no loss.", m)
	}
	switch attack.TargetMode(p.Target) {
	case attack.Untargeted, attack.TargetClass, attack.LeastLikely:
	default:
		return invalid("Unknown target %q: choose class or least-likely, or leave it empty.", clip(p.Target))
	}
	if p.EOTSamples != 0 {
		if p.Through == "" {
			return invalid("EOT samples go with attacking through a defence.")
		}
		if err := defense.CheckSamples(p.EOTSamples); err != nil {
			return invalid("%s.", upperFirst(err.Error()))
		}
	}
	if len(p.Models) == 0 {
		return invalid("Pick at least one model to attack.")
	}
	if len(p.Models) > lim.MaxModels {
		return invalid("At most %d models can be attacked together, not %d.", lim.MaxModels, len(p.Models))
	}
	return nil
}

// restarts reports the methods that run again from fresh starts (PGD) or on the
// images not yet fooled (APGD, FAB-T).
func restarts(m attack.Method) bool {
	switch m {
	case attack.PGD, attack.APGDCE, attack.APGDDLR, attack.APGDT, attack.FABT:
		return true
	}
	return false
}

// checkDefences checks the watched defences' specs (models come later).
func (p Plan) checkDefences(lim Limits) error {
	if len(p.Defences) == 0 {
		return invalid("Pick at least one defence to watch.")
	}
	if len(p.Defences) > lim.MaxDefences {
		return invalid("At most %d defences can be watched in one run, not %d.", lim.MaxDefences, len(p.Defences))
	}
	names := map[string]bool{}
	for _, d := range p.Defences {
		name, err := d.Name()
		if err != nil {
			return err
		}
		if names[name] {
			return invalid("The defence %s is listed twice.", name)
		}
		names[name] = true
	}
	return nil
}

// Name is how pages and records name the defence: "mnist-mlp" or
// "mnist-mlp + JPEG q75".
func (d Defence) Name() (string, error) {
	if d.Transform == "" {
		if d.Param != 0 {
			return "", invalid("%s has a parameter but no transformation.", clip(d.Model))
		}
		return d.Model, nil
	}
	t, err := defense.NewTransform(d.Transform, d.Param)
	if err != nil {
		return "", invalid("%s.", upperFirst(err.Error()))
	}
	return d.Model + " + " + t.Name(), nil
}

// clip shortens a bad value quoted back in a message.
func clip(s string) string {
	if r := []rune(s); len(r) > 60 {
		return string(r[:60]) + "…"
	}
	return s
}

// upperFirst capitalises the first letter (a rune, not a byte).
func upperFirst(s string) string {
	for i, r := range s {
		return strings.ToUpper(string(r)) + s[i+len(string(r)):]
	}
	return s
}
