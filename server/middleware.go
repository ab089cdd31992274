package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// contentSecurityPolicy allows only this origin's scripts, styles and fetches:
// no inline script or style (pages keep all of it in static/), images from this
// origin or data: URLs (the preprocessed inputs), forms posting only here, no
// framing. connect-src 'self' covers same-origin websockets too.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// formOverhead is what a multipart form may add to the file it carries (boundaries,
// headers, the CSRF token) before the body counts as too large.
const formOverhead = 64 << 10

// useMiddleware installs what every request goes through, outermost first:
//  1. security headers, so every response (errors included) carries them;
//  2. work tracking: refuses requests once shutdown begins, and ties each
//     request's context to the server's work context so shutdown cancels it;
//  3. request id (a client's own only when short and plain) and the request log,
//     which also turns a returned error into its response (the error handler) so
//     the log has the final status;
//  4. panic recovery (a panic becomes a logged 500);
//  5. the guard on writes to routed endpoints (a write to an address that takes
//     none gets its 404 or 405 untouched): the upload rate per client, looked at
//     before the body is read; the body limit, which parses a multipart form so a
//     too-large upload gets its own 413; CSRF; and only then the upload counted.
func (s *Server) useMiddleware() {
	e := s.echo
	e.Use(s.securityHeaders)
	e.Use(s.trackWork)
	e.Use(s.requestID)
	e.Use(s.logRequests)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisablePrintStack: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			return fmt.Errorf("panic: %w\n%s", err, stack)
		},
	}))
	e.Use(s.guardWrites)
}

func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

func (s *Server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		return next(c)
	}
}

func (s *Server) trackWork(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.active.enter() {
			c.Response().Header().Set("Connection", "close")
			return errShuttingDown
		}
		defer s.active.leave()
		ctx, cancel := context.WithCancel(c.Request().Context())
		defer cancel()
		stop := context.AfterFunc(s.work, cancel)
		defer stop()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

func (s *Server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // writes the response, so the status below is final
		}
		req, res := c.Request(), c.Response()
		attrs := []slog.Attr{
			slog.String("method", req.Method),
			slog.String("path", req.URL.Path),
			slog.Int("status", res.Status),
			slog.Float64("ms", float64(time.Since(start).Microseconds())/1000),
			slog.Int64("bytes", res.Size),
			slog.String("client", c.RealIP()),
			slog.String("id", res.Header().Get(echo.HeaderXRequestID)),
		}
		if err == nil {
			if e, ok := c.Get(handledErrKey).(error); ok {
				err = e
			}
		}
		if err != nil {
			attrs = append(attrs, slog.String("err", err.Error()))
		}
		level := slog.LevelInfo
		if res.Status >= 500 {
			level = slog.LevelError
		}
		s.log.LogAttrs(req.Context(), level, "request", attrs...)
		return nil
	}
}

// handledErrKey holds an error a handler answered itself (e.g. a bad upload shown
// on the page), so the request log still records it.
const handledErrKey = "gibbon.handled_error"

func (s *Server) guardWrites(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if !isWrite(req.Method) || !s.routed(c) {
			return next(c)
		}
		client := c.RealIP()
		if !s.rates.allowed(client) {
			return s.errRateLimited(c)
		}
		if err := s.limitBody(c); err != nil {
			return err
		}
		if err := checkCSRF(c); err != nil {
			return err
		}
		if !s.rates.take(client) {
			return s.errRateLimited(c)
		}
		return next(c)
	}
}

// errRateLimited answers a client over its upload rate, saying when to retry.
func (s *Server) errRateLimited(c echo.Context) error {
	wait := int(math.Ceil(1 / s.cfg.UploadRate))
	c.Response().Header().Set("Retry-After", strconv.Itoa(max(1, wait)))
	return errRateLimited
}

// limitBody cuts the body off at the upload limit while it is read, and parses a
// multipart form (into memory: it is at most the limit).
func (s *Server) limitBody(c echo.Context) error {
	req := c.Request()
	limit := s.cfg.MaxUploadBytes + formOverhead
	if req.ContentLength > limit {
		return s.errUploadTooLarge()
	}
	req.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
	if mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType)); mt == echo.MIMEMultipartForm {
		if err := req.ParseMultipartForm(limit); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return s.errUploadTooLarge()
			}
			return userError{http.StatusBadRequest, "The upload could not be read: the form data is malformed. Try again from the page."}
		}
	}
	return nil
}

// requestID names the request in the log and the X-Request-Id response header:
// the client's id when it is short and plain (a proxy's), else a fresh one, so a
// client cannot put what it likes into the log.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID(id) {
			id = rand.Text()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

// maxRequestIDLen bounds a client's request id (a UUID is 36 characters).
const maxRequestIDLen = 64

func validRequestID(id string) bool {
	return id != "" && len(id) <= maxRequestIDLen && plainText(id, "-_.:")
}
