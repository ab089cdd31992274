package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/views"
)

// userError is a mistake in a request, with the status and the sentence to show.
type userError struct {
	status int
	msg    string
}

func (e userError) Error() string { return e.msg }

var (
	errShuttingDown = userError{http.StatusServiceUnavailable, "The server is shutting down. Try again in a moment."}
	errRateLimited  = userError{http.StatusTooManyRequests, "Too many uploads from your address: wait a few seconds and try again."}
	errCSRF         = userError{http.StatusForbidden, "This form has expired or was sent from another site. Reload the page and try again."}
	errNoInput      = userError{http.StatusBadRequest, "Choose an image file, draw a digit or pick a sample first."}
)

func (s *Server) errUploadTooLarge() error {
	return userError{http.StatusRequestEntityTooLarge,
		fmt.Sprintf("The file is larger than the %s upload limit. Choose a smaller image.", formatBytes(s.cfg.MaxUploadBytes))}
}

// formatBytes writes a byte count in decimal units, e.g. "10.0 MB".
func formatBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d bytes", n)
}

// statusFor maps an error to its status code and the sentence people see. This
// is the one place domain errors meet HTTP. Anything unknown is a 500 whose
// details stay in the log.
func statusFor(err error) (int, string) {
	var ue userError
	var ie *inference.ImageError
	var he *echo.HTTPError
	var ge *gallery.ValidationError
	var pe *engine.InvalidError
	var me *engine.MissingModelError
	switch {
	case errors.As(err, &ue):
		return ue.status, ue.msg
	case errors.As(err, &pe):
		return http.StatusBadRequest, pe.Msg
	case errors.As(err, &me):
		return http.StatusConflict, upperFirst(me.Error()) + "."
	case errors.Is(err, gallery.ErrNotFound):
		return http.StatusNotFound, "There is no gallery entry at this address. It may have been deleted."
	case errors.Is(err, gallery.ErrForbidden):
		return http.StatusForbidden, "This delete link does not belong to this entry: check that it was copied whole."
	case errors.As(err, &ge):
		// "title: longer than …": the field, then what is wrong with it.
		msg := upperFirst(ge.Error()) + "."
		if errors.Is(err, gallery.ErrTooLarge) {
			return http.StatusRequestEntityTooLarge, msg
		}
		return http.StatusBadRequest, msg
	case errors.As(err, &ie):
		switch {
		case errors.Is(err, inference.ErrUnsupportedImage):
			return http.StatusUnsupportedMediaType, ie.Msg
		case errors.Is(err, inference.ErrImageTooLarge):
			return http.StatusRequestEntityTooLarge, ie.Msg
		}
		return http.StatusUnprocessableEntity, ie.Msg // damaged or blank
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "The work was stopped before it finished (the server is shutting down, or the request was cancelled). Try again."
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			return he.Code, "There is no page at this address."
		case http.StatusMethodNotAllowed:
			return he.Code, "This address does not accept that kind of request."
		case http.StatusForbidden:
			return he.Code, "This request was refused: forms must be sent from Gibbon's own pages. Reload the page and try again."
		case http.StatusRequestEntityTooLarge:
			return he.Code, "The request is too large."
		}
		if he.Code < 500 {
			return he.Code, http.StatusText(he.Code) + "."
		}
	}
	return http.StatusInternalServerError, "Something went wrong on the server. It has been logged; try again, or try another image."
}

// upperFirst capitalises a sentence's first letter when it is a-z. It works on
// the first rune, never on a byte: a message may begin with a symbol such as
// "ε", which keeps its case (Ε is another letter) and its bytes.
func upperFirst(s string) string {
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		return string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

// wantsJSON is true for API paths and for clients that ask for JSON.
func wantsJSON(c echo.Context) bool {
	if strings.HasPrefix(c.Request().URL.Path, "/api/") {
		return true
	}
	accept := c.Request().Header.Get(echo.HeaderAccept)
	return strings.Contains(accept, echo.MIMEApplicationJSON) && !strings.Contains(accept, echo.MIMETextHTML)
}

// handleError is Echo's error handler: JSON {"error": ...} for the API, an error
// page for people.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, msg := statusFor(err)
	if status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "5")
	}
	var rerr error
	switch {
	case c.Request().Method == http.MethodHead:
		rerr = c.NoContent(status)
	case wantsJSON(c):
		rerr = c.JSON(status, map[string]string{"error": msg})
	default:
		heading := http.StatusText(status)
		if heading == "" {
			heading = "Error"
		}
		rerr = s.render(c, status, views.Error(views.ErrorPage{Page: s.page(c, heading, ""), Status: status, Heading: heading, Message: msg}))
	}
	if rerr != nil {
		s.log.Error("writing an error response failed", "err", rerr, "status", status)
	}
}
