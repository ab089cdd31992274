package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
)

// Saving runs. A page never sends what a run computed: each run (attack, sweep or
// matrix) gets a key when it starts, and when it ends the server keeps the
// gallery entry it built from its own record, for a while, under that key. The
// page saves it with POST /api/runs/:key/save, naming only a title.

// runBook holds recent runs' entries by key, bounded in number and age.
type runBook struct {
	mu    sync.Mutex
	runs  map[string]*bookedRun
	order []string // oldest first
	max   int
	ttl   time.Duration
	now   func() time.Time
}

// bookedRun is one run: who ran it, and once it ended, its entry.
type bookedRun struct {
	owner string
	ended time.Time
	done  bool
	entry *gallery.Entry // nil: the run ended without a result
	why   string         // why there is no entry
	saved *saveResponse
}

// Bounds of the run book: enough for every open page's last runs, small enough
// to hold in memory (an entry is its two PNGs and the recorded steps).
const (
	runBookMax = 256
	runBookTTL = time.Hour
)

func newRunBook() *runBook {
	return &runBook{runs: map[string]*bookedRun{}, max: runBookMax, ttl: runBookTTL, now: time.Now}
}

// open registers a run that is starting and returns its key.
func (b *runBook) open(owner string) string {
	var raw [16]byte
	rand.Read(raw[:])
	key := hex.EncodeToString(raw[:])
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked()
	for len(b.order) >= b.max {
		delete(b.runs, b.order[0])
		b.order = b.order[1:]
	}
	b.runs[key] = &bookedRun{owner: owner}
	b.order = append(b.order, key)
	return key
}

// close records how a run ended: its entry, or why it has none.
func (b *runBook) close(key string, e *gallery.Entry, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.runs[key]; r != nil {
		r.done, r.entry, r.why, r.ended = true, e, why, b.now()
	}
}

func (b *runBook) expireLocked() {
	cut := b.now().Add(-b.ttl)
	for len(b.order) > 0 {
		r := b.runs[b.order[0]]
		if r != nil && (!r.done || r.ended.After(cut)) {
			break
		}
		delete(b.runs, b.order[0])
		b.order = b.order[1:]
	}
}

// take finds owner's finished, unsaved run and returns a copy of its entry; errors
// say why a run cannot be saved.
func (b *runBook) take(key, owner string) (*gallery.Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked()
	r := b.runs[key]
	switch {
	case r == nil:
		return nil, userError{http.StatusNotFound, "There is no run with this key: a run can be saved for an hour after it ends, from the page that ran it."}
	case r.owner != owner:
		return nil, userError{http.StatusForbidden, "This run was made on another page: it can only be saved from there."}
	case !r.done:
		return nil, userError{http.StatusConflict, "The run is still going: save it once it has ended."}
	case r.saved != nil:
		return nil, userError{http.StatusConflict, "This run is saved already, at " + r.saved.Permalink + "."}
	case r.entry == nil:
		return nil, userError{http.StatusConflict, "This run cannot be saved: " + r.why}
	}
	e := *r.entry
	return &e, nil
}

// saved marks a run as saved.
func (b *runBook) markSaved(key string, res *saveResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.runs[key]; r != nil {
		r.saved = res
	}
}

// runOwner is who a request comes from, for the run book: the browser's CSRF
// cookie (the same on the page's websocket and its POSTs), else its address.
func runOwner(c echo.Context) string {
	if ck, err := c.Cookie(csrfCookie); err == nil && ck.Value != "" {
		return "cookie:" + ck.Value
	}
	return "ip:" + c.RealIP()
}

// validRunKey accepts the 32 hex digits open makes.
func validRunKey(k string) bool {
	if len(k) != 32 {
		return false
	}
	_, err := hex.DecodeString(k)
	return err == nil && strings.ToLower(k) == k
}

// saveRunRequest is POST /api/runs/:key/save's optional body.
type saveRunRequest struct {
	Title string `json:"title"`
}

// saveResponse tells the saver where the entry lives and how to delete it.
type saveResponse struct {
	Slug        string `json:"slug"`
	Permalink   string `json:"permalink"`
	DeleteURL   string `json:"delete_url"`
	DeleteToken string `json:"delete_token"`
}

// handleRunSave is POST /api/runs/:key/save: the server stores the entry it built
// from the run's own record.
func (s *Server) handleRunSave(c echo.Context) error {
	key := c.Param("key")
	if !validRunKey(key) {
		return userError{http.StatusNotFound, "There is no run with this key."}
	}
	var req saveRunRequest
	body, err := io.ReadAll(c.Request().Body) // bounded by limitBody
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return s.errUploadTooLarge()
		}
		return badRequest("The request body could not be read.")
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return badRequest("The save request is not valid: send {\"title\": \"…\"} or nothing (the run's results come from the server).")
		}
	}
	e, err := s.runs.take(key, runOwner(c))
	if err != nil {
		return err
	}
	e.Title = req.Title
	rec, err := s.gallery.Save(c.Request().Context(), e)
	if err != nil {
		return err
	}
	s.log.Info("gallery entry saved", "slug", rec.Slug, "kind", e.Kind, "attack", e.Attack)
	origin := c.Scheme() + "://" + c.Request().Host
	res := &saveResponse{
		Slug:        rec.Slug,
		Permalink:   origin + "/g/" + rec.Slug,
		DeleteURL:   origin + "/g/" + rec.Slug + "/delete?" + url.Values{"token": {rec.DeleteToken}}.Encode(),
		DeleteToken: rec.DeleteToken,
	}
	s.runs.markSaved(key, res)
	c.Response().Header().Set("Location", res.Permalink)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, res)
}
