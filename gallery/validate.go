package gallery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"
)

// prepared is a checked entry turned into what the tables hold.
type prepared struct {
	kind         Kind
	title        string
	model        string // index display
	orig, adv    *imageInfo
	linfMeasured *float64
	record       []byte
	steps        [][]byte // top1 JSON per step
	origLabel    string
	advLabel     string
}

// record is the entries.record JSON column.
type record struct {
	Params      json.RawMessage     `json:"params"`
	Predictions []DefencePrediction `json:"predictions"`
	Timings     map[string]float64  `json:"timings_ms,omitempty"`
	Payload     json.RawMessage     `json:"payload,omitempty"`
	L2          float64             `json:"l2,omitempty"`
	Runtime     string              `json:"runtime,omitempty"`
	Provider    string              `json:"provider,omitempty"`
	Imported    bool                `json:"imported,omitempty"`
}

// prepare validates e and normalises it in place (trimmed text, lower-case
// checksums, compact JSON). Every problem is a *ValidationError.
func prepare(e *Entry) (*prepared, error) {
	p := &prepared{kind: e.Kind}
	switch e.Kind {
	case KindRun, KindSweep, KindMatrix:
	case "":
		return nil, invalid("kind", "missing (run, sweep or matrix)")
	default:
		return nil, invalid("kind", "%q is not run, sweep or matrix", clip(string(e.Kind)))
	}
	e.Title = strings.TrimSpace(e.Title)
	if err := checkText("title", e.Title, MaxTitleRunes, true); err != nil {
		return nil, err
	}
	p.title = e.Title
	if err := checkText("gibbon_version", e.GibbonVersion, MaxVersionRunes, false); err != nil {
		return nil, err
	}
	if err := checkText("attack", e.Attack, MaxNameRunes, e.Kind != KindRun); err != nil {
		return nil, err
	}

	// Models.
	if len(e.Models) == 0 {
		return nil, invalid("models", "at least one model is required")
	}
	if len(e.Models) > MaxModels {
		return nil, tooLarge("models", "%d models, at most %d", len(e.Models), MaxModels)
	}
	known := make(map[string]bool, len(e.Models))
	for i := range e.Models {
		m := &e.Models[i]
		field := fmt.Sprintf("models[%d]", i)
		if err := checkText(field+".name", m.Name, MaxNameRunes, false); err != nil {
			return nil, err
		}
		if known[m.Name] {
			return nil, invalid(field+".name", "%q is listed twice", m.Name)
		}
		known[m.Name] = true
		m.SHA256 = strings.ToLower(m.SHA256)
		if !isHex64(m.SHA256) {
			return nil, invalid(field+".sha256", "want 64 hex digits (the model file's SHA-256)")
		}
	}
	p.model = e.Models[0].Name
	for _, m := range e.Models {
		if m.Attacked {
			p.model = m.Name
			break
		}
	}

	// Attack settings.
	params, err := jsonObject("params", e.Params, MaxParamsBytes, true)
	if err != nil {
		return nil, err
	}
	e.Params = params
	var maxEps float64
	switch e.EpsUnit {
	case Unit255:
		maxEps = 255
	case Unit1:
		maxEps = 1
	default:
		return nil, invalid("eps_unit", "%q is not %q or %q", clip(e.EpsUnit), Unit255, Unit1)
	}
	if !finite(e.Eps) || e.Eps < 0 || e.Eps > maxEps {
		return nil, invalid("eps", "want a number from 0 to %g (%s)", maxEps, e.EpsUnit)
	}
	if !finite(e.LInf) || e.LInf < 0 || e.LInf > maxEps {
		return nil, invalid("linf", "want a number from 0 to %g (%s)", maxEps, e.EpsUnit)
	}
	if !finite(e.L2) || e.L2 < 0 {
		return nil, invalid("l2", "want a non-negative number")
	}
	if err := checkText("runtime", e.Runtime, MaxVersionRunes, true); err != nil {
		return nil, err
	}
	if err := checkText("provider", e.Provider, MaxVersionRunes, true); err != nil {
		return nil, err
	}

	// Final predictions, one per defence: a model, alone or behind a transform.
	if len(e.Predictions) > MaxDefences {
		return nil, tooLarge("predictions", "%d defences, at most %d", len(e.Predictions), MaxDefences)
	}
	defences := make(map[string]bool, len(e.Predictions))
	for i := range e.Predictions {
		d := &e.Predictions[i]
		field := fmt.Sprintf("predictions[%d]", i)
		if !known[d.Model] {
			return nil, invalid(field+".model", "%q is not among the entry's models", clip(d.Model))
		}
		d.Name = strings.TrimSpace(d.Name)
		if d.Name == d.Model {
			d.Name = ""
		}
		if err := checkText(field+".name", d.Name, MaxNameRunes, true); err != nil {
			return nil, err
		}
		if err := checkText(field+".transform", d.Transform, MaxNameRunes, true); err != nil {
			return nil, err
		}
		if defences[d.DefenceName()] {
			return nil, invalid(field+".name", "%q listed twice", d.DefenceName())
		}
		defences[d.DefenceName()] = true
		for side, preds := range map[string][]Prediction{"original": d.Original, "adversarial": d.Adversarial} {
			if len(preds) > MaxTopK {
				return nil, tooLarge(field+"."+side, "top-%d, at most %d", len(preds), MaxTopK)
			}
			for j, pr := range preds {
				f := fmt.Sprintf("%s.%s[%d]", field, side, j)
				if pr.Index < 0 {
					return nil, invalid(f+".index", "negative class index")
				}
				if err := checkText(f+".label", pr.Label, MaxNameRunes, true); err != nil {
					return nil, err
				}
				if !isProb(pr.Prob) {
					return nil, invalid(f+".prob", "want a probability from 0 to 1")
				}
			}
		}
	}

	// Steps: each defence's guess is keyed by its name (a model's name, or a
	// defence among the predictions).
	if len(e.Steps) > MaxSteps {
		return nil, tooLarge("steps", "%d steps, at most %d", len(e.Steps), MaxSteps)
	}
	p.steps = make([][]byte, len(e.Steps))
	size := 0
	for i := range e.Steps {
		st := &e.Steps[i]
		field := fmt.Sprintf("steps[%d]", i)
		if st.Step < 0 || (i > 0 && st.Step <= e.Steps[i-1].Step) {
			return nil, invalid(field+".step", "step numbers must be non-negative and increasing")
		}
		if !finite(st.Loss) {
			return nil, invalid(field+".loss", "not a finite number")
		}
		if len(st.Top1) > len(known)+len(defences) {
			return nil, invalid(field+".top1", "more guesses than defences")
		}
		seen := map[string]bool{}
		for j := range st.Top1 {
			t := &st.Top1[j]
			f := fmt.Sprintf("%s.top1[%d]", field, j)
			if !known[t.Model] {
				return nil, invalid(f+".model", "%q is not among the entry's models", clip(t.Model))
			}
			if t.Defence == t.Model {
				t.Defence = ""
			}
			if t.Defence != "" && !defences[t.Defence] {
				return nil, invalid(f+".defence", "%q is not among the entry's defences", clip(t.Defence))
			}
			if seen[t.Name()] {
				return nil, invalid(f+".model", "%q twice in one step", t.Name())
			}
			seen[t.Name()] = true
			if err := checkText(f+".label", t.Label, MaxNameRunes, true); err != nil {
				return nil, err
			}
			if !isProb(t.Prob) {
				return nil, invalid(f+".prob", "want a probability from 0 to 1")
			}
			if t.TrueProb != nil && !isProb(*t.TrueProb) {
				return nil, invalid(f+".true_prob", "want a probability from 0 to 1")
			}
		}
		top1 := st.Top1
		if top1 == nil {
			top1 = []Top1{}
		}
		b, err := json.Marshal(top1)
		if err != nil {
			return nil, invalid(field, "%v", err)
		}
		p.steps[i] = b
		size += len(b) + 32
	}

	if len(e.Predictions) > 0 {
		first := e.Predictions[0]
		for _, d := range e.Predictions {
			if d.Model == p.model && d.Transform == "" {
				first = d
				break
			}
		}
		if len(first.Original) > 0 {
			p.origLabel = first.Original[0].Label
		}
		if len(first.Adversarial) > 0 {
			p.advLabel = first.Adversarial[0].Label
		}
	}

	// Timings.
	if len(e.Timings) > MaxTimings {
		return nil, tooLarge("timings_ms", "%d timings, at most %d", len(e.Timings), MaxTimings)
	}
	for k, v := range e.Timings {
		if err := checkText("timings_ms key", k, 64, false); err != nil {
			return nil, err
		}
		if !finite(v) || v < 0 {
			return nil, invalid("timings_ms."+k, "want a non-negative number of milliseconds")
		}
	}

	// Payload: only sweeps and matrices carry one.
	if e.Kind == KindRun {
		if len(bytes.TrimSpace(e.Payload)) > 0 && string(bytes.TrimSpace(e.Payload)) != "null" {
			return nil, invalid("payload", "a run carries no payload (sweeps and matrices do)")
		}
		e.Payload = nil
	} else {
		pl, err := jsonValue("payload", e.Payload, MaxPayloadBytes)
		if err != nil {
			return nil, err
		}
		e.Payload = pl
	}

	// Images.
	if e.Kind == KindRun && (len(e.Original) == 0 || len(e.Adversarial) == 0) {
		return nil, invalid("images", "a run needs both the original and the adversarial PNG")
	}
	if len(e.Original) > 0 {
		if p.orig, err = decodePNG("original", e.Original); err != nil {
			return nil, err
		}
		size += len(e.Original)
	}
	if len(e.Adversarial) > 0 {
		if p.adv, err = decodePNG("adversarial", e.Adversarial); err != nil {
			return nil, err
		}
		size += len(e.Adversarial)
	}
	if p.orig != nil && p.adv != nil {
		if p.orig.width != p.adv.width || p.orig.height != p.adv.height {
			return nil, invalid("adversarial", "%dx%d, but the original is %dx%d", p.adv.width, p.adv.height, p.orig.width, p.orig.height)
		}
		m := linf255(p.orig.img, p.adv.img)
		p.linfMeasured = &m
	}
	e.LInfMeasured = p.linfMeasured
	e.OriginalSHA, e.AdversarialSHA, e.Width, e.Height = "", "", 0, 0
	if p.orig != nil {
		e.OriginalSHA, e.Width, e.Height = p.orig.sha, p.orig.width, p.orig.height
	}
	if p.adv != nil {
		e.AdversarialSHA, e.Width, e.Height = p.adv.sha, p.adv.width, p.adv.height
	}

	rec, err := json.Marshal(record{Params: e.Params, Predictions: e.Predictions, Timings: e.Timings, Payload: e.Payload,
		L2: e.L2, Runtime: e.Runtime, Provider: e.Provider, Imported: e.Imported})
	if err != nil {
		return nil, invalid("", "encode record: %v", err)
	}
	p.record = rec
	size += len(rec)
	if size > MaxEntryBytes {
		return nil, tooLarge("", "entry is %d bytes, at most %d", size, MaxEntryBytes)
	}
	return p, nil
}

// checkText accepts printable single-line UTF-8 up to max runes. Control and
// bidirectional-override characters are refused: they could disguise a name.
func checkText(field, s string, max int, allowEmpty bool) error {
	if s == "" {
		if allowEmpty {
			return nil
		}
		return invalid(field, "missing")
	}
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return tooLarge(field, "%d characters, at most %d", n, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			return invalid(field, "contains a control character (U+%04X)", r)
		}
	}
	return nil
}

// jsonObject checks raw is one JSON object and returns it compacted; empty means {}.
func jsonObject(field string, raw json.RawMessage, max int, allowEmpty bool) (json.RawMessage, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		if allowEmpty {
			return json.RawMessage("{}"), nil
		}
		return nil, invalid(field, "missing")
	}
	if t[0] != '{' {
		return nil, invalid(field, "want a JSON object")
	}
	return compactJSON(field, t, max)
}

// jsonValue checks raw is a JSON object or array and returns it compacted.
func jsonValue(field string, raw json.RawMessage, max int) (json.RawMessage, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil, invalid(field, "missing (a sweep or matrix keeps its results here)")
	}
	if t[0] != '{' && t[0] != '[' {
		return nil, invalid(field, "want a JSON object or array")
	}
	return compactJSON(field, t, max)
}

func compactJSON(field string, t []byte, max int) (json.RawMessage, error) {
	if len(t) > max {
		return nil, tooLarge(field, "%d bytes of JSON, at most %d", len(t), max)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return nil, invalid(field, "not valid JSON: %v", err)
	}
	if !utf8.Valid(buf.Bytes()) {
		return nil, invalid(field, "not valid UTF-8")
	}
	return json.RawMessage(buf.Bytes()), nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func isProb(x float64) bool { return finite(x) && x >= 0 && x <= 1+1e-6 }

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// clip shortens a bad value quoted back in an error message.
func clip(s string) string {
	if len(s) <= 40 {
		return s
	}
	r := []rune(s)
	if len(r) > 40 {
		r = r[:40]
	}
	return string(r) + "…"
}
