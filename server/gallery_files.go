package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/engine"
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
	return s.serveGenerated(c, e, file)
}

// generatedTypes are the files made per request, and their content types.
var generatedTypes = map[string]string{
	"perturbation.png": "image/png",
	"perturbation.npy": "application/octet-stream",
	"export.zip":       "application/zip",
}

// serveGenerated makes file from e's images, writing it as it is made.
func (s *Server) serveGenerated(c echo.Context, e *gallery.Entry, file string) error {
	if err := checkGeneratedSize(e, file); err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, generatedTypes[file])
	if file != "perturbation.png" {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "gibbon-" + e.Slug + "-" + file}))
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(http.StatusOK) // nothing is made for a HEAD
	}
	release, err := s.startGenerated(c)
	if err != nil {
		return err
	}
	defer release()
	orig, adv, err := s.gallery.Images(c.Request().Context(), e)
	if err != nil {
		return err
	}
	if file == "export.zip" {
		// The perturbation picture is the explorer's map, at gain 1.
		var pert []byte
		if orig != nil && adv != nil {
			pair, err := decodePair(e, orig, adv)
			if err != nil {
				return err
			}
			if pert, err = engine.EncodePNG(pair.perturbationMap(1)); err != nil {
				return err
			}
		}
		c.Response().WriteHeader(http.StatusOK)
		if err := gallery.WriteZip(c.Response(), e, orig, adv, pert); err != nil {
			s.log.Warn("gallery: export cut short", "slug", e.Slug, "err", err)
		}
		return nil
	}
	if orig == nil || adv == nil {
		return gallery.ErrNotFound
	}
	p, err := gallery.NewPerturbation(orig, adv)
	if err != nil {
		return err
	}
	h.Set(echo.HeaderContentLength, strconv.FormatInt(p.NPYSize(), 10))
	c.Response().WriteHeader(http.StatusOK)
	if err := p.WriteNPY(c.Response()); err != nil {
		s.log.Warn("gallery: download cut short", "slug", e.Slug, "file", file, "err", err)
	}
	return nil
}

// Files computed per request from an entry's images (perturbation.png and .npy,
// export.zip) are bounded: by the images' size, checked from the record before
// any work, and by how many are made at once; they are written as they are
// made, within a deadline, so a client that stops reading frees its place.
const (
	// maxGeneratedPixels bounds the images a generated file is made from: the two
	// decoded images and the float perturbation take about 24 bytes a pixel.
	maxGeneratedPixels = 2048 * 2048
	maxGenerating      = 2
	maxGeneratingWait  = 8
	generatedWriteWait = time.Minute
)

var errDownloadsBusy = userError{http.StatusServiceUnavailable,
	"Too many downloads are being prepared right now. Try again in a few seconds."}

// checkGeneratedSize refuses to make file from images over maxGeneratedPixels.
func checkGeneratedSize(e *gallery.Entry, file string) error {
	if n := int64(e.Width) * int64(e.Height); n > maxGeneratedPixels {
		return userError{http.StatusUnprocessableEntity, fmt.Sprintf(
			"This entry's images are %d×%d pixels; %s is made only for images up to %s. Download original.png and adversarial.png instead.",
			e.Width, e.Height, file, inference.FormatMegapixels(maxGeneratedPixels))}
	}
	return nil
}

// startGenerated waits for a place among the downloads being made and sets the
// write deadline.
func (s *Server) startGenerated(c echo.Context) (release func(), err error) {
	release, err = s.downloads.acquire(c.Request().Context(), 1)
	if errors.Is(err, errGateFull) {
		return nil, errDownloadsBusy
	} else if err != nil {
		return nil, err
	}
	http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(generatedWriteWait))
	return release, nil
}
