package server

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
)

// handleGalleryImage serves a stored PNG by its SHA-256: the address is the
// content, so browsers may keep it for a year.
func (s *Server) handleGalleryImage(c echo.Context) error {
	sha, ok := strings.CutSuffix(c.Param("file"), ".png")
	if !ok || !gallery.ValidSHA(sha) {
		return gallery.ErrNotFound
	}
	etag := `"` + sha + `"`
	h := c.Response().Header()
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", etag)
	if c.Request().Header.Get("If-None-Match") == etag {
		return c.NoContent(http.StatusNotModified)
	}
	data, err := s.gallery.Image(c.Request().Context(), sha)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "image/png", data)
}

// handleGalleryFile serves one entry's exports: original.png, adversarial.png,
// perturbation.npy, entry.json and export.zip (the perturbation map and the
// preview card are drawn in gallery_images.go and gallery_card.go).
func (s *Server) handleGalleryFile(c echo.Context) error {
	file := c.Param("file")
	switch file {
	case "original.png", "adversarial.png", "perturbation.npy", "entry.json", "export.zip":
	default:
		return gallery.ErrNotFound
	}
	e, err := s.entryFromPath(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	// An entry never changes while it exists; a deleted one answers 404.
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	attach := func(ctype string) {
		c.Response().Header().Set("Content-Disposition",
			mime.FormatMediaType("attachment", map[string]string{"filename": "gibbon-" + e.Slug + "-" + file}))
		c.Response().Header().Set(echo.HeaderContentType, ctype)
	}
	switch file {
	case "entry.json":
		body, err := json.MarshalIndent(e, "", "  ")
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, append(body, '\n'))
	case "original.png", "adversarial.png":
		sha := e.OriginalSHA
		if file == "adversarial.png" {
			sha = e.AdversarialSHA
		}
		if sha == "" {
			return gallery.ErrNotFound
		}
		data, err := s.gallery.Image(ctx, sha)
		if err != nil {
			return err
		}
		return c.Blob(http.StatusOK, "image/png", data)
	}
	orig, adv, err := s.gallery.Images(ctx, e)
	if err != nil {
		return err
	}
	if file == "export.zip" {
		var buf bytes.Buffer
		if err := gallery.WriteZip(&buf, e, orig, adv); err != nil {
			return err
		}
		attach("application/zip")
		return c.Blob(http.StatusOK, "application/zip", buf.Bytes())
	}
	if orig == nil || adv == nil {
		return gallery.ErrNotFound
	}
	p, err := gallery.NewPerturbation(orig, adv)
	if err != nil {
		return err
	}
	attach("application/octet-stream")
	return c.Blob(http.StatusOK, "application/octet-stream", p.NPY())
}
