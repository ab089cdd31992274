package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
	"gibbon/inference/engine"
	"gibbon/views"
)

// The permalink /g/:slug, made from the stored record only: images with the
// perturbation map and its gain control, every defence's verdicts as cards, the
// parameters with their units, distances, charts, and the Open Graph tags whose
// image is the preview card (gallery_card.go).

// handleGalleryEntry is the permalink /g/:slug?gain=G.
func (s *Server) handleGalleryEntry(c echo.Context) error {
	gain, err := parseGain(c.QueryParam("gain"))
	if err != nil {
		return err
	}
	e, err := s.entryFromPath(c)
	if err != nil {
		return err
	}
	page := entryPage(e, gain)
	if page.Adversarial != "" && page.Original != "" {
		// Distances measured between the stored images (the record's are beside them).
		if p, err := s.loadPair(c.Request().Context(), e); err == nil {
			page.Distances = distanceRows(e, p)
		} else if st, _ := statusFor(err); st >= 500 {
			return err
		}
	}
	if e.Kind == gallery.KindRun && s.explorer != nil {
		page.VerifyURL = "/api/gallery/" + e.Slug + "/verify"
	}
	page.Page = s.galleryStyles(s.page(c, page.Title, "/gallery"))
	page.Page.Scripts = append(page.Page.Scripts, s.assets.URL("entry.js"))
	page.Page.Meta = openGraph(e, page, c.Scheme()+"://"+c.Request().Host)
	return s.render(c, http.StatusOK, views.GalleryEntry(page))
}

// openGraph are the tags link previews read: the card as og:image, and a
// description naming the attacked model's own flip.
func openGraph(e *gallery.Entry, g views.GalleryEntryPage, origin string) []views.Meta {
	desc := fmt.Sprintf("%s, ε %s", g.Attack, g.Eps)
	if g.Flip != "" {
		desc += ": " + g.Flip
	}
	if n, fooled := len(g.Defences), flippedCount(g.Defences); n > 1 {
		desc += fmt.Sprintf(" (%d of %d defences fooled)", fooled, n)
	}
	desc += "."
	m := []views.Meta{
		{Property: "og:type", Content: "website"},
		{Property: "og:site_name", Content: "Gibbon"},
		{Property: "og:title", Content: g.Title},
		{Property: "og:description", Content: desc},
		{Property: "og:url", Content: origin + "/g/" + e.Slug},
		{Name: "description", Content: desc},
	}
	if e.OriginalSHA != "" && e.AdversarialSHA != "" {
		m = append(m,
			views.Meta{Property: "og:image", Content: origin + "/g/" + e.Slug + "/card.png"},
			views.Meta{Property: "og:image:type", Content: "image/png"},
			views.Meta{Property: "og:image:width", Content: strconv.Itoa(cardWidth)},
			views.Meta{Property: "og:image:height", Content: strconv.Itoa(cardHeight)},
			views.Meta{Property: "og:image:alt", Content: "Clean, adversarial and perturbation images: " + desc},
			views.Meta{Name: "twitter:card", Content: "summary_large_image"},
		)
	}
	return m
}

func flippedCount(ds []views.DefenceCard) int {
	n := 0
	for _, d := range ds {
		if d.Flipped {
			n++
		}
	}
	return n
}

// modelNames lists an entry's attacked models (all of them when none is marked).
func modelNames(e *gallery.Entry, attackedOnly bool) string {
	var names []string
	for _, m := range e.Models {
		if m.Attacked || !attackedOnly {
			names = append(names, m.Name)
		}
	}
	if len(names) == 0 && attackedOnly {
		return modelNames(e, false)
	}
	return strings.Join(names, ", ")
}

// entryPage turns a stored entry into the permalink's view (the distances
// measured between the images and the Verify button are the handler's).
func entryPage(e *gallery.Entry, gain float64) views.GalleryEntryPage {
	params, _ := engine.ParamsOf(e) // nil for sweeps, matrices and entries without a plan
	g := views.GalleryEntryPage{
		Slug: e.Slug, Title: e.Title, Kind: string(e.Kind), Version: e.GibbonVersion, Imported: e.Imported,
		Created: e.CreatedAt.Format("2006-01-02 15:04:05 UTC"), CreatedISO: e.CreatedAt.Format(time.RFC3339),
		Attack: attackLabel(e, params), Eps: gallery.FormatEps(e.Eps, e.EpsUnit),
		Width: e.Width, Height: e.Height, RerunURL: rerunURL(e), ProviderNote: providerNote(e),
	}
	if g.Title == "" {
		g.Title = describe(g.Kind, g.Attack, modelNames(e, true))
	}
	g.ShowWidth, g.ShowHeight = showSize(e.Width, e.Height)
	g.Original, g.Adversarial, g.Downloads = entryFiles(e)
	if g.Original != "" && g.Adversarial != "" {
		g.Gain = strconv.FormatFloat(gain, 'g', -1, 64)
		g.Perturbation = "/g/" + e.Slug + "/perturbation.png?gain=" + g.Gain
		g.Gains = gainChoices(gain)
		g.EpsLevels = epsLevels(e)
		g.FullAt = num4(float64(g.EpsLevels) / gain)
	}
	g.Defences = defenceCards(e)
	if pred, name := attackedVerdict(e); pred != nil && len(pred.Original) > 0 && len(pred.Adversarial) > 0 {
		g.Flip = pred.Original[0].Label + " → " + pred.Adversarial[0].Label + ", " + name
	}
	g.Params = paramRows(e, params)
	for _, m := range e.Models {
		role := "defence"
		if m.Attacked {
			role = "attacked"
		}
		g.Models = append(g.Models, views.GalleryModel{Name: m.Name, SHA256: m.SHA256, Short: shortSHA(m.SHA256), Role: role})
	}
	g.Timings = timingFacts(e.Timings)
	g.Steps, g.StepModels = stepRows(e)
	g.LossChart = lossChart(e.Steps)
	g.ConfCharts = confidenceCharts(e.Steps, g.StepModels)
	if len(e.Payload) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, e.Payload, "", "  ") == nil {
			g.Payload = buf.String()
		}
	}
	return g
}

// entryFiles are the stored images' URLs and the downloads.
func entryFiles(e *gallery.Entry) (orig, adv string, downloads []views.Link) {
	base := "/g/" + e.Slug + "/"
	name := "gibbon-" + e.Slug + "-"
	link := func(label, file string) views.Link {
		return views.Link{Label: label, Href: base + file, Download: name + file}
	}
	if e.OriginalSHA != "" {
		orig = imageURL(e.OriginalSHA)
		downloads = append(downloads, link("original.png", "original.png"))
	}
	if e.AdversarialSHA != "" {
		adv = imageURL(e.AdversarialSHA)
		downloads = append(downloads, link("adversarial.png", "adversarial.png"))
	}
	if orig != "" && adv != "" {
		downloads = append(downloads, link("perturbation.npy", "perturbation.npy"))
	}
	return orig, adv, append(downloads, link("entry.json", "entry.json"), link("everything (.zip)", "export.zip"))
}

// gainChoices are the gain control's settings: the explorer's powers of two, plus
// the one asked for when it is another value.
func gainChoices(gain float64) []views.GainChoice {
	var out []views.GainChoice
	found := false
	for g := engine.MinGain; g <= engine.MaxGain; g *= 2 {
		out = append(out, views.GainChoice{Value: strconv.FormatFloat(g, 'g', -1, 64), Label: "×" + strconv.FormatFloat(g, 'g', -1, 64), Selected: g == gain})
		found = found || g == gain
	}
	if !found {
		v := strconv.FormatFloat(gain, 'g', -1, 64)
		out = append(out, views.GainChoice{Value: v, Label: "×" + v, Selected: true})
	}
	return out
}

// attackLabel names the attack for people: "PGD", "Attack network pushnet".
func attackLabel(e *gallery.Entry, params *engine.Params) string {
	if params != nil && params.Plan.Network() != "" {
		return "Attack network " + params.Plan.Network()
	}
	if m, err := attack.ParseMethod(e.Attack); err == nil && e.Attack != "" {
		label, _ := methodLabel(m)
		return label
	}
	return e.Attack
}

// attackedVerdict is the verdict of the attacked model itself (the classifier
// alone, not behind a transform), and its name; for an attack network, which
// attacks no classifier, the first defence's.
func attackedVerdict(e *gallery.Entry) (*gallery.DefencePrediction, string) {
	var best *gallery.DefencePrediction
	for _, m := range e.Models {
		if !m.Attacked {
			continue
		}
		for i := range e.Predictions {
			p := &e.Predictions[i]
			if p.Model == m.Name && (best == nil || best.Transform != "" && p.Transform == "") {
				best = p
			}
		}
		if best != nil {
			return best, best.DefenceName()
		}
	}
	if len(e.Predictions) > 0 {
		return &e.Predictions[0], e.Predictions[0].DefenceName()
	}
	return nil, ""
}

// defenceCards are every defence's verdicts, transforms included, in record order.
func defenceCards(e *gallery.Entry) []views.DefenceCard {
	attacked := map[string]bool{}
	for _, m := range e.Models {
		attacked[m.Name] = m.Attacked
	}
	out := make([]views.DefenceCard, 0, len(e.Predictions))
	for _, p := range e.Predictions {
		// A classifier behind a transform was attacked without it: only the
		// classifier alone is the attacked model.
		d := views.DefenceCard{Name: p.DefenceName(), Model: p.Model, Attacked: attacked[p.Model] && p.Transform == "",
			Clean: scores(p.Original), Adv: scores(p.Adversarial)}
		if p.Transform != "" {
			d.Transform = p.Transform
			if t, err := defense.NewTransform(p.Transform, p.Param); err == nil {
				d.Transform = t.Name()
			}
		}
		if len(p.Original) > 0 && len(p.Adversarial) > 0 {
			d.Flipped = p.Original[0].Index != p.Adversarial[0].Index
			d.Change = p.Original[0].Label + " → " + p.Adversarial[0].Label
		}
		out = append(out, d)
	}
	return out
}

// providerNote says when a pass ran on a provider other than the CPU, the one
// that promises the same result for the same inputs.
func providerNote(e *gallery.Entry) string {
	for _, p := range strings.Split(e.Provider, "+") {
		if p != "" && p != inference.EPCPU {
			return fmt.Sprintf("Some passes ran on %s: a provider other than the CPU does not promise identical results, so a replay may differ slightly.", e.Provider)
		}
	}
	return ""
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

func timingFacts(t map[string]float64) []views.Fact {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]views.Fact, 0, len(keys))
	for _, k := range keys {
		out = append(out, views.Fact{Label: strings.ReplaceAll(strings.TrimSuffix(k, "_ms"), "_", " "), Value: views.Millis(t[k])})
	}
	return out
}

// rerunURL opens the explorer ready to replay a run (it reads the plan from
// GET /api/gallery/:slug/plan), or a sweep's page with its settings.
func rerunURL(e *gallery.Entry) string {
	if e.Kind != gallery.KindRun {
		return sweepRerunURL(e) // sweep.go
	}
	return "/attack?from=" + e.Slug
}

// stepRows are the per-step table: the loss and each defence's top-1.
func stepRows(e *gallery.Entry) ([]views.GalleryStep, []string) {
	var names []string
	col := map[string]int{}
	for _, st := range e.Steps {
		for _, t := range st.Top1 {
			if _, ok := col[t.Name()]; !ok {
				col[t.Name()] = len(names)
				names = append(names, t.Name())
			}
		}
	}
	out := make([]views.GalleryStep, len(e.Steps))
	for i, st := range e.Steps {
		row := views.GalleryStep{Step: st.Step, Loss: num4(st.Loss), Top1: make([]string, len(names))}
		for _, t := range st.Top1 {
			row.Top1[col[t.Name()]] = t.Label + " (" + views.Percent(t.Prob) + ")"
		}
		out[i] = row
	}
	return out, names
}
