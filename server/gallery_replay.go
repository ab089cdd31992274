package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
	"gibbon/inference/attack"
	"gibbon/inference/engine"
)

// Re-run and Verify of a saved run. Re-run opens the explorer at
// /attack?from=SLUG, which reads the run's plan here and starts it on the stored
// original (start message source "gallery"). Verify replays the recorded plan
// on this server, through the explorer's run queue, and compares the result with
// what was stored.

// planResponse is GET /api/gallery/:slug/plan.
type planResponse struct {
	Slug string      `json:"slug"`
	Plan engine.Plan `json:"plan"`
	// ImageURL is the stored original: the image the run attacked, at the models'
	// input size (a re-run starts from it exactly).
	ImageURL string `json:"image_url"`
	// Eps255 and Alpha255 are ε and the step size in /255 steps of the input
	// range, as the explorer's form takes them (Alpha255 0: the attack's default).
	Eps255   float64 `json:"eps_255"`
	Alpha255 float64 `json:"alpha_255"`
	// Steps is what the run asked for with the attack's default filled in (queries
	// for black-box attacks; 0 for an attack network).
	Steps int `json:"steps"`
	// Start is the explorer's start message that re-runs the plan on the stored
	// original ("type": "start" to be added by the page).
	Start startMsg `json:"start"`
	// Notes say what the explorer's form cannot set as the run recorded it.
	Notes []string `json:"notes"`
}

// replayParams reads a run entry's plan, or says why it has none to replay.
func (s *Server) replayParams(c echo.Context) (*gallery.Entry, *engine.Params, error) {
	e, err := s.entryFromPath(c)
	if err != nil {
		return nil, nil, err
	}
	params, err := engine.ParamsOf(e)
	if err != nil {
		return nil, nil, userError{http.StatusUnprocessableEntity, upperFirst(err.Error()) + "."}
	}
	return e, params, nil
}

// handleGalleryPlan is GET /api/gallery/:slug/plan.
func (s *Server) handleGalleryPlan(c echo.Context) error {
	e, params, err := s.replayParams(c)
	if err != nil {
		return err
	}
	if e.OriginalSHA == "" {
		return userError{http.StatusUnprocessableEntity, "This entry keeps no original image to re-run the attack on."}
	}
	res := replayPlan(e, params)
	res.Notes = append(res.Notes, s.modelNotes(e)...)
	return c.JSON(http.StatusOK, res)
}

// modelNotes say which of the entry's models this server lacks or has in another
// version (a re-run with them cannot give the stored result; Verify refuses).
func (s *Server) modelNotes(e *gallery.Entry) []string {
	var out []string
	for _, m := range e.Models {
		got, ok := s.models.Model(m.Name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("Model %s is not loaded on this server.", m.Name))
		case !strings.EqualFold(got.SHA256, m.SHA256):
			out = append(out, fmt.Sprintf("Model %s here is another file (SHA-256 %s…, the entry used %s…): a re-run will not give the stored result.",
				m.Name, shortSHA(got.SHA256), shortSHA(m.SHA256)))
		}
	}
	return out
}

// replayPlan is the plan in the explorer's units, with its start message.
func replayPlan(e *gallery.Entry, params *engine.Params) planResponse {
	plan := params.Plan
	width := inputWidth(e, params)
	res := planResponse{Slug: e.Slug, Plan: plan, ImageURL: imageURL(e.OriginalSHA), Notes: []string{},
		Eps255: levels255(plan.Eps, width), Alpha255: levels255(plan.Alpha, width)}
	if cfg := params.Method; cfg != nil {
		res.Steps = cfg.Steps
		if cfg.Method.BlackBox() {
			res.Steps = cfg.Queries
		}
	}
	seed := plan.Seed
	res.Start = startMsg{Attack: plan.Attack, Eps: res.Eps255, Steps: res.Steps, Loss: plan.Loss, Alpha: res.Alpha255,
		Restarts: plan.Restarts, Momentum: plan.Momentum, Surrogates: plan.Models, Source: "gallery", Entry: e.Slug, Seed: &seed,
		Watch: []watchSpec{}}
	switch attack.TargetMode(plan.Target) {
	case attack.TargetClass:
		k := plan.TargetClass
		res.Start.Target = &k
	case attack.LeastLikely:
		res.Start.TargetMode = plan.Target
	}
	for i, d := range plan.Defences {
		res.Start.Watch = append(res.Start.Watch, watchSpec{Model: d.Model, Defence: d.Transform, Param: d.Param})
		if name, _ := d.Name(); plan.Through != "" && name == plan.Through {
			res.Start.Through = &i
		}
	}
	res.Start.EOTSamples = plan.EOTSamples
	if res.Eps255 != math.Trunc(res.Eps255) {
		res.Notes = append(res.Notes, fmt.Sprintf("ε is %s/255: the explorer takes whole /255 steps.", num4(res.Eps255)))
	}
	if plan.StopAfter > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("The run was stopped after %d recorded steps; a re-run goes to the end (Verify replays it to the same point).", plan.StopAfter))
	}
	if plan.Label != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("The true class was given as %s; the explorer takes the attacked models' clean prediction.", params.LabelName))
	}
	return res
}

// levels255 is a value on a range of the given width in /255 steps, rounded to
// 6 decimals (8, not 8.000000000000002).
func levels255(v, width float64) float64 {
	return math.Round(v/width*255*1e6) / 1e6
}

// verifyResponse is POST /api/gallery/:slug/verify's answer.
type verifyResponse struct {
	Slug       string `json:"slug"`
	Reproduced bool   `json:"reproduced"`
	Summary    string `json:"summary"`
	// Values is how many values the adversarial image has; Changed how many the
	// replay made differently, MaxDiff by how many /255 steps at most.
	Changed     int      `json:"changed"`
	Values      int      `json:"values"`
	MaxDiff     int      `json:"max_diff"`
	Differences []string `json:"differences"`
	// Deterministic: every pass, recorded and replayed, ran on the CPU provider,
	// which promises the same result for the same inputs. ProviderNote says so
	// when not.
	Deterministic bool                  `json:"deterministic"`
	ProviderNote  string                `json:"provider_note,omitempty"`
	Providers     []engine.PassProvider `json:"providers"`
	ElapsedMS     float64               `json:"elapsed_ms"`
}

// handleGalleryVerify is POST /api/gallery/:slug/verify: the recorded plan
// replayed on the stored original, in a slot of the explorer's queue and within
// its time limit, compared with the stored result.
func (s *Server) handleGalleryVerify(c echo.Context) error {
	e, _, err := s.replayParams(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	orig, adv, err := s.gallery.Images(ctx, e)
	if err != nil {
		return err
	}
	if orig == nil || adv == nil {
		return userError{http.StatusUnprocessableEntity, "This entry does not keep both images, so there is nothing to compare a replay with."}
	}
	release, err := s.explorer.queue.acquire(ctx, func(int) {})
	var busy busyError
	if errors.As(err, &busy) {
		return userError{http.StatusServiceUnavailable, busy.Error()}
	} else if err != nil {
		return err
	}
	defer release()
	limit := s.explorer.cfg.RunTimeout
	tctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := time.Now()
	v, err := engine.Verify(tctx, s.models, e, orig, adv, s.engineLimits())
	var invalid *engine.InvalidError
	switch {
	case err != nil && tctx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
		return userError{http.StatusServiceUnavailable, fmt.Sprintf("The replay reached the explorer's time limit of %s before it finished: this run is too long to verify on this server.", limit)}
	case errors.As(err, &invalid):
		return userError{http.StatusUnprocessableEntity, "This run cannot be replayed on this server: " + invalid.Msg}
	case err != nil:
		return err
	}
	res := verifyResponse{Slug: e.Slug, Reproduced: v.Reproduced, Summary: v.Summary(), Changed: v.Changed, Values: v.Values,
		MaxDiff: v.MaxDiff, Differences: v.Differences, Providers: v.Providers, ElapsedMS: millis(time.Since(start)),
		Deterministic: v.Deterministic && providerNote(e) == ""}
	if res.Differences == nil {
		res.Differences = []string{}
	}
	if !res.Deterministic {
		res.ProviderNote = "Some passes ran on a provider other than the CPU, which does not promise identical results: small differences can come from it."
	}
	s.log.Info("gallery entry verified", "slug", e.Slug, "reproduced", v.Reproduced, "changed", v.Changed, "ms", res.ElapsedMS)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, res)
}
