package server

import (
	"encoding/json"
	"math"
	"sort"
	"strings"

	"gibbon/gallery"
	"gibbon/inference"
)

// galleryDraft is a finished run as a gallery entry, less the title and the two
// images, which the page adds before posting it to POST /api/gallery. Only served
// classifiers are entry models (the gallery vouches for their checksums); a
// transform defence's verdicts are kept in the params.
type galleryDraft struct {
	entryFields
	Steps       []gallery.Step              `json:"steps"`
	Predictions []gallery.DefencePrediction `json:"predictions"`
}

type draftDefence struct {
	Name        string              `json:"name"`
	Model       string              `json:"model"`
	Transform   string              `json:"transform,omitempty"`
	Param       int                 `json:"param,omitempty"`
	Original    *gallery.Prediction `json:"original,omitempty"`
	Adversarial *gallery.Prediction `json:"adversarial,omitempty"`
}

type draftParams struct {
	Method      string         `json:"method"`
	Network     string         `json:"network,omitempty"`
	Head        string         `json:"head,omitempty"`
	Eps         string         `json:"eps"`
	Range       [2]float32     `json:"range"`
	Steps       int            `json:"steps,omitempty"`
	Alpha       float32        `json:"alpha,omitempty"`
	Loss        string         `json:"loss,omitempty"`
	Target      *int           `json:"target_class,omitempty"`
	TargetLabel string         `json:"target_label,omitempty"`
	Surrogates  []string       `json:"surrogates,omitempty"`
	Source      string         `json:"source"`
	Input       string         `json:"input"`
	Defences    []draftDefence `json:"defences"`
	Quantised   bool           `json:"quantised_8bit"`
}

func galleryPreds(ps []inference.Prediction) []gallery.Prediction {
	out := make([]gallery.Prediction, len(ps))
	for i, p := range ps {
		out[i] = gallery.Prediction{Index: p.Index, Label: p.Label, Prob: float64(p.Prob)}
	}
	return out
}

// galleryDraft builds the entry, or says why this run cannot be saved.
func (r *run) galleryDraft(f *finalFrame, timings map[string]float64) (*galleryDraft, string) {
	p := r.plan
	d := &galleryDraft{entryFields: entryFields{Kind: gallery.KindRun, Seed: p.seed, Eps: float64(p.eps), EpsUnit: gallery.Unit255,
		LInf: float64(f.linf), Timings: map[string]float64{}}}
	seen := map[string]bool{}
	addModel := func(m *inference.Model, attacked bool) {
		if seen[m.Name] {
			return
		}
		seen[m.Name] = true
		d.Models = append(d.Models, gallery.ModelRef{Name: m.Name, SHA256: strings.ToLower(m.SHA256), Attacked: attacked})
	}
	params := draftParams{Eps: inference.EpsLevels(float64(p.eps), p.contract.PixelRange()).LevelsString(), Range: p.contract.PixelRange(), Source: r.source,
		Input: p.contract.Describe(), Quantised: true}
	if p.network != nil {
		addModel(p.network, true)
		d.Attack = "attack-network"
		params.Method, params.Network = d.Attack, p.network.Name
		if len(f.heads) > 0 {
			params.Head = r.chosenHead()
		}
	} else {
		cfg := p.config().Defaults()
		d.Attack = string(p.method)
		params.Method, params.Steps, params.Alpha, params.Loss = string(p.method), p.steps, cfg.Alpha, string(cfg.Loss)
		if p.method.BlackBox() {
			params.Alpha, params.Loss = 0, ""
		}
		if p.target >= 0 {
			t := p.target
			params.Target, params.TargetLabel = &t, p.labels[t]
		}
		for _, m := range p.surrogates {
			addModel(m, true)
			params.Surrogates = append(params.Surrogates, m.Name)
		}
	}
	for i, def := range r.defs {
		addModel(def.plan.model, false)
		dd := draftDefence{Name: def.plan.name, Model: def.plan.model.Name, Transform: def.transform}
		if def.plan.kind != nil {
			dd.Transform, dd.Param = def.plan.kind.ID, def.plan.param
		}
		if len(def.clean) > 0 {
			dd.Original = &galleryPreds(def.clean[:1])[0]
		}
		if len(f.top[i]) > 0 {
			dd.Adversarial = &galleryPreds(f.top[i][:1])[0]
		}
		params.Defences = append(params.Defences, dd)
		if def.transform == "" {
			d.Predictions = append(d.Predictions, gallery.DefencePrediction{Model: def.plan.model.Name,
				Original: galleryPreds(def.clean), Adversarial: galleryPreds(f.top[i])})
		}
	}
	if len(d.Models) > gallery.MaxModels {
		return nil, "This run involves more models than a gallery entry holds."
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, "The run's parameters could not be recorded."
	}
	d.Params = raw

	r.mu.Lock()
	seqs := make([]int, 0, len(r.loss))
	for seq := range r.loss {
		seqs = append(seqs, seq)
	}
	sort.Ints(seqs)
	for _, seq := range seqs {
		l := float64(r.loss[seq])
		if math.IsNaN(l) || math.IsInf(l, 0) {
			continue
		}
		st := gallery.Step{Step: seq, Loss: l, Top1: []gallery.Top1{}}
		for _, g := range r.top1[seq] {
			st.Top1 = append(st.Top1, gallery.Top1{Model: g.model, Label: g.pred.Label, Prob: float64(g.pred.Prob)})
		}
		d.Steps = append(d.Steps, st)
	}
	r.mu.Unlock()
	if len(d.Steps) > gallery.MaxSteps {
		d.Steps = d.Steps[len(d.Steps)-gallery.MaxSteps:]
	}
	for _, k := range []string{"attack_ms", "step_ms", "first_frame_ms", "encode_ms_per_frame"} {
		if v, ok := timings[k]; ok {
			d.Timings[k] = v
		}
	}
	return d, ""
}

// chosenHead is the ε head the defences saw (attack networks).
func (r *run) chosenHead() string {
	rng := r.plan.contract.PixelRange()
	best, bestD := "", math.Inf(1)
	for _, e := range r.plan.network.Attack.Eps {
		head := inference.Eps{Value: e, Range: rng}
		if dd := math.Abs(float64(head.WholeLevels() - r.plan.eps)); dd < bestD {
			best, bestD = "ε "+head.String(), dd
		}
	}
	return best
}

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }
