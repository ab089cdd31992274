package server

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/views"
)

// PullDeps are what the models page needs to list the catalog and, when the
// operator allows it (gibbon serve --allow-pull), to pull a model from it and
// serve it without a restart.
type PullDeps struct {
	// Allowed turns on the Pull buttons and POST /models/pull; off, the catalog is
	// listed read-only with the command that pulls each model.
	Allowed bool
	// Catalog is listed on /models; empty: no catalog section.
	Catalog catalog.Catalog
	// Dir is the models directory pulls register into (gibbon models dir).
	Dir string
	// Options are the pulls' options but Dir and Progress: labels, the runtime that
	// prepares the file, the HTTP client, retries.
	Options catalog.Options
	// MaxPulls bounds the pulls running at once (default 2).
	MaxPulls int
}

const defaultMaxPulls = 2

// Pull states, as the progress page and its JSON name them.
const (
	pullWaiting     = "starting"
	pullDownloading = "downloading"
	pullPreparing   = "preparing"
	pullDone        = "done"
	pullFailed      = "failed"
)

// puller runs the models page's pulls: one at a time per name, MaxPulls in all;
// each one's goroutine is counted as running work, so shutdown cancels and waits
// for it. Finished pulls are kept (one per catalog name) for their progress page.
type puller struct {
	deps    PullDeps
	mu      sync.Mutex
	jobs    map[string]*pullJob
	running int
}

func newPuller(d PullDeps) *puller {
	if d.MaxPulls < 1 {
		d.MaxPulls = defaultMaxPulls
	}
	return &puller{deps: d, jobs: map[string]*pullJob{}}
}

// pullJob is one pull's progress; it is the catalog.Progress its download reports to.
type pullJob struct {
	mu          sync.Mutex
	name        string
	state       string
	done, total int64
	err         string
	started     time.Time
	took        time.Duration
}

func (j *pullJob) Start(_, _ string, total, have int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.state, j.total, j.done = pullDownloading, total, have
}

func (j *pullJob) Add(n int64) {
	j.mu.Lock()
	j.done += n
	j.mu.Unlock()
}

func (j *pullJob) Done(err error) {
	if err == nil {
		j.mu.Lock()
		j.state = pullPreparing
		j.mu.Unlock()
	}
}

// end records how the pull ended.
func (j *pullJob) end(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.took = time.Since(j.started)
	if err != nil {
		// One line: the catalog lists each mirror's failure on a line of its own.
		j.state, j.err = pullFailed, strings.Join(strings.Fields(err.Error()), " ")
		return
	}
	j.state = pullDone
}

// PullStatus is a pull's progress, as GET /api/models/pull/:name returns it.
type PullStatus struct {
	Name  string `json:"name"`
	State string `json:"state"` // starting, downloading, preparing, done, failed
	Done  int64  `json:"bytes_done"`
	Total int64  `json:"bytes_total"` // 0 while unknown
	Error string `json:"error,omitempty"`
	// Model is the model's place on /models once it is served.
	Model string `json:"model_url,omitempty"`
}

func (j *pullJob) status() PullStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := PullStatus{Name: j.name, State: j.state, Done: j.done, Total: j.total, Error: j.err}
	if j.state == pullDone {
		st.Model = "/models#model-" + j.name
	}
	return st
}

func (st PullStatus) running() bool { return st.State != pullDone && st.State != pullFailed }

// job is name's latest pull, if any.
func (p *puller) job(name string) (*pullJob, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	j, ok := p.jobs[name]
	return j, ok
}

// begin reserves a pull of name, or says why there cannot be one now.
func (p *puller) begin(name string) (*pullJob, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if j, ok := p.jobs[name]; ok && j.status().running() {
		return nil, userError{http.StatusConflict, fmt.Sprintf("%s is already being pulled: follow its progress at /models/pull/%s.", name, name)}
	}
	if p.running >= p.deps.MaxPulls {
		return nil, userError{http.StatusTooManyRequests, fmt.Sprintf("%d pulls are running, the most this server allows at once: wait for one to finish and try again.", p.running)}
	}
	j := &pullJob{name: name, state: pullWaiting, started: time.Now()}
	p.jobs[name] = j
	p.running++
	return j, nil
}

func (p *puller) finish() {
	p.mu.Lock()
	p.running--
	p.mu.Unlock()
}

// errPullOff answers a pull when the operator has not allowed them.
func (p *puller) errPullOff(name string) error {
	return userError{http.StatusForbidden, fmt.Sprintf("Pulling models from this page is off on this server: its operator can start it with gibbon serve --allow-pull, "+
		"or run `%s` and restart it with --models %s.", pullCommand(name), p.deps.Dir)}
}

func pullCommand(name string) string {
	if name == "" {
		name = "NAME"
	}
	return "gibbon models pull " + name
}

// handlePull starts pulling a catalog model (POST /models/pull, form field name):
// a form gets a redirect to the pull's progress page, a script 202 and its status.
func (s *Server) handlePull(c echo.Context) error {
	name := c.FormValue("name")
	if !s.pulls.deps.Allowed {
		return s.pulls.errPullOff(name)
	}
	e, ok := s.pulls.deps.Catalog.Lookup(name)
	if !ok {
		return userError{http.StatusNotFound, fmt.Sprintf("The catalog has no model called %q: pick one from the list on the models page.", name)}
	}
	if e.PinRequired() {
		return userError{http.StatusBadRequest, fmt.Sprintf("%s has no pinned checksum, so Gibbon will not download it unverified: "+
			"download it yourself, check its SHA-256, then run gibbon models pull --from FILE --sha256 HASH %s.", name, name)}
	}
	if _, ok := s.models.Entry(name); ok {
		return userError{http.StatusConflict, fmt.Sprintf("%s is already one of this server's models (see the models page); to replace it, pull it with gibbon models pull and restart.", name)}
	}
	job, err := s.pulls.begin(name)
	if err != nil {
		return err
	}
	if !s.active.enter() { // the pull is running work: shutdown cancels it and waits
		s.pulls.finish()
		job.end(errShuttingDown)
		return errShuttingDown
	}
	entry := *e
	go func() {
		defer s.active.leave()
		defer s.pulls.finish()
		err := s.pull(entry, job)
		job.end(err)
		if err != nil {
			s.log.Warn("pull failed", "model", entry.Name, "err", err)
			return
		}
		s.log.Info("pulled and serving", "model", entry.Name, "dir", s.pulls.deps.Dir, "s", job.took.Seconds())
	}()
	if wantsJSON(c) {
		return c.JSON(http.StatusAccepted, job.status())
	}
	return c.Redirect(http.StatusSeeOther, "/models/pull/"+url.PathEscape(name))
}

// pull downloads, verifies, prepares and registers entry, then serves it.
func (s *Server) pull(entry catalog.Entry, job *pullJob) error {
	d := s.pulls.deps
	opt := d.Options
	opt.Dir, opt.Progress = d.Dir, job
	res, err := catalog.Pull(s.work, entry, opt)
	if err != nil {
		return err
	}
	src := inference.ModelSource{Name: d.Dir, FS: os.DirFS(d.Dir)}
	if _, err := s.models.Add(s.work, src, res.Entry); err != nil {
		return fmt.Errorf("%s is registered in %s but could not be served: %w", entry.Name, d.Dir, err)
	}
	return nil
}

// handlePullProgress shows a pull's progress; the page reloads itself every
// second while the pull runs, so it needs no JavaScript.
func (s *Server) handlePullProgress(c echo.Context) error {
	name := c.Param("name")
	job, ok := s.pulls.job(name)
	if !ok {
		return userError{http.StatusNotFound, fmt.Sprintf("No pull of %q has been started on this server since it started: start one from the models page.", name)}
	}
	st := job.status()
	if st.running() {
		c.Response().Header().Set("Refresh", "1")
	}
	page := views.PullPage{Page: s.page(c, "Pulling "+name, "/models"), Name: st.Name, State: st.State,
		Running: st.running(), Error: st.Error, ModelURL: st.Model, Done: st.Done, Total: st.Total}
	page.Progress = pullProgressText(st)
	return s.render(c, http.StatusOK, views.Pull(page))
}

// handlePullStatus is a pull's progress as JSON (GET /api/models/pull/:name).
func (s *Server) handlePullStatus(c echo.Context) error {
	job, ok := s.pulls.job(c.Param("name"))
	if !ok {
		return userError{http.StatusNotFound, fmt.Sprintf("No pull of %q has been started on this server.", c.Param("name"))}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, job.status())
}

func pullProgressText(st PullStatus) string {
	switch st.State {
	case pullWaiting:
		return "starting"
	case pullDownloading:
		if st.Total > 0 {
			return fmt.Sprintf("downloaded %s of %s (%d %%)", formatBytes(st.Done), formatBytes(st.Total), st.Done*100/st.Total)
		}
		return "downloaded " + formatBytes(st.Done)
	case pullPreparing:
		return "verified; preparing the graph and loading it (" + formatBytes(st.Done) + ")"
	case pullDone:
		return "done: the model is served"
	}
	return "failed"
}

// catalogSection lists the catalog for the models page: what each model is for,
// its size and licence, and whether it is served, being pulled or can be pulled.
func (s *Server) catalogSection() *views.CatalogSection {
	d := s.pulls.deps
	if len(d.Catalog) == 0 {
		return nil
	}
	sec := &views.CatalogSection{Allowed: d.Allowed, Dir: d.Dir, Command: pullCommand("")}
	for _, e := range d.Catalog {
		ce := views.CatalogEntry{Name: e.Name, Architecture: e.Architecture, Description: e.Description,
			Purpose: purpose(e), License: e.License, Size: "unknown", Robust: e.Robust,
			PinRequired: e.PinRequired(), Command: pullCommand(e.Name)}
		if e.License == "" {
			ce.License = "not stated"
		}
		if e.Size > 0 {
			ce.Size = formatBytes(e.Size)
		}
		if _, ok := s.models.Model(e.Name); ok {
			ce.Served = true
		} else if _, ok := s.models.Entry(e.Name); ok {
			ce.Failed = "one of this server's models, but it did not load: see Not loaded above"
		}
		if j, ok := s.pulls.job(e.Name); ok {
			st := j.status()
			ce.Pulling = st.running()
			if st.State == pullFailed {
				ce.Failed = st.Error
			}
		}
		sec.Entries = append(sec.Entries, ce)
	}
	return sec
}

// purpose says what a catalog model is for, in a phrase.
func purpose(e catalog.Entry) string {
	p := "classifies photos into the " + strconv.Itoa(e.Classes) + " ImageNet classes"
	if e.Robust {
		p += "; adversarially trained, a defence to attack"
	}
	return p
}
