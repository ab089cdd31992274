package server

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// handleHealthz says the process is alive and serving HTTP.
func (s *Server) handleHealthz(c echo.Context) error {
	return c.String(http.StatusOK, "ok\n")
}

// readiness is /readyz's answer.
type readiness struct {
	Ready       bool `json:"ready"`
	Classifiers int  `json:"classifiers"`
	Models      int  `json:"models"`
	Problems    int  `json:"problems"`
}

// handleReadyz says whether the server takes work: models are loaded before the
// server is built, so it is ready until shutdown begins (then trackWork answers
// 503 for it). Model counts are reported for monitoring.
func (s *Server) handleReadyz(c echo.Context) error {
	r := readiness{Ready: !s.active.isClosed(), Classifiers: len(s.models.Classifiers()),
		Models: len(s.models.All()), Problems: len(s.models.Problems())}
	status := http.StatusOK
	if !r.Ready {
		status = http.StatusServiceUnavailable
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(status, r)
}
