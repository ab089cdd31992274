package server

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"gibbon/gallery"
	"gibbon/inference/attack"
	"gibbon/inference/engine"
	"gibbon/views"
)

// A permalink's tables, every number with its unit: the run's parameters as
// recorded (engine.Params, with the attack's defaults filled in), and the
// distances between the images.

// paramRows is the parameters table; params is nil for entries without a plan
// (sweeps, matrices), whose parameters are listed as stored.
func paramRows(e *gallery.Entry, params *engine.Params) []views.ParamRow {
	if params == nil {
		return storedParamRows(e)
	}
	rows := []views.ParamRow{attackRow(e, params), epsRow(e, params)}
	if cfg := params.Method; cfg != nil {
		rows = append(rows, methodRows(e, params, *cfg)...)
	} else {
		rows = append(rows, views.ParamRow{Key: "steps", Label: "Steps", Value: "one forward pass", Note: "an attack network makes its image at once"})
		if params.Head != "" {
			rows = append(rows, views.ParamRow{Key: "head", Label: "Head", Value: params.Head, Note: "the network's output at the entry's ε"})
		}
	}
	if t := params.Plan.Through; t != "" {
		note := "an adaptive attack: through the transform, not around it (Athalye, Carlini & Wagner 2018)"
		if params.Plan.EOTSamples > 0 {
			note += fmt.Sprintf("; %d EOT draws per gradient", params.Plan.EOTSamples)
		}
		rows = append(rows, views.ParamRow{Key: "through", Label: "Attacked through", Value: t, Note: note})
	}
	rows = append(rows, targetRows(e, params)...)
	rows = append(rows,
		views.ParamRow{Key: "seed", Label: "Seed", Value: strconv.FormatInt(e.Seed, 10), Code: true,
			Note: "random starts and draws; the same seed replays the same run"},
		imageRow(params),
		views.ParamRow{Key: "input", Label: "Models' input", Value: params.Input, Note: strings.Join(params.Crop, "; ")},
		runtimeRow(e, params),
		views.ParamRow{Key: "version", Label: "Gibbon", Value: e.GibbonVersion, Code: true},
	)
	if e.Imported {
		rows = append(rows, views.ParamRow{Key: "imported", Label: "Imported", Value: "yes",
			Note: "an operator imported this entry: this server did not compute it (Verify replays it here)"})
	}
	return rows
}

// attackRow names the attack and what it does.
func attackRow(e *gallery.Entry, params *engine.Params) views.ParamRow {
	r := views.ParamRow{Key: "attack", Label: "Attack", Value: attackLabel(e, params)}
	if m, err := attack.ParseMethod(e.Attack); err == nil && params.Method != nil {
		_, r.Note = methodLabel(m)
	} else if net := params.Plan.Network(); net != "" {
		r.Note = "a trained network that outputs adversarial images in one pass"
	}
	return r
}

// inputWidth is the width of the models' value range: the method's, else what the
// plan's ε on that range and the entry's ε as a fraction of it imply.
func inputWidth(e *gallery.Entry, params *engine.Params) float64 {
	if cfg := params.Method; cfg != nil && cfg.Range[1] > cfg.Range[0] {
		return float64(cfg.Range[1] - cfg.Range[0])
	}
	frac := e.Eps
	if e.EpsUnit != gallery.Unit1 {
		frac /= 255
	}
	if params.Plan.Eps > 0 && frac > 0 {
		return math.Round(params.Plan.Eps/frac*1e6) / 1e6 // 1, not 0.9999999
	}
	return 1
}

// budgetRow writes a budget on the input range v as /255 levels, with the fraction
// of the range and, on another range than [0,1], the value on it.
func budgetRow(key, label string, v, width float64, note string) views.ParamRow {
	frac := v / width
	r := views.ParamRow{Key: key, Label: label, Value: num4(frac*255) + "/255"}
	parts := []string{num4(frac) + " of the input range"}
	if width != 1 {
		parts = append(parts, num4(v)+" on the models' "+num4(width)+"-wide range")
	}
	if note != "" {
		parts = append(parts, note)
	}
	r.Note = strings.Join(parts, "; ")
	return r
}

func epsRow(e *gallery.Entry, params *engine.Params) views.ParamRow {
	r := budgetRow("eps", "ε (L∞ budget)", params.Plan.Eps, inputWidth(e, params), "")
	if e.EpsUnit == gallery.Unit255 {
		r.Value = gallery.FormatEps(e.Eps, e.EpsUnit)
	}
	return r
}

// methodRows are a method's step size, steps, restarts, momentum and loss, each
// where the method uses it.
func methodRows(e *gallery.Entry, params *engine.Params, cfg attack.Config) []views.ParamRow {
	width := inputWidth(e, params)
	var rows []views.ParamRow
	if !cfg.Method.BlackBox() {
		note := "as asked"
		if params.Plan.Alpha == 0 {
			note = "the attack's default (ε/steps; 2.5ε/steps for PGD)"
		}
		rows = append(rows, budgetRow("alpha", "Step size α", float64(cfg.Alpha), width, note))
	}
	rows = append(rows, stepsRow(params, cfg))
	if cfg.Method == attack.PGD {
		rows = append(rows, views.ParamRow{Key: "restarts", Label: "Restarts", Value: strconv.Itoa(max(1, cfg.Restarts)),
			Note: "random starts; the best result is kept"})
	}
	if cfg.Method == attack.MIFGSM || cfg.Method == attack.MDI2FGSM {
		rows = append(rows, views.ParamRow{Key: "momentum", Label: "Momentum μ", Value: num4(float64(cfg.Momentum)),
			Note: "decay of the accumulated normalised gradient"})
	}
	if cfg.Method == attack.DIFGSM || cfg.Method == attack.MDI2FGSM {
		rows = append(rows, views.ParamRow{Key: "diversity", Label: "Input diversity", Value: views.Percent(float64(cfg.DiversityProb)),
			Note: fmt.Sprintf("chance per step of a random resize to %s–100 %% and pad", num4(100*float64(cfg.DiversityMin)))})
	}
	if !cfg.Method.BlackBox() {
		loss := "cross-entropy"
		if cfg.Loss == attack.LossMargin {
			loss = "C&W margin (logit difference)"
		}
		rows = append(rows, views.ParamRow{Key: "loss", Label: "Loss", Value: loss})
	}
	return rows
}

// stepsRow says how many steps (queries, draws) were asked and run.
func stepsRow(params *engine.Params, cfg attack.Config) views.ParamRow {
	r := views.ParamRow{Key: "steps", Label: "Steps"}
	asked, run := cfg.Steps, params.StepsRun
	switch cfg.Method {
	case attack.Square:
		r.Label, asked = "Queries", cfg.Queries
	case attack.Noise:
		r.Label, asked = "Draws", cfg.Queries
	default:
		// Every restart reports its start point (step 0) before its steps.
		per := cfg.Steps + 1
		run -= (run + per - 1) / per
		if rs := max(1, cfg.Restarts); rs > 1 {
			asked *= rs
			r.Note = fmt.Sprintf("%d per restart × %d restarts", cfg.Steps, rs)
		}
	}
	r.Value = fmt.Sprintf("%d asked, %d run", asked, run)
	if params.Stopped {
		stop := fmt.Sprintf("stopped after %d %s", run, strings.ToLower(r.Label))
		if params.Reason != "" {
			stop += ": " + params.Reason
		}
		r.Note = strings.TrimPrefix(r.Note+"; "+stop, "; ")
	}
	return r
}

// targetRows are the target and the true class.
func targetRows(e *gallery.Entry, params *engine.Params) []views.ParamRow {
	t := views.ParamRow{Key: "target", Label: "Target", Value: "untargeted", Note: "any other class will do"}
	switch attack.TargetMode(params.Plan.Target) {
	case attack.TargetClass:
		t.Value, t.Note = "class "+labelOf(e, params.Target), "the attack pushes towards it"
	case attack.LeastLikely:
		t.Value, t.Note = "least likely: "+labelOf(e, params.Target), "the attacked models' least likely clean class"
	}
	truth := views.ParamRow{Key: "label", Label: "True class", Value: params.LabelName,
		Note: "the attacked models' prediction on the clean image"}
	if params.Plan.Label != nil {
		truth.Note = "given with the run"
	}
	return []views.ParamRow{t, truth}
}

// labelOf is class k's label, as the entry's predictions name it.
func labelOf(e *gallery.Entry, k int) string {
	for _, p := range e.Predictions {
		for _, side := range [][]gallery.Prediction{p.Original, p.Adversarial} {
			for _, pr := range side {
				if pr.Index == k {
					return pr.Label
				}
			}
		}
	}
	return strconv.Itoa(k)
}

// imageRow says where the image came from.
func imageRow(params *engine.Params) views.ParamRow {
	ref := params.Plan.Image
	r := views.ParamRow{Key: "image", Label: "Image", Value: sourceLabel(ref)}
	switch ref.Source {
	case "upload", "file":
		if ref.Name != "" {
			r.Value = "upload “" + ref.Name + "”"
		}
	}
	var notes []string
	if params.SourceW > 0 {
		notes = append(notes, fmt.Sprintf("%d×%d px as given", params.SourceW, params.SourceH))
	}
	if ref.SHA256 != "" {
		notes = append(notes, "clean PNG SHA-256 "+shortSHA(ref.SHA256)+"…")
	}
	r.Note = strings.Join(notes, "; ")
	return r
}

// runtimeRow says what computed the run and where each pass ran.
func runtimeRow(e *gallery.Entry, params *engine.Params) views.ParamRow {
	r := views.ParamRow{Key: "runtime", Label: "Runtime", Value: strings.TrimSpace(e.Runtime + " · " + e.Provider)}
	var passes []string
	for _, p := range params.Providers {
		passes = append(passes, p.Model+" "+p.Pass+": "+p.EP)
	}
	r.Note = strings.Join(passes, "; ")
	return r
}

// storedParamRows lists a sweep's or matrix's parameters as stored, one per key.
func storedParamRows(e *gallery.Entry) []views.ParamRow {
	var m map[string]json.RawMessage
	if json.Unmarshal(e.Params, &m) != nil {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rows := make([]views.ParamRow, 0, len(keys)+2)
	for _, k := range keys {
		v := string(m[k])
		var s string
		if json.Unmarshal(m[k], &s) == nil {
			v = s
		}
		rows = append(rows, views.ParamRow{Key: "stored", Label: k, Value: v, Code: true})
	}
	return append(rows,
		views.ParamRow{Key: "seed", Label: "Seed", Value: strconv.FormatInt(e.Seed, 10), Code: true},
		views.ParamRow{Key: "version", Label: "Gibbon", Value: e.GibbonVersion, Code: true})
}

// distanceRows are the L∞ and L2 norms of the perturbation: as the run recorded
// them, and as measured now between the stored images.
func distanceRows(e *gallery.Entry, p *storedPair) []views.ParamRow {
	linf, l2 := p.measured()
	rows := []views.ParamRow{
		{Key: "linf", Label: "L∞, recorded", Value: gallery.FormatEps(e.LInf, e.EpsUnit), Note: "the largest change of one value, as the run reported it"},
		{Key: "linf-measured", Label: "L∞, measured", Value: strconv.Itoa(linf) + "/255", Note: "between the stored images"},
	}
	params, err := engine.ParamsOf(e)
	width := 1.0
	if err == nil {
		width = inputWidth(e, params)
	}
	unit := "on the input range"
	if width == 1 {
		unit = "on [0,1]"
	}
	if e.L2 > 0 || err == nil {
		rows = append(rows, views.ParamRow{Key: "l2", Label: "L2, recorded", Value: num4(e.L2), Note: unit + ", as the run computed it"})
	}
	rows = append(rows, views.ParamRow{Key: "l2-measured", Label: "L2, measured", Value: num4(l2 * width), Note: unit + ", between the stored images"})
	return rows
}

// shortSHA is a checksum's first 12 hex digits.
func shortSHA(sha string) string { return sha[:min(12, len(sha))] }
