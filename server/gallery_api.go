package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
)

// saveRequest is POST /api/gallery's body: a gallery.Entry as JSON, with the two
// images as base64 PNG (or data:image/png;base64 URLs). The server fills in
// Gibbon's version and the time, and checks each model against the ones it serves.
type saveRequest struct {
	entryFields
	Title          string                      `json:"title"`
	Steps          []gallery.Step              `json:"steps"`
	Predictions    []gallery.DefencePrediction `json:"predictions"`
	Payload        json.RawMessage             `json:"payload"`
	OriginalPNG    string                      `json:"original_png"`
	AdversarialPNG string                      `json:"adversarial_png"`
}

// entryFields are the fields of a gallery entry that every draft (a run's, a
// sweep's) and a save request have, with the same JSON names.
type entryFields struct {
	Kind    gallery.Kind       `json:"kind"`
	Models  []gallery.ModelRef `json:"models"`
	Attack  string             `json:"attack"`
	Params  json.RawMessage    `json:"params"`
	Seed    int64              `json:"seed"`
	Eps     float64            `json:"eps"`
	EpsUnit string             `json:"eps_unit"`
	LInf    float64            `json:"linf"`
	Timings map[string]float64 `json:"timings_ms"`
}

// fieldsOf is e's entryFields.
func fieldsOf(e *gallery.Entry) entryFields {
	return entryFields{Kind: e.Kind, Models: e.Models, Attack: e.Attack, Params: e.Params, Seed: e.Seed,
		Eps: e.Eps, EpsUnit: e.EpsUnit, LInf: e.LInf, Timings: e.Timings}
}

// saveResponse tells the saver where the entry lives and how to delete it.
type saveResponse struct {
	Slug        string `json:"slug"`
	Permalink   string `json:"permalink"`
	DeleteURL   string `json:"delete_url"`
	DeleteToken string `json:"delete_token"`
}

func badRequest(format string, args ...any) error {
	return userError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// handleGallerySave is POST /api/gallery.
func (s *Server) handleGallerySave(c echo.Context) error {
	body, err := io.ReadAll(c.Request().Body) // bounded by limitBody
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return s.errUploadTooLarge()
		}
		return badRequest("The request body could not be read.")
	}
	var req saveRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRequest("The entry is not valid JSON for the gallery: %v.", err)
	}
	if dec.More() {
		return badRequest("The entry is not valid JSON for the gallery: more than one value.")
	}
	e := &gallery.Entry{
		Kind: req.Kind, Title: req.Title, GibbonVersion: Version(), Models: req.Models, Attack: req.Attack,
		Params: req.Params, Seed: req.Seed, Eps: req.Eps, EpsUnit: req.EpsUnit, LInf: req.LInf, Steps: req.Steps,
		Predictions: req.Predictions, Timings: req.Timings, Payload: req.Payload,
	}
	if e.Original, err = decodeImageField("original_png", req.OriginalPNG); err != nil {
		return err
	}
	if e.Adversarial, err = decodeImageField("adversarial_png", req.AdversarialPNG); err != nil {
		return err
	}
	if err := s.checkModels(e.Models); err != nil {
		return err
	}
	rec, err := s.gallery.Save(c.Request().Context(), e)
	if err != nil {
		return err
	}
	s.log.Info("gallery entry saved", "slug", rec.Slug, "kind", e.Kind, "attack", e.Attack)
	origin := c.Scheme() + "://" + c.Request().Host
	res := saveResponse{
		Slug:        rec.Slug,
		Permalink:   origin + "/g/" + rec.Slug,
		DeleteURL:   origin + "/g/" + rec.Slug + "/delete?" + url.Values{"token": {rec.DeleteToken}}.Encode(),
		DeleteToken: rec.DeleteToken,
	}
	c.Response().Header().Set("Location", res.Permalink)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, res)
}

// decodeImageField reads base64 PNG bytes, with or without a data: URL prefix.
func decodeImageField(field, v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	if rest, ok := strings.CutPrefix(v, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		if !ok || meta != "image/png;base64" {
			return nil, badRequest("%s: want a PNG as base64 or a data:image/png;base64 URL.", field)
		}
		v = data
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return nil, badRequest("%s: not valid base64.", field)
	}
	return b, nil
}

// checkModels makes the saved provenance trustworthy: every model must be one
// this server serves, and its checksum is the verified one from the manifest.
func (s *Server) checkModels(refs []gallery.ModelRef) error {
	served := map[string]string{}
	for _, m := range s.models.All() {
		served[m.Name] = strings.ToLower(m.SHA256)
	}
	for i := range refs {
		sha, ok := served[refs[i].Name]
		if !ok {
			return badRequest("Model %q is not one this server serves, so the gallery cannot vouch for it.", clipName(refs[i].Name))
		}
		if refs[i].SHA256 == "" {
			refs[i].SHA256 = sha
		} else if strings.ToLower(refs[i].SHA256) != sha {
			return badRequest("Model %q: the sha256 given is not the checksum of the model this server serves.", refs[i].Name)
		}
	}
	return nil
}

func clipName(s string) string {
	if r := []rune(s); len(r) > 60 {
		return string(r[:60]) + "…"
	}
	return s
}

// handleGalleryDeleteAPI is DELETE /api/gallery/:slug with the token in the
// X-Delete-Token header (or ?token=).
func (s *Server) handleGalleryDeleteAPI(c echo.Context) error {
	slug := c.Param("slug")
	if !gallery.ValidSlug(slug) {
		return gallery.ErrNotFound
	}
	token := c.Request().Header.Get("X-Delete-Token")
	if token == "" {
		token = c.QueryParam("token")
	}
	if err := s.gallery.Delete(c.Request().Context(), slug, token); err != nil {
		return err
	}
	s.log.Info("gallery entry deleted", "slug", slug)
	return c.NoContent(http.StatusNoContent)
}
