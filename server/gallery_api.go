package server

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
)

// The gallery's JSON API. Entries are only ever made by the server from what it
// computed: a run or sweep is saved by its key (runs.go), never from a body the
// client wrote.

func badRequest(format string, args ...any) error {
	return userError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
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
