package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
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
