package server

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"

	"gibbon/gallery"
	"gibbon/inference/sweep"
)

// sweepDraft is a finished sweep or matrix as a gallery entry, less the title, which
// the page adds before posting it to POST /api/gallery (the same provenance rules as
// a run: served models by checksum, every parameter, the seed). Its fields are
// saveRequest's.
type sweepDraft struct {
	Kind           gallery.Kind       `json:"kind"`
	Models         []gallery.ModelRef `json:"models"`
	Attack         string             `json:"attack"`
	Params         json.RawMessage    `json:"params"`
	Seed           int64              `json:"seed"`
	Eps            float64            `json:"eps"`
	EpsUnit        string             `json:"eps_unit"`
	LInf           float64            `json:"linf"`
	Timings        map[string]float64 `json:"timings_ms"`
	Payload        json.RawMessage    `json:"payload"`
	OriginalPNG    string             `json:"original_png,omitempty"`
	AdversarialPNG string             `json:"adversarial_png,omitempty"`
}

// draft builds the entry, or nil when it cannot be saved (too many models).
// linf255 is an image sweep's measured distance (0: the largest budget).
func (j *sweepJob) draft(plan *sweep.Plan, result any, orig, adv []byte, linf255 float64, wall time.Duration) *sweepDraft {
	s := j.ss.s
	set := plan.Settings
	if len(plan.Models) > gallery.MaxModels {
		return nil
	}
	params, err := json.Marshal(set.Saved())
	if err != nil {
		return nil
	}
	payload, err := json.Marshal(result)
	if err != nil || len(payload) > gallery.MaxPayloadBytes {
		return nil
	}
	d := &sweepDraft{Kind: gallery.KindSweep, Params: params, Seed: set.Seed, Payload: payload,
		Timings: map[string]float64{"total": millis(wall)}}
	if set.Kind == sweep.KindCompete || set.Kind == sweep.KindTransfer {
		d.Kind = gallery.KindMatrix
	}
	for _, m := range plan.Models {
		sha := ""
		for _, r := range s.models.All() {
			if r.Name == m.Name {
				sha = strings.ToLower(r.SHA256)
			}
		}
		d.Models = append(d.Models, gallery.ModelRef{Name: m.Name, SHA256: sha, Attacked: m.Attacked})
	}
	d.Attack = set.Attack
	if set.Kind == sweep.KindCompete {
		d.Attack = "compete: " + strings.Join(set.Attacks, ", ")
	}
	if r := []rune(d.Attack); len(r) > gallery.MaxNameRunes {
		d.Attack = string(r[:gallery.MaxNameRunes-1]) + "…"
	}
	top := slices.Max(plan.Eps)
	if plan.Range == [2]float32{0, 1} {
		d.Eps, d.EpsUnit = math.Round(float64(top)*1e6)/1e6, gallery.Unit1
		d.LInf = d.Eps
		if linf255 > 0 {
			d.LInf = math.Round(linf255/255*1e6) / 1e6
		}
	} else {
		d.Eps, d.EpsUnit = sweep.Eps255(top, plan.Range), gallery.Unit255
		d.LInf = d.Eps
		if linf255 > 0 {
			d.LInf = linf255
		}
	}
	if orig != nil && adv != nil {
		d.OriginalPNG = base64.StdEncoding.EncodeToString(orig)
		d.AdversarialPNG = base64.StdEncoding.EncodeToString(adv)
	}
	return d
}

func pngDataURLBytes(data []byte) string {
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(data)
}
