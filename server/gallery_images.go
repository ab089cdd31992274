package server

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/engine"
)

// Pictures a permalink draws from an entry's two stored images: the explorer's
// blue–white–red perturbation map at a chosen gain (engine.Grid.Perturbation, the
// one map everywhere), the distances measured between the images, and the preview
// card (gallery_card.go).

// storedPair is an entry's clean and adversarial image on their 256-level grid.
type storedPair struct {
	grid       engine.Grid
	clean, adv []uint8
	// eps is the entry's ε in levels: the map's full colour at gain 1.
	eps int
}

// loadPair reads and decodes e's stored images.
func (s *Server) loadPair(ctx context.Context, e *gallery.Entry) (*storedPair, error) {
	if e.OriginalSHA == "" || e.AdversarialSHA == "" {
		return nil, gallery.ErrNotFound
	}
	// Run entries hold images at a model's input size, but an operator may import
	// larger ones: the same bound as every file made per request.
	if err := checkGeneratedSize(e, "its perturbation map or preview card"); err != nil {
		return nil, err
	}
	orig, adv, err := s.gallery.Images(ctx, e)
	if err != nil {
		return nil, err
	}
	return decodePair(e, orig, adv)
}

func decodePair(e *gallery.Entry, orig, adv []byte) (*storedPair, error) {
	o, err := png.Decode(bytes.NewReader(orig))
	if err != nil {
		return nil, fmt.Errorf("entry %s: the stored original: %w", e.Slug, err)
	}
	a, err := png.Decode(bytes.NewReader(adv))
	if err != nil {
		return nil, fmt.Errorf("entry %s: the stored adversarial image: %w", e.Slug, err)
	}
	p := &storedPair{grid: engine.NewGrid(pictureContract(o)), eps: epsLevels(e)}
	if p.clean, err = p.grid.FromImage(o); err != nil {
		return nil, fmt.Errorf("entry %s: the stored original: %w", e.Slug, err)
	}
	if p.adv, err = p.grid.FromImage(a); err != nil {
		return nil, fmt.Errorf("entry %s: the stored adversarial image: %w", e.Slug, err)
	}
	return p, nil
}

// pictureContract is the grid of a stored picture: gray or RGB at its size. The
// levels are the picture's own, so the model's value range does not matter here.
func pictureContract(img image.Image) inference.InputContract {
	b := img.Bounds()
	c := inference.InputContract{Layout: "NCHW", Channels: 3, Color: "RGB", Width: b.Dx(), Height: b.Dy(), Range: [2]float64{0, 1}}
	switch img.ColorModel() {
	case color.GrayModel, color.Gray16Model:
		c.Channels, c.Color = 1, "gray"
	}
	return c
}

// epsLevels is e's ε in whole /255 levels (at least 1).
func epsLevels(e *gallery.Entry) int {
	v := e.Eps
	if e.EpsUnit == gallery.Unit1 {
		v *= 255
	}
	return max(1, int(math.Floor(v+1e-6)))
}

// perturbationMap draws the pair's map at gain.
func (p *storedPair) perturbationMap(gain float64) image.Image {
	return p.grid.Perturbation(p.adv, p.clean, p.eps, gain)
}

// measured are the L∞ (in levels) and L2 (in levels/255, i.e. on [0,1]) distances
// between the stored images.
func (p *storedPair) measured() (linf int, l2 float64) {
	return engine.LinfLevels(p.adv, p.clean), p.grid.L2(p.adv, p.clean)
}

// parseGain reads the map's ?gain= (empty: 1), bounded like the explorer's.
func parseGain(q string) (float64, error) {
	if q == "" {
		return 1, nil
	}
	g, err := strconv.ParseFloat(q, 64)
	if err != nil || math.IsNaN(g) || g < engine.MinGain || g > engine.MaxGain {
		return 0, badRequest("The perturbation gain must be a number from %g to %g, not %q.", engine.MinGain, engine.MaxGain, clipName(q))
	}
	return g, nil
}

// handlePerturbationMap is /g/:slug/perturbation.png?gain=G: the explorer's
// blue–white–red map of the entry's stored images.
func (s *Server) handlePerturbationMap(c echo.Context) error {
	gain, err := parseGain(c.QueryParam("gain"))
	if err != nil {
		return err
	}
	e, err := s.entryFromPath(c)
	if err != nil {
		return err
	}
	etag := `"map-` + e.AdversarialSHA[:min(16, len(e.AdversarialSHA))] + "-" + strconv.FormatFloat(gain, 'g', -1, 64) + `"`
	return s.servePicture(c, etag, func() ([]byte, error) {
		p, err := s.loadPair(c.Request().Context(), e)
		if err != nil {
			return nil, err
		}
		return engine.EncodePNG(p.perturbationMap(gain))
	})
}

// servePicture answers with a PNG drawn from an entry that never changes while it
// exists: cached for good under etag, drawn only when not revalidated.
func (s *Server) servePicture(c echo.Context, etag string, draw func() ([]byte, error)) error {
	h := c.Response().Header()
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", etag)
	if c.Request().Header.Get("If-None-Match") == etag {
		return c.NoContent(http.StatusNotModified)
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(http.StatusOK) // nothing is drawn for a HEAD
	}
	release, err := s.startGenerated(c) // drawn a few at a time, as downloads are made
	if err != nil {
		h.Del("Cache-Control")
		h.Del("ETag")
		return err
	}
	defer release()
	data, err := draw()
	if err != nil {
		h.Del("Cache-Control")
		h.Del("ETag")
		return err
	}
	return c.Blob(http.StatusOK, "image/png", data)
}
