package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"strings"

	"gibbon/gallery"
	"gibbon/inference/zoo"
)

// ParamsOf reads a run entry's params: the plan that replays it.
func ParamsOf(e *gallery.Entry) (*Params, error) {
	if e.Kind != gallery.KindRun {
		return nil, fmt.Errorf("entry %s is a %s: only single runs are replayed (a sweep's page shows the command that re-runs it)", e.Slug, e.Kind)
	}
	var p Params
	if err := json.Unmarshal(e.Params, &p); err != nil || p.Plan.Attack == "" {
		return nil, fmt.Errorf("entry %s records no plan to replay (it was saved by an older Gibbon)", e.Slug)
	}
	return &p, nil
}

// Verification says whether replaying a stored run gave the stored result, and
// exactly what differs when it did not.
type Verification struct {
	Slug string
	// Reproduced: the same adversarial image, value for value, and the same
	// verdicts (classes and probabilities) from every defence.
	Reproduced bool
	// Values is how many values the image has; Changed how many differ, MaxDiff by
	// how many /255 levels at most.
	Values, Changed, MaxDiff int
	// Differences are the verdicts that differ, in words.
	Differences []string
	// Deterministic is false when a pass ran on a provider other than the CPU,
	// which does not promise identical results.
	Deterministic bool
	Providers     []PassProvider
	Record        *Record
}

// MissingModelError is a replay whose models this server does not have (or has
// in another version).
type MissingModelError struct{ Problems []string }

func (e *MissingModelError) Error() string {
	return "cannot replay: " + strings.Join(e.Problems, "; ")
}

// Replay prepares the plan recorded in e on its stored original image: the models
// must be loaded with the recorded checksums.
func Replay(ctx context.Context, z *zoo.Zoo, e *gallery.Entry, original []byte, lim Limits) (*Prepared, error) {
	params, err := ParamsOf(e)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, m := range e.Models {
		got, err := z.Get(ctx, m.Name)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			if _, ok := z.Entry(m.Name); ok {
				missing = append(missing, fmt.Sprintf("model %s does not load here (%v)", m.Name, err))
			} else {
				missing = append(missing, fmt.Sprintf("model %s is not loaded here", m.Name))
			}
		case !strings.EqualFold(got.SHA256, m.SHA256):
			missing = append(missing, fmt.Sprintf("model %s here is another file (SHA-256 %.12s…, the entry used %.12s…)", m.Name, got.SHA256, m.SHA256))
		}
	}
	if len(missing) > 0 {
		return nil, &MissingModelError{Problems: missing}
	}
	plan := params.Plan
	return Prepare(ctx, z, plan, Image{Ref: plan.Image, Data: original, Exact: true}, lim)
}

// Verify replays a stored run and compares the result with what was stored.
func Verify(ctx context.Context, z *zoo.Zoo, e *gallery.Entry, original, adversarial []byte, lim Limits) (*Verification, error) {
	p, err := Replay(ctx, z, e, original, lim)
	if err != nil {
		return nil, err
	}
	rec, err := p.Run(ctx, nil)
	if err != nil {
		return nil, err
	}
	v := &Verification{Slug: e.Slug, Record: rec, Deterministic: rec.Deterministic(), Providers: rec.Providers}
	stored, err := png.Decode(bytes.NewReader(adversarial))
	if err != nil {
		return nil, fmt.Errorf("the stored adversarial image is not a readable PNG: %w", err)
	}
	lv, err := p.Grid.FromImage(stored)
	if err != nil {
		return nil, fmt.Errorf("the stored adversarial image: %w", err)
	}
	v.Values = len(lv)
	for i := range lv {
		if lv[i] != rec.Adv[i] {
			v.Changed++
			d := int(lv[i]) - int(rec.Adv[i])
			v.MaxDiff = max(v.MaxDiff, d, -d)
		}
	}
	v.Differences = comparePredictions(e.Predictions, rec.Defences)
	v.Reproduced = v.Changed == 0 && len(v.Differences) == 0
	return v, nil
}

// comparePredictions lists the verdicts that differ between the stored entry and
// the replay.
func comparePredictions(stored []gallery.DefencePrediction, got []DefenceResult) []string {
	var out []string
	byName := map[string]DefenceResult{}
	for _, d := range got {
		byName[d.Name] = d
	}
	for _, s := range stored {
		d, ok := byName[s.DefenceName()]
		if !ok {
			out = append(out, fmt.Sprintf("%s: stored, but the replay has no such defence", s.DefenceName()))
			continue
		}
		for _, side := range []struct {
			what   string
			stored []gallery.Prediction
			now    []gallery.Prediction
		}{{"clean image", s.Original, galleryPreds(d.Clean)}, {"adversarial image", s.Adversarial, galleryPreds(d.Adv)}} {
			if !samePredictions(side.stored, side.now) {
				out = append(out, fmt.Sprintf("%s on the %s: stored %s, now %s", s.DefenceName(), side.what,
					describeTop(side.stored), describeTop(side.now)))
			}
		}
	}
	return out
}

func samePredictions(a, b []gallery.Prediction) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		// Probabilities went through JSON as float64 from float32: compare as float32.
		if a[i].Index != b[i].Index || float32(a[i].Prob) != float32(b[i].Prob) {
			return false
		}
	}
	return true
}

func describeTop(ps []gallery.Prediction) string {
	if len(ps) == 0 {
		return "nothing"
	}
	var parts []string
	for _, p := range ps[:min(3, len(ps))] {
		parts = append(parts, fmt.Sprintf("%s %.4g %%", p.Label, 100*p.Prob))
	}
	return strings.Join(parts, ", ")
}

// Summary says the verification's outcome in one sentence.
func (v *Verification) Summary() string {
	if v.Reproduced {
		return "Reproduced bit-for-bit: the same adversarial image and the same verdicts from every defence."
	}
	var parts []string
	if v.Changed > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d pixel values differ (by up to %d/255)", v.Changed, v.Values, v.MaxDiff))
	}
	if n := len(v.Differences); n > 0 {
		parts = append(parts, fmt.Sprintf("%d verdict(s) differ", n))
	}
	s := "Not reproduced: " + strings.Join(parts, "; ") + "."
	if !v.Deterministic {
		s += " Some passes ran on a GPU provider, which does not promise identical results."
	}
	return s
}

// IsMissingModel reports whether err is a replay refused for missing models.
func IsMissingModel(err error) bool {
	var m *MissingModelError
	return errors.As(err, &m)
}
