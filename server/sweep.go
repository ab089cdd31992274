package server

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
	"gibbon/inference/sweep"
	"gibbon/inference/zoo"
	"gibbon/views"
)

// ε sweeps and matrices: the pages (here), their websocket (sweep_ws.go) and their
// gallery entries (sweep_gallery.go). The work itself is inference/sweep's.

// sweepSocketPath is the sweeps' and matrices' websocket.
const sweepSocketPath = "/api/sweep/ws"

// sweepLimits bound the web app's sweeps (the command line has its own).
type sweepLimits struct {
	sweep.Limits
	// MaxRuns run at once, MaxQueue more may wait; Timeout caps one run.
	MaxRuns  int
	MaxQueue int
	Timeout  time.Duration
}

func defaultSweepLimits() sweepLimits {
	return sweepLimits{
		Limits:   sweep.Limits{MaxImages: 1000, MaxSteps: 100, MaxDefences: 12, MaxAttacks: 8},
		MaxRuns:  1, // a sweep keeps every core busy: one at a time
		MaxQueue: 4,
		Timeout:  10 * time.Minute,
	}
}

// sweeper is the state every sweep connection shares.
type sweeper struct {
	lim sweepLimits
	// runner executes the runs (sweep_runner.go); queue is the run queue of those
	// run in this process.
	runner SweepRunner
	queue  *runQueue

	// data are the data sets the runs here use, loaded on first use.
	data sweep.Datasets

	// sessions counts open websockets, running runs between start and end (tests watch them).
	sessions atomic.Int64
	running  atomic.Int64
}

// newSweeper runs sweeps on runner, or in this process when it is nil.
func newSweeper(lim sweepLimits, runner SweepRunner) *sweeper {
	sw := &sweeper{lim: lim, runner: runner, queue: newRunQueue(lim.MaxRuns, lim.MaxQueue)}
	if sw.runner == nil {
		sw.runner = localSweeps{sw}
	}
	return sw
}

// attackChoicesFor are the attack menu's entries (attack networks as net:NAME).
func (s *Server) sweepAttackChoices() []views.AttackChoice {
	var out []views.AttackChoice
	for _, a := range s.attackChoices() {
		out = append(out, views.AttackChoice{ID: a.ID, Label: a.Label, Note: a.Note, Gradient: a.Gradient})
	}
	return out
}

func (s *Server) sweepModels() []views.AttackModel {
	var out []views.AttackModel
	for _, m := range s.models.Classifiers() {
		out = append(out, views.AttackModel{Name: m.Name, Architecture: m.Architecture, Robust: m.Robust,
			Input: m.Input.Describe(), InputKey: m.Input.TensorKey(), Labels: m.Labels})
	}
	return out
}

func defenceKinds() []views.DefenceKind {
	var out []views.DefenceKind
	for _, k := range defense.Kinds {
		out = append(out, views.DefenceKind{ID: k.ID, Label: k.Label, Param: k.Param, Unit: k.Unit, Caveat: k.Caveat,
			Note: k.Note, Min: k.Min, Max: k.Max, Default: k.Default, Random: k.Random})
	}
	return out
}

// firstModel is the model the forms start with: the first one that is not
// adversarially trained, as in the explorer.
func (s *Server) firstModel() *zoo.Model {
	cs := s.models.Classifiers()
	for _, m := range cs {
		if !m.Robust {
			return m
		}
	}
	if len(cs) > 0 {
		return cs[0]
	}
	return nil
}

// sameInputModels are the classifiers that take first's input.
func (s *Server) sameInputModels(first *zoo.Model) []string {
	var out []string
	for _, m := range s.models.Classifiers() {
		if first != nil && m.Input.SameTensor(first.Input) {
			out = append(out, m.Name)
		}
	}
	return out
}

func newSeed() string { return strconv.FormatInt(rand.Int64N(1<<31), 10) }

// epsHint says what budgets a grid text holds, in /255 steps of the range.
func epsHint(text string, c inference.InputContract) string {
	eps, err := sweep.ParseGrid(text)
	if err != nil {
		return ""
	}
	r := c.PixelRange()
	parts := make([]string, 0, 3)
	for i, e := range eps {
		if i == 3 && len(eps) > 4 {
			parts = append(parts, "…")
			e = eps[len(eps)-1]
		} else if i > 3 {
			continue
		}
		parts = append(parts, strconv.FormatFloat(sweep.Eps255(e, r), 'f', -1, 64))
	}
	values := "values"
	if len(eps) == 1 {
		values = "value"
	}
	return fmt.Sprintf("%d %s on [%g,%g]: %s in /255 steps", len(eps), values, r[0], r[1], strings.Join(parts, ", "))
}

func (s *Server) handleSweepPage(c echo.Context) error {
	p := s.page(c, "ε sweep", "/sweep")
	p.Styles = append(p.Styles, s.assets.URL("attack.css"), s.assets.URL("sweep.css"))
	p.Scripts = append(p.Scripts, s.assets.URL("chart.js"), s.assets.URL("sweep.js"))
	lim := s.sweeps.lim
	page := views.SweepPage{Page: p, Socket: sweepSocketPath, MaxUpload: s.cfg.MaxUploadBytes, Samples: s.samples.list,
		Attacks: s.sweepAttackChoices(), Models: s.sweepModels(), Defences: defenceKinds(), Gallery: s.gallery != nil,
		MaxImages: lim.MaxImages, MaxSteps: lim.MaxSteps, Problems: len(s.models.Problems()),
		Limits: views.Limits{MaxUpload: formatBytes(s.cfg.MaxUploadBytes), MaxPixels: inference.FormatMegapixels(s.cfg.MaxPixels),
			Formats: inference.ImageFormats, Accept: "image/png,image/jpeg,image/gif,image/webp"}}
	f := views.SweepForm{Kind: sweep.KindImage, Attack: string(attack.PGD), Steps: 10, N: min(1000, lim.MaxImages), Seed: newSeed(), Label: -1}
	var contract inference.InputContract
	if first := s.firstModel(); first != nil {
		f.Model, contract = first.Name, first.Input
		f.Defences = append(s.sameInputModels(first), first.Name+"+jpeg:75", first.Name+"+bits:1")
	}
	f.Eps = sweep.DefaultEps(sweep.KindImage, contract)
	if len(s.samples.list) > 0 {
		f.Sample = s.samples.list[0].Name
	}
	saved, set, err := s.savedSettings(c, sweep.KindImage, sweep.KindDataset)
	if err != nil {
		return err
	}
	if set != nil {
		f.Kind, f.Attack, f.Eps, f.Steps, f.Seed, f.Label = set.Kind, set.Attack, set.Eps, set.Steps, strconv.FormatInt(set.Seed, 10), set.Label
		if len(set.Models) > 0 {
			f.Model = set.Models[0]
		}
		if set.N > 0 {
			f.N = set.N
		}
		f.Defences, f.Sample = set.Defences, ""
		if m, ok := s.models.Classifier(f.Model); ok {
			contract = m.Input
		}
		page.Saved = saved
	}
	f.EpsHint = epsHint(f.Eps, contract)
	page.Form = f
	return s.render(c, http.StatusOK, views.Sweep(page))
}

func (s *Server) handleCompetePage(c echo.Context) error  { return s.matrixPage(c, sweep.KindCompete) }
func (s *Server) handleTransferPage(c echo.Context) error { return s.matrixPage(c, sweep.KindTransfer) }

func (s *Server) matrixPage(c echo.Context, kind string) error {
	title, current := "Attacks against defences", "/compete"
	if kind == sweep.KindTransfer {
		title, current = "Transfer matrix", "/transfer"
	}
	p := s.page(c, title, current)
	p.Styles = append(p.Styles, s.assets.URL("attack.css"), s.assets.URL("sweep.css"))
	p.Scripts = append(p.Scripts, s.assets.URL("chart.js"), s.assets.URL("sweep.js"))
	lim := s.sweeps.lim
	page := views.MatrixPage{Page: p, Mode: kind, Socket: sweepSocketPath, Attacks: s.sweepAttackChoices(), Models: s.sweepModels(),
		Defences: defenceKinds(), Gallery: s.gallery != nil, MaxImages: lim.MaxImages, MaxSteps: lim.MaxSteps, Problems: len(s.models.Problems())}
	f := views.MatrixForm{Attack: string(attack.PGD), Steps: 10, N: min(500, lim.MaxImages), Batch: 100, Seed: newSeed()}
	var contract inference.InputContract
	z := sweep.FromZoo(s.models)
	if first := s.firstModel(); first != nil {
		contract = first.Input
		same := s.sameInputModels(first)
		if kind == sweep.KindTransfer {
			f.Models, f.Defences = append([]string(nil), same...), same
			for _, n := range s.models.AttackNetworks() {
				if n.Input.SameTensor(first.Input) {
					f.Models = append(f.Models, sweep.NetworkPrefix+n.Name)
				}
			}
		} else {
			f.Models = []string{first.Name}
			f.Attacks = sweep.DefaultAttacks(z)
			f.Defences = append(same, first.Name+"+jpeg:75", first.Name+"+bits:1", first.Name+"+median:2", first.Name+"+resize-pad:90")
		}
	}
	f.Eps = sweep.DefaultEps(kind, contract)
	saved, set, err := s.savedSettings(c, kind)
	if err != nil {
		return err
	}
	if set != nil {
		f.Attacks, f.Models, f.Defences, f.Eps, f.Steps, f.N, f.Batch = set.Attacks, set.Models, set.Defences, set.Eps, set.Steps, set.N, set.Batch
		f.Seed = strconv.FormatInt(set.Seed, 10)
		if set.Attack != "" {
			f.Attack = set.Attack
		}
		if f.Batch == 0 {
			f.Batch = 100
		}
		page.Saved = saved
	}
	f.EpsHint = epsHint(f.Eps, contract)
	page.Form = f
	return s.render(c, http.StatusOK, views.Matrix(page))
}

// savedSettings reads the gallery entry ?from= names, when there is one: its settings
// fill the form, and the page draws its stored results. An entry of another kind,
// or settings this server cannot run, are said on the page, not refused.
func (s *Server) savedSettings(c echo.Context, kinds ...string) (*views.SavedRun, *sweep.Settings, error) {
	slug := c.QueryParam("from")
	if slug == "" || s.gallery == nil {
		return nil, nil, nil
	}
	if !gallery.ValidSlug(slug) {
		return nil, nil, gallery.ErrNotFound
	}
	e, err := s.gallery.Get(c.Request().Context(), slug)
	if err != nil {
		return nil, nil, err
	}
	saved := &views.SavedRun{Slug: e.Slug, Title: e.Title, EntryURL: "/g/" + e.Slug + "/entry.json"}
	if saved.Title == "" {
		saved.Title = "entry " + e.Slug
	}
	var set sweep.Saved
	if e.Kind == gallery.KindRun || json.Unmarshal(e.Params, &set) != nil || set.Kind == "" {
		return nil, nil, userError{http.StatusBadRequest, "This gallery entry is not a sweep or a matrix: open it in the attack explorer instead."}
	}
	ok := false
	for _, k := range kinds {
		ok = ok || set.Kind == k
	}
	if !ok {
		return nil, nil, userError{http.StatusBadRequest, fmt.Sprintf("This gallery entry is a %s: open it from its permalink.", set.Kind)}
	}
	saved.Command = set.Command
	if set.Kind == sweep.KindImage && e.OriginalSHA != "" {
		saved.ImageURL = imageURL(e.OriginalSHA)
	}
	if _, err := set.Plan(c.Request().Context(), sweep.FromZoo(s.models), s.sweeps.lim.Limits); err != nil {
		saved.Problem = "These settings cannot run on this server as they are: " + err.Error() + "."
	}
	return saved, &set.Settings, nil
}

// sweepRerunURL opens a saved sweep or matrix on its page, with its settings.
func sweepRerunURL(e *gallery.Entry) string {
	var set sweep.Settings
	if json.Unmarshal(e.Params, &set) != nil {
		return ""
	}
	switch set.Kind {
	case sweep.KindImage, sweep.KindDataset:
		return "/sweep?from=" + e.Slug
	case sweep.KindCompete:
		return "/compete?from=" + e.Slug
	case sweep.KindTransfer:
		return "/transfer?from=" + e.Slug
	}
	return ""
}
