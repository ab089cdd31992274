package server

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/png"
	"sync"

	"github.com/a-h/templ"
	"github.com/labstack/echo/v4"

	"gibbon/views"
)

// render writes a component as a whole HTML response; it renders into a buffer
// first, so a template error becomes a clean 500 instead of half a page.
func (s *Server) render(c echo.Context, status int, comp templ.Component) error {
	var buf bytes.Buffer
	if err := comp.Render(c.Request().Context(), &buf); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(status, buf.Bytes())
}

// page is the layout data for a page; current is the menu entry to highlight.
func (s *Server) page(c echo.Context, title, current string) views.Page {
	nav := make([]views.NavItem, len(s.nav))
	copy(nav, s.nav)
	for i := range nav {
		nav[i].Current = nav[i].Href == current
	}
	token := s.csrfToken(c)
	return views.Page{
		Title: title,
		Nav:   nav,
		CSS:   s.assets.URL("app.css"),
		JS:    s.assets.URL("app.js"),
		Icon:  s.assets.URL("favicon.svg"),
		CSRF:  token,
	}
}

// dataURLBuffers reuses the PNG encoder's compressor state (about 1 MB each) across
// requests; a pool holds no program state, only spare memory.
var dataURLBuffers dataURLPool

type dataURLPool struct{ p sync.Pool }

func (p *dataURLPool) Get() *png.EncoderBuffer {
	b, _ := p.p.Get().(*png.EncoderBuffer)
	return b
}

func (p *dataURLPool) Put(b *png.EncoderBuffer) { p.p.Put(b) }

// pngDataURL encodes an image as a data: URL (small images only: inputs, thumbnails).
func pngDataURL(img image.Image) (string, error) {
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &dataURLBuffers}
	if err := enc.Encode(&buf, img); err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}
