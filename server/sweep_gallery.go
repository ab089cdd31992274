package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/sweep"
)

// entry is the finished sweep or matrix as the gallery entry the page may save (by
// the job's key), or nil when it cannot be saved (too many models, too large a
// result). linf255 is an image sweep's measured distance (0: the largest budget).
func (j *sweepJob) entry(plan *sweep.Plan, result any, orig, adv []byte, linf255 float64, wall time.Duration) *gallery.Entry {
	e, err := SweepEntry(plan, result, linf255, millis(wall), j.ss.s.servedSHA)
	if err != nil || len(e.Payload) > gallery.MaxPayloadBytes {
		return nil
	}
	e.GibbonVersion = inference.Version()
	e.Original, e.Adversarial = orig, adv
	return e
}

// servedSHA is a served model's checksum, "" for a model the server does not serve.
func (s *Server) servedSHA(name string) (string, error) {
	sha := ""
	if e, ok := s.models.Entry(name); ok {
		sha = strings.ToLower(e.SHA256)
	}
	return sha, nil
}

// SweepEntry is a finished sweep or matrix as a gallery entry (the page's draft and
// `gibbon sweep --save` alike), less the title, Gibbon's version and the images:
// every model by name and checksum (sha), all parameters, the seed, the largest
// budget and the distance. linf255 is an image sweep's measured L∞ in 255ths of the
// range (0: the largest budget); totalMS is the run's wall time. More models than
// an entry holds is an error.
func SweepEntry(plan *sweep.Plan, result any, linf255, totalMS float64, sha func(model string) (string, error)) (*gallery.Entry, error) {
	set := plan.Settings
	if len(plan.Models) > gallery.MaxModels {
		return nil, fmt.Errorf("the gallery keeps at most %d models per entry; this run used %d", gallery.MaxModels, len(plan.Models))
	}
	params, err := json.Marshal(set.Saved())
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	e := &gallery.Entry{Kind: gallery.KindSweep, Params: params, Seed: set.Seed, Payload: payload,
		Timings: map[string]float64{"total": totalMS}}
	if set.Kind == sweep.KindCompete || set.Kind == sweep.KindTransfer {
		e.Kind = gallery.KindMatrix
	}
	for _, m := range plan.Models {
		h, err := sha(m.Name)
		if err != nil {
			return nil, err
		}
		e.Models = append(e.Models, gallery.ModelRef{Name: m.Name, SHA256: h, Attacked: m.Attacked})
	}
	e.Attack = set.Attack
	if set.Kind == sweep.KindCompete {
		e.Attack = "compete: " + strings.Join(set.Attacks, ", ")
	}
	if r := []rune(e.Attack); len(r) > gallery.MaxNameRunes {
		e.Attack = string(r[:gallery.MaxNameRunes-1]) + "…"
	}
	top := slices.Max(plan.Eps)
	if plan.Range == [2]float32{0, 1} {
		e.Eps, e.EpsUnit = math.Round(float64(top)*1e6)/1e6, gallery.Unit1
		e.LInf = e.Eps
		if linf255 > 0 {
			e.LInf = math.Round(linf255/255*1e6) / 1e6
		}
	} else {
		e.Eps, e.EpsUnit = sweep.Eps255(top, plan.Range), gallery.Unit255
		e.LInf = e.Eps
		if linf255 > 0 {
			e.LInf = linf255
		}
	}
	return e, nil
}

func pngDataURLBytes(data []byte) string {
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(data)
}
