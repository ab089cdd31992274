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

// runBooker is the run book: runs by key, their entries once they end. open and
// close never fail (a run that could not be booked cannot be saved, and take says
// so); take claims a run for saving, release gives it back when the save failed.
type runBooker interface {
	open(owner string) string
	close(key string, e *gallery.Entry, why string)
	take(key, owner string) (*gallery.Entry, error)
	release(key string)
	markSaved(key string, res *saveResponse)
}

// bookedRun is one run: who ran it, and once it ended, its entry. Its fields are
// exported so that a shared run book can store it (gob).
type bookedRun struct {
	Owner  string
	Ended  time.Time
	Done   bool
	Entry  *gallery.Entry // nil: the run ended without a result
	Why    string         // why there is no entry
	Saving bool           // a save has claimed it
	Saved  *saveResponse
}

// saveable says why owner cannot save run r (nil when it can).
func (r *bookedRun) saveable(owner string) error {
	switch {
	case r == nil:
		return userError{http.StatusNotFound, "There is no run with this key: a run can be saved for an hour after it ends, from the page that ran it."}
	case r.Owner != owner:
		return userError{http.StatusForbidden, "This run was made on another page: it can only be saved from there."}
	case !r.Done:
		return userError{http.StatusConflict, "The run is still going: save it once it has ended."}
	case r.Saved != nil:
		return userError{http.StatusConflict, "This run is saved already, at " + r.Saved.Permalink + "."}
	case r.Saving:
		return userError{http.StatusConflict, "This run is being saved right now."}
	case r.Entry == nil:
		return userError{http.StatusConflict, "This run cannot be saved: " + r.Why}
	}
	return nil
}

// newRunKey is a run's key: 32 hex digits (validRunKey).
func newRunKey() string {
	var raw [16]byte
	rand.Read(raw[:])
	return hex.EncodeToString(raw[:])
}

// runBook holds recent runs' entries by key in this process, bounded in number
// and age.
type runBook struct {
	mu    sync.Mutex
	runs  map[string]*bookedRun
	order []string // oldest first
	max   int
	ttl   time.Duration
	now   func() time.Time
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
	key := newRunKey()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked()
	for len(b.order) >= b.max {
		delete(b.runs, b.order[0])
		b.order = b.order[1:]
	}
	b.runs[key] = &bookedRun{Owner: owner}
	b.order = append(b.order, key)
	return key
}

// close records how a run ended: its entry, or why it has none.
func (b *runBook) close(key string, e *gallery.Entry, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.runs[key]; r != nil {
		r.Done, r.Entry, r.Why, r.Ended = true, e, why, b.now()
	}
}

func (b *runBook) expireLocked() {
	cut := b.now().Add(-b.ttl)
	for len(b.order) > 0 {
		r := b.runs[b.order[0]]
		if r != nil && (!r.Done || r.Ended.After(cut)) {
			break
		}
		delete(b.runs, b.order[0])
		b.order = b.order[1:]
	}
}

// take claims owner's finished, unsaved run and returns a copy of its entry;
// errors say why a run cannot be saved.
func (b *runBook) take(key, owner string) (*gallery.Entry, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireLocked()
	r := b.runs[key]
	if err := r.saveable(owner); err != nil {
		return nil, err
	}
	r.Saving = true
	e := *r.Entry
	return &e, nil
}

// release gives a claimed run back after a failed save.
func (b *runBook) release(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.runs[key]; r != nil {
		r.Saving = false
	}
}

// markSaved marks a run as saved.
func (b *runBook) markSaved(key string, res *saveResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.runs[key]; r != nil {
		r.Saved, r.Saving = res, false
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
		s.runs.release(key)
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
