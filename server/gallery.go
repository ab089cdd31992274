package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
	"gibbon/inference/engine"
	"gibbon/views"
)

// GalleryStore is what the server needs of the gallery (*gallery.Store has it).
type GalleryStore interface {
	Save(ctx context.Context, e *gallery.Entry) (gallery.Receipt, error)
	Get(ctx context.Context, slug string) (*gallery.Entry, error)
	Image(ctx context.Context, sha string) ([]byte, error)
	Images(ctx context.Context, e *gallery.Entry) (original, adversarial []byte, err error)
	List(ctx context.Context, opt gallery.ListOptions) (gallery.Page, error)
	Facets(ctx context.Context) (gallery.Facets, error)
	Delete(ctx context.Context, slug, token string) error
}

// maxFilterLen bounds a filter value from the query string (names are at most
// gallery.MaxNameRunes characters; a longer value cannot match anything).
const maxFilterLen = 4 * gallery.MaxNameRunes

// Version is this build's version, recorded in every saved entry (the server's
// and the command line's): the module version, else the VCS revision (marked when
// the tree was modified).
func Version() string { return version() }

var version = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		v = "devel-" + rev[:min(12, len(rev))] + dirty
	}
	if v == "" {
		v = "devel"
	}
	return v
})

func (s *Server) galleryStyles(p views.Page) views.Page {
	p.Styles = append(p.Styles, s.assets.URL("gallery.css"))
	return p
}

// handleGalleryIndex is /gallery?model=&attack=&eps=&kind=&after=.
func (s *Server) handleGalleryIndex(c echo.Context) error {
	ctx := c.Request().Context()
	q := c.QueryParams()
	f := gallery.Filter{Model: q.Get("model"), Attack: q.Get("attack"), Eps: q.Get("eps"), Kind: gallery.Kind(q.Get("kind"))}
	after := q.Get("after")
	page := views.GalleryIndexPage{Page: s.galleryStyles(s.page(c, "Gallery", "/gallery"))}
	page.Filtered = f != (gallery.Filter{})
	status := http.StatusOK

	var (
		res gallery.Page
		err error
	)
	if len(f.Model) > maxFilterLen || len(f.Attack) > maxFilterLen || len(f.Eps) > 64 || len(f.Kind) > 16 || len(after) > 64 {
		err = &gallery.ValidationError{Msg: "a filter value is too long"}
	} else {
		res, err = s.gallery.List(ctx, gallery.ListOptions{Filter: f, Cursor: after})
	}
	if err != nil {
		st, msg := statusFor(err)
		if st >= 500 {
			return err
		}
		c.Set(handledErrKey, err)
		status, page.Error = st, msg
	}
	facets, err := s.gallery.Facets(ctx)
	if err != nil {
		return err
	}
	page.Models = options(facets.Models, f.Model)
	page.Attacks = options(facets.Attacks, f.Attack)
	page.Eps = options(facets.Eps, f.Eps)
	page.Kinds = []views.FilterOption{
		{Value: "run", Label: "runs", Selected: f.Kind == gallery.KindRun},
		{Value: "sweep", Label: "sweeps", Selected: f.Kind == gallery.KindSweep},
		{Value: "matrix", Label: "matrices", Selected: f.Kind == gallery.KindMatrix},
	}
	for _, e := range res.Entries {
		page.Cards = append(page.Cards, card(e))
	}
	filters := url.Values{}
	for k, v := range map[string]string{"model": f.Model, "attack": f.Attack, "eps": f.Eps, "kind": string(f.Kind)} {
		if v != "" {
			filters.Set(k, v)
		}
	}
	if res.Next != "" {
		next := url.Values{}
		for k, v := range filters {
			next[k] = v
		}
		next.Set("after", res.Next)
		page.NextURL = "/gallery?" + next.Encode()
	}
	if after != "" {
		page.FirstURL = "/gallery"
		if len(filters) > 0 {
			page.FirstURL += "?" + filters.Encode()
		}
	}
	return s.render(c, status, views.GalleryIndex(page))
}

func options(values []gallery.FacetValue, selected string) []views.FilterOption {
	out := make([]views.FilterOption, 0, len(values)+1)
	found := false
	for _, v := range values {
		out = append(out, views.FilterOption{Value: v.Value, Label: fmt.Sprintf("%s (%d)", v.Value, v.Count), Selected: v.Value == selected})
		found = found || v.Value == selected
	}
	if selected != "" && !found { // keep the choice visible even when nothing has it
		out = append(out, views.FilterOption{Value: selected, Label: selected + " (0)", Selected: true})
	}
	return out
}

func card(e gallery.Summary) views.GalleryCard {
	c := views.GalleryCard{
		URL:        "/g/" + e.Slug,
		Title:      e.Title,
		Kind:       string(e.Kind),
		Model:      e.Model,
		Attack:     e.Attack,
		Eps:        gallery.FormatEps(e.Eps, e.EpsUnit),
		Created:    e.CreatedAt.Format("2006-01-02 15:04 UTC"),
		CreatedISO: e.CreatedAt.Format(time.RFC3339),
	}
	if c.Title == "" {
		c.Title = describe(string(e.Kind), e.Attack, e.Model)
	}
	if e.AdversarialSHA != "" {
		c.Thumb = imageURL(e.AdversarialSHA)
	}
	if e.OriginalLabel != "" || e.AdversarialLabel != "" {
		c.Change = e.OriginalLabel + " → " + e.AdversarialLabel
		c.Fooled = e.OriginalLabel != e.AdversarialLabel
	}
	return c
}

// describe names an entry that has no title.
func describe(kind, attack, model string) string {
	if attack == "" {
		attack = kind
	}
	return attack + " on " + model
}

// imageURL is a stored image's content-addressed, immutable URL.
func imageURL(sha string) string { return "/gallery/img/" + sha + ".png" }

// entryFromPath loads the entry the :slug parameter names.
func (s *Server) entryFromPath(c echo.Context) (*gallery.Entry, error) {
	slug := c.Param("slug")
	if !gallery.ValidSlug(slug) {
		return nil, gallery.ErrNotFound
	}
	return s.gallery.Get(c.Request().Context(), slug)
}

// handleGalleryEntry is the permalink /g/:slug, made from the stored record only.
func (s *Server) handleGalleryEntry(c echo.Context) error {
	e, err := s.entryFromPath(c)
	if err != nil {
		return err
	}
	page := entryPage(e)
	page.Page = s.galleryStyles(s.page(c, page.Title, "/gallery"))
	origin := c.Scheme() + "://" + c.Request().Host
	desc := fmt.Sprintf("%s, ε %s, against %s", e.Attack, page.Eps, modelNames(e, true))
	if len(e.Predictions) > 0 && len(e.Predictions[0].Original) > 0 && len(e.Predictions[0].Adversarial) > 0 {
		p := e.Predictions[0]
		desc += fmt.Sprintf(": %s saw %s, then %s", p.Model, p.Original[0].Label, p.Adversarial[0].Label)
	}
	page.Meta = []views.Meta{
		{Property: "og:type", Content: "website"},
		{Property: "og:site_name", Content: "Gibbon"},
		{Property: "og:title", Content: page.Title},
		{Property: "og:description", Content: desc},
		{Property: "og:url", Content: origin + "/g/" + e.Slug},
	}
	if e.AdversarialSHA != "" {
		page.Meta = append(page.Meta,
			views.Meta{Property: "og:image", Content: origin + imageURL(e.AdversarialSHA)},
			views.Meta{Property: "og:image:type", Content: "image/png"},
			views.Meta{Property: "og:image:width", Content: strconv.Itoa(e.Width)},
			views.Meta{Property: "og:image:height", Content: strconv.Itoa(e.Height)},
			views.Meta{Property: "og:image:alt", Content: "Adversarial image: " + desc},
			views.Meta{Property: "twitter:card", Content: "summary"},
		)
	}
	return s.render(c, http.StatusOK, views.GalleryEntry(page))
}

func modelNames(e *gallery.Entry, attackedOnly bool) string {
	var names []string
	for _, m := range e.Models {
		if m.Attacked || !attackedOnly {
			names = append(names, m.Name)
		}
	}
	if len(names) == 0 {
		return modelNames(e, false)
	}
	return strings.Join(names, ", ")
}

// entryPage turns a stored entry into the permalink's view.
func entryPage(e *gallery.Entry) views.GalleryEntryPage {
	g := views.GalleryEntryPage{
		Slug:       e.Slug,
		Title:      e.Title,
		Kind:       string(e.Kind),
		Created:    e.CreatedAt.Format("2006-01-02 15:04:05 UTC"),
		CreatedISO: e.CreatedAt.Format(time.RFC3339),
		Version:    e.GibbonVersion,
		Attack:     e.Attack,
		Eps:        gallery.FormatEps(e.Eps, e.EpsUnit),
		LInf:       gallery.FormatEps(e.LInf, e.EpsUnit),
		Seed:       strconv.FormatInt(e.Seed, 10),
		Width:      e.Width,
		Height:     e.Height,
		RerunURL:   rerunURL(e),
	}
	if g.Title == "" {
		g.Title = describe(g.Kind, e.Attack, modelNames(e, true))
	}
	base := "/g/" + e.Slug + "/"
	name := "gibbon-" + e.Slug + "-"
	if e.OriginalSHA != "" {
		g.Original = imageURL(e.OriginalSHA)
		g.Downloads = append(g.Downloads, views.Link{Label: "original.png", Href: base + "original.png", Download: name + "original.png"})
	}
	if e.AdversarialSHA != "" {
		g.Adversarial = imageURL(e.AdversarialSHA)
		g.Downloads = append(g.Downloads, views.Link{Label: "adversarial.png", Href: base + "adversarial.png", Download: name + "adversarial.png"})
	}
	if e.LInfMeasured != nil {
		g.LInfMeasured = strconv.FormatFloat(*e.LInfMeasured, 'f', -1, 64)
		g.Perturbation = base + "perturbation.png"
		// The picture maps the largest change to black or white (see gallery.Perturbation.Amplified).
		g.Gain = "×1"
		if *e.LInfMeasured > 0 {
			g.Gain = "×" + strconv.FormatFloat(127.5 / *e.LInfMeasured, 'f', 1, 64)
		}
		g.Downloads = append(g.Downloads,
			views.Link{Label: "perturbation.npy", Href: base + "perturbation.npy", Download: name + "perturbation.npy"})
	}
	g.Downloads = append(g.Downloads,
		views.Link{Label: "entry.json", Href: base + "entry.json", Download: name + "entry.json"},
		views.Link{Label: "everything (.zip)", Href: base + "export.zip", Download: name + "export.zip"})
	g.ShowWidth, g.ShowHeight = showSize(e.Width, e.Height)

	for _, m := range e.Models {
		role := "defence"
		if m.Attacked {
			role = "attacked"
		}
		g.Models = append(g.Models, views.GalleryModel{Name: m.Name, SHA256: m.SHA256, Role: role})
	}
	g.Params = paramFacts(e.Params)
	keys := make([]string, 0, len(e.Timings))
	for k := range e.Timings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g.Timings = append(g.Timings, views.Fact{Label: k, Value: views.Millis(e.Timings[k])})
	}
	for _, p := range e.Predictions {
		gp := views.GalleryPrediction{Model: p.Model, Original: scores(p.Original), Adversarial: scores(p.Adversarial)}
		gp.Fooled = len(p.Original) > 0 && len(p.Adversarial) > 0 && p.Original[0].Index != p.Adversarial[0].Index
		g.Predictions = append(g.Predictions, gp)
	}
	g.Steps, g.StepModels = steps(e)
	g.LossPoints, g.LossMin, g.LossMax = lossChart(e.Steps)
	if len(e.Payload) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, e.Payload, "", "  ") == nil {
			g.Payload = buf.String()
		}
	}
	return g
}

// showSize enlarges small images by a whole factor (pixels stay sharp) to
// about 224 px, and shrinks large ones to at most 320 px wide.
func showSize(w, h int) (int, int) {
	if w <= 0 || h <= 0 {
		return 0, 0
	}
	if z := 224 / max(w, h); z > 1 {
		return w * z, h * z
	}
	if w > 320 {
		return 320, max(1, h*320/w)
	}
	return w, h
}

func scores(ps []gallery.Prediction) []views.Score {
	out := make([]views.Score, len(ps))
	for i, p := range ps {
		out[i] = views.Score{Label: p.Label, Index: p.Index, Prob: p.Prob}
	}
	return out
}

// paramFacts lists the attack's parameters, one per key, values as JSON.
func paramFacts(raw json.RawMessage) []views.Fact {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]views.Fact, 0, len(keys))
	for _, k := range keys {
		out = append(out, views.Fact{Label: k, Value: paramText(m[k]), Code: true})
	}
	return out
}

// paramText is a parameter as a query value: strings bare, anything else as JSON.
func paramText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// rerunURL opens the attack explorer with the entry's settings: attacked
// models as model, the others as defence, then attack, eps, unit, seed and
// every parameter under its own name.
func rerunURL(e *gallery.Entry) string {
	if e.Kind != gallery.KindRun {
		return sweepRerunURL(e) // sweep.go
	}
	q := url.Values{}
	for _, m := range e.Models {
		if m.Attacked {
			q.Add("model", m.Name)
		} else {
			q.Add("defence", m.Name)
		}
	}
	q.Set("attack", e.Attack)
	q.Set("eps", strconv.FormatFloat(e.Eps, 'f', -1, 64))
	q.Set("eps_unit", e.EpsUnit)
	q.Set("seed", strconv.FormatInt(e.Seed, 10))
	var m map[string]json.RawMessage
	if json.Unmarshal(e.Params, &m) == nil {
		for k, v := range m {
			if q.Get(k) == "" && len(k) <= 64 {
				q.Set(k, paramText(v))
			}
		}
	}
	q.Set("from", e.Slug)
	return "/attack?" + q.Encode()
}

func steps(e *gallery.Entry) ([]views.GalleryStep, []string) {
	var names []string
	col := map[string]int{}
	for _, st := range e.Steps {
		for _, t := range st.Top1 {
			if _, ok := col[t.Model]; !ok {
				col[t.Model] = len(names)
				names = append(names, t.Model)
			}
		}
	}
	out := make([]views.GalleryStep, len(e.Steps))
	for i, st := range e.Steps {
		row := views.GalleryStep{Step: st.Step, Loss: strconv.FormatFloat(st.Loss, 'g', 4, 64), Top1: make([]string, len(names))}
		for _, t := range st.Top1 {
			row.Top1[col[t.Model]] = t.Label + " (" + views.Percent(t.Prob) + ")"
		}
		out[i] = row
	}
	return out, names
}

// lossChart draws the loss per step as polyline points in a 300×100 box.
func lossChart(st []gallery.Step) (points, lo, hi string) {
	if len(st) < 2 {
		return "", "", ""
	}
	minL, maxL := math.Inf(1), math.Inf(-1)
	for _, s := range st {
		minL, maxL = min(minL, s.Loss), max(maxL, s.Loss)
	}
	span := maxL - minL
	if span == 0 {
		span = 1
	}
	first, last := float64(st[0].Step), float64(st[len(st)-1].Step)
	var b strings.Builder
	for i, s := range st {
		x := 300 * (float64(s.Step) - first) / (last - first)
		y := 95 - 90*(s.Loss-minL)/span
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x, y)
	}
	return b.String(), strconv.FormatFloat(minL, 'g', 4, 64), strconv.FormatFloat(maxL, 'g', 4, 64)
}

// handleGalleryDeletePage is the secret link /g/:slug/delete?token=: it asks to
// confirm (a GET never deletes: link previews and prefetchers follow links).
func (s *Server) handleGalleryDeletePage(c echo.Context) error {
	e, err := s.entryFromPath(c)
	if err != nil {
		return err
	}
	return s.render(c, http.StatusOK, views.GalleryDelete(s.deletePage(c, e, c.QueryParam("token"))))
}

func (s *Server) deletePage(c echo.Context, e *gallery.Entry, token string) views.GalleryDeletePage {
	p := views.GalleryDeletePage{Page: s.galleryStyles(s.page(c, "Delete a gallery entry", "/gallery")), Slug: e.Slug, Title: e.Title}
	if p.Title == "" {
		p.Title = describe(string(e.Kind), e.Attack, modelNames(e, true))
	}
	if e.AdversarialSHA != "" {
		p.Thumb = imageURL(e.AdversarialSHA)
	}
	if len(token) <= 128 {
		p.Token = token
	}
	return p
}

// handleGalleryDelete is the confirmation form's POST.
func (s *Server) handleGalleryDelete(c echo.Context) error {
	e, err := s.entryFromPath(c)
	if err != nil {
		return err
	}
	token := c.FormValue("token")
	err = s.gallery.Delete(c.Request().Context(), e.Slug, token)
	if errors.Is(err, gallery.ErrForbidden) {
		c.Set(handledErrKey, err)
		p := s.deletePage(c, e, "")
		_, p.Error = statusFor(err)
		return s.render(c, http.StatusForbidden, views.GalleryDelete(p))
	}
	if err != nil {
		return err
	}
	s.log.Info("gallery entry deleted", "slug", e.Slug)
	p := s.deletePage(c, e, "")
	p.Done, p.Thumb = true, ""
	return s.render(c, http.StatusOK, views.GalleryDelete(p))
}

// planResponse is GET /api/gallery/:slug/plan: a saved run's plan in the
// explorer's units, for Re-run (/attack?from=SLUG). The permalink branch owns the
// full version (its start message and notes); this one has what the explorer reads.
type planResponse struct {
	Slug string      `json:"slug"`
	Plan engine.Plan `json:"plan"`
	// ImageURL is the stored original, which a re-run attacks exactly.
	ImageURL string `json:"image_url"`
	// Eps255 and Alpha255 are ε and the step size in /255 steps of the input
	// range (Alpha255 0: the attack's default); Steps what the run asked for.
	Eps255   float64  `json:"eps_255"`
	Alpha255 float64  `json:"alpha_255"`
	Steps    int      `json:"steps"`
	Notes    []string `json:"notes"`
}

// handleGalleryPlan is GET /api/gallery/:slug/plan.
func (s *Server) handleGalleryPlan(c echo.Context) error {
	e, err := s.entryFromPath(c)
	if err != nil {
		return err
	}
	params, err := engine.ParamsOf(e)
	if err != nil {
		return userError{http.StatusUnprocessableEntity, upperFirst(err.Error()) + "."}
	}
	if e.OriginalSHA == "" {
		return userError{http.StatusUnprocessableEntity, "This entry keeps no original image to re-run the attack on."}
	}
	p := params.Plan
	res := planResponse{Slug: e.Slug, Plan: p, ImageURL: imageURL(e.OriginalSHA), Eps255: e.Eps, Notes: []string{}}
	if p.Alpha > 0 && p.Eps > 0 {
		res.Alpha255 = p.Alpha / p.Eps * e.Eps
	}
	if cfg := params.Method; cfg != nil {
		res.Steps = cfg.Steps
		if cfg.Method.BlackBox() {
			res.Steps = cfg.Queries
		}
	}
	if p.StopAfter > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("The run was stopped after %d recorded steps; a re-run goes to the end.", p.StopAfter))
	}
	return c.JSON(http.StatusOK, res)
}
