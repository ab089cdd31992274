package server

import (
	"net/http"
	"sync/atomic"

	"github.com/labstack/echo/v4"

	"gibbon/inference"
	"gibbon/inference/defense"
	"gibbon/views"
)

// The live attack explorer: the page (here), its websocket (ws.go), a run
// (attack_run.go) and its frames (attack_frame.go).

// attackSocketPath is the explorer's websocket.
const attackSocketPath = "/api/attack/ws"

// firstRunPace is the slow motion (ms per step) of a visit's first run: PGD-40 on
// the small models is over in half a second, too fast to watch.
const firstRunPace = 80

// explorer is the explorer's state shared by every connection.
type explorer struct {
	cfg   AttackConfig
	queue *runQueue
	// running counts runs between their start message and their end, queued ones
	// included; runs counts every run begun; sessions counts open websockets
	// (tests watch them).
	running  atomic.Int64
	runs     atomic.Int64
	sessions atomic.Int64
}

func newExplorer(d AttackDeps) *explorer {
	cfg := d.Config.withDefaults()
	return &explorer{cfg: cfg, queue: newRunQueue(cfg.MaxRuns, cfg.MaxQueue)}
}

func (s *Server) handleAttackPage(c echo.Context) error {
	return s.render(c, http.StatusOK, views.Attack(s.attackPage(c)))
}

func (s *Server) attackPage(c echo.Context) views.AttackPage {
	cfg := s.explorer.cfg
	p := s.page(c, "Attack", "/attack")
	p.Styles = append(p.Styles, s.assets.URL("attack.css"))
	p.Scripts = append(p.Scripts, s.assets.URL("attack_chart.js"), s.assets.URL("handoff.js"), s.assets.URL("attack.js"))
	page := views.AttackPage{
		Page: p,
		Limits: views.Limits{
			MaxUpload: formatBytes(s.cfg.MaxUploadBytes),
			MaxPixels: inference.FormatMegapixels(s.cfg.MaxPixels),
			Formats:   inference.ImageFormats,
			Accept:    "image/png,image/jpeg,image/gif,image/webp",
		},
		Samples:      s.samples.list,
		MaxSteps:     cfg.MaxSteps,
		DefaultSteps: min(40, cfg.MaxSteps),
		DefaultEps:   40,
		MaxEps:       128,
		MaxPaceMS:    int(cfg.MaxPace.Milliseconds()),
		FirstPaceMS:  min(firstRunPace, int(cfg.MaxPace.Milliseconds())),
		MaxRestarts:  s.engineLimits().MaxRestarts,
		MaxUpload:    s.cfg.MaxUploadBytes,
		Gallery:      s.gallery != nil,
		Socket:       attackSocketPath,
		Problems:     len(s.models.Problems()),
	}
	for _, a := range s.attackChoices() {
		page.Attacks = append(page.Attacks, views.AttackChoice{ID: a.ID, Label: a.Label, Note: a.Note, Gradient: a.Gradient, Heads: a.Heads})
	}
	for _, m := range s.models.Classifiers() {
		page.Models = append(page.Models, views.AttackModel{Name: m.Name, Architecture: m.Architecture, Robust: m.Robust,
			Input: m.Input.Describe(), InputKey: m.Input.TensorKey(), Channels: m.Input.Channels, Labels: m.Labels})
	}
	for _, k := range defense.Kinds {
		page.Defences = append(page.Defences, views.DefenceKind{ID: k.ID, Label: k.Label, Param: k.Param, Unit: k.Unit, Caveat: k.Caveat,
			Note: k.Note, Min: k.Min, Max: k.Max, Default: k.Default, Random: k.Random})
	}
	return page
}
