package server

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"gibbon/static"
	"gibbon/views"
)

// routes lists every endpoint. Middleware that every request gets is in
// middleware.go; the order there matters and is explained there. Every page and
// file answers HEAD as it answers GET (uptime checks use HEAD).
func (s *Server) routes() {
	e := s.echo
	s.useMiddleware()
	get := func(path string, h echo.HandlerFunc) {
		e.GET(path, h)
		e.HEAD(path, h)
	}

	// Classify (classify.go, samples.go)
	get("/", s.handleHome)
	e.POST("/classify", s.handleClassifyForm)    // form post: works without JavaScript
	get("/classify", s.redirectHome)             // a reload after the post lands here
	e.POST("/api/classify", s.handleClassifyAPI) // the same, as JSON, for app.js
	get("/samples/:name", s.handleSample)

	// Models (models.go)
	get("/models", s.handleModels)
	// Pulls from the catalog (models_pull.go): refused with 403 unless the operator allows them.
	e.POST("/models/pull", s.handlePull)
	get("/models/pull/:name", s.handlePullProgress) // reloads itself while the pull runs
	get("/api/models/pull/:name", s.handlePullStatus)

	// Attack explorer (attack.go page, ws.go websocket)
	if s.explorer != nil {
		get("/attack", s.handleAttackPage)
		e.GET(attackSocketPath, s.handleAttackSocket)
	}

	// ε sweeps and matrices (sweep.go pages, sweep_ws.go websocket)
	if s.sweeps != nil {
		get("/sweep", s.handleSweepPage)
		get("/compete", s.handleCompetePage)
		get("/transfer", s.handleTransferPage)
		e.GET(sweepSocketPath, s.handleSweepSocket)
	}

	// Gallery (gallery.go pages, gallery_files.go images and exports, gallery_api.go)
	if s.gallery != nil {
		get("/gallery", s.handleGalleryIndex)
		get("/gallery/img/:file", s.handleGalleryImage) // <sha256>.png, immutable
		get("/g/:slug", s.handleGalleryEntry)           // permalink, from the stored record only
		get("/g/:slug/:file", s.handleGalleryFile)      // original|adversarial.png, perturbation.npy, entry.json, export.zip
		get("/g/:slug/delete", s.handleGalleryDeletePage)
		e.POST("/g/:slug/delete", s.handleGalleryDelete)
		e.POST("/api/runs/:key/save", s.handleRunSave) // a finished run or sweep, by its key: the server's own record
		e.DELETE("/api/gallery/:slug", s.handleGalleryDeleteAPI)

		// Permalink pictures (gallery_images.go, gallery_card.go): the explorer's
		// blue–white–red map at ?gain=, and the Open Graph card, cached for good.
		get("/g/:slug/perturbation.png", s.handlePerturbationMap)
		get("/g/:slug/card.png", s.handleCard)
		// Re-run and Verify (gallery_replay.go): a run's plan for the explorer, and
		// its replay through the explorer's queue.
		get("/api/gallery/:slug/plan", s.handleGalleryPlan)
		if s.explorer != nil {
			e.POST("/api/gallery/:slug/verify", s.handleGalleryVerify)
		}
	}

	// Operations (health.go)
	get("/healthz", s.handleHealthz)
	get("/readyz", s.handleReadyz)

	// Assets, content-hashed (static/)
	get(static.Prefix+"*", echo.WrapHandler(s.assets))

	s.endpoints = map[string]bool{}
	for _, r := range e.Routes() {
		s.endpoints[r.Method+" "+r.Path] = true
	}
}

// routed reports whether c's request matched an endpoint: false for requests
// that will be answered 404 or 405.
func (s *Server) routed(c echo.Context) bool {
	return s.endpoints[c.Request().Method+" "+c.Path()]
}

// navItems is the site menu, in order. An entry is shown once its page is routed,
// so a page that has not landed yet never gets a dead link.
func navItems() []views.NavItem {
	return []views.NavItem{
		{Label: "Classify", Href: "/"},
		{Label: "Attack", Href: "/attack"},
		{Label: "Sweep", Href: "/sweep"},
		{Label: "Compete", Href: "/compete"},
		{Label: "Transfer", Href: "/transfer"},
		{Label: "Gallery", Href: "/gallery"},
		{Label: "Models", Href: "/models"},
	}
}

func (s *Server) routedNav() []views.NavItem {
	routed := map[string]bool{}
	for _, r := range s.echo.Routes() {
		if r.Method == http.MethodGet {
			routed[r.Path] = true
		}
	}
	var nav []views.NavItem
	for _, n := range navItems() {
		if routed[n.Href] {
			nav = append(nav, n)
		}
	}
	return nav
}
