package server

import (
	"context"
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
	"golang.org/x/time/rate"
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

// csrfContextKey is where the CSRF middleware leaves the token for templates.
const csrfContextKey = "csrf"

// useMiddleware installs what every request goes through, outermost first:
//  1. security headers, so every response (errors included) carries them;
//  2. work tracking: refuses requests once shutdown begins, and ties each
//     request's context to the server's work context so shutdown cancels it;
//  3. request id and the request log, which also turns a returned error into
//     its response (the error handler) so the log has the final status;
//  4. panic recovery (a panic becomes a logged 500);
//  5. the upload rate limit (POSTs, per client), before any body is read;
//  6. the body limit: a body is cut off while being read, and a multipart form
//     is parsed here, so a too-large upload gets its own 413;
//  7. CSRF (Sec-Fetch-Site for browsers, else a token from the cookie).
func (s *Server) useMiddleware() {
	e := s.echo
	e.Use(s.securityHeaders)
	e.Use(s.trackWork)
	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{}))
	e.Use(s.logRequests)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisablePrintStack: true,
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			return fmt.Errorf("panic: %w\n%s", err, stack)
		},
	}))
	e.Use(middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Skipper: func(c echo.Context) bool { return !isWrite(c.Request().Method) },
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: rate.Limit(s.cfg.UploadRate), Burst: s.cfg.UploadBurst, ExpiresIn: 5 * time.Minute,
		}),
		IdentifierExtractor: func(c echo.Context) (string, error) { return c.RealIP(), nil },
		DenyHandler: func(c echo.Context, _ string, _ error) error {
			wait := int(math.Ceil(1 / s.cfg.UploadRate))
			c.Response().Header().Set("Retry-After", strconv.Itoa(max(1, wait)))
			return errRateLimited
		},
	}))
	e.Use(s.limitBody)
	e.Use(middleware.CSRFWithConfig(middleware.CSRFConfig{
		TokenLookup:    "header:" + echo.HeaderXCSRFToken + ",form:_csrf",
		ContextKey:     csrfContextKey,
		CookieName:     "gibbon_csrf",
		CookiePath:     "/",
		CookieHTTPOnly: true,
		CookieSameSite: http.SameSiteStrictMode,
		ErrorHandler:   func(error, echo.Context) error { return errCSRF },
	}))
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

func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if !isWrite(req.Method) {
			return next(c)
		}
		limit := s.cfg.MaxUploadBytes + formOverhead
		if req.ContentLength > limit {
			return s.errUploadTooLarge()
		}
		req.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
		if mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType)); mt == echo.MIMEMultipartForm {
			// Everything fits in memory: the body is at most limit bytes.
			if err := req.ParseMultipartForm(limit); err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					return s.errUploadTooLarge()
				}
				return userError{http.StatusBadRequest, "The upload could not be read: the form data is malformed. Try again from the page."}
			}
		}
		return next(c)
	}
}
