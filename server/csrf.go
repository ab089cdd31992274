package server

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// Cross-site request forgery. A browser that sends Sec-Fetch-Site says where a
// request comes from: same-origin (or a typed address) passes, cross-site is
// refused. Otherwise a write must carry the token of the page it came from (the
// X-CSRF-Token header, or the form's _csrf field) matching the token cookie. The
// cookie is issued with HTML pages only: images, scripts and downloads, some
// cached for a year, never carry one.

const (
	csrfCookie   = "gibbon_csrf"
	csrfHeader   = echo.HeaderXCSRFToken
	csrfField    = "_csrf"
	csrfTokenLen = 43 // 32 random bytes, base64url without padding
	csrfLifetime = 24 * time.Hour
)

var errCrossSite = userError{http.StatusForbidden,
	"This request was refused: forms must be sent from Gibbon's own pages. Reload the page and try again."}

// csrfToken is the token for the page being rendered: the cookie's when it holds
// a well-formed one, else a new one; it is set as the cookie again, so a page in
// use keeps it alive.
func (s *Server) csrfToken(c echo.Context) string {
	var token string
	if k, err := c.Cookie(csrfCookie); err == nil && wellFormedToken(k.Value) {
		token = k.Value
	} else {
		var b [32]byte
		rand.Read(b[:])
		token = base64.RawURLEncoding.EncodeToString(b[:])
	}
	c.SetCookie(&http.Cookie{Name: csrfCookie, Value: token, Path: "/", Expires: time.Now().Add(csrfLifetime),
		HttpOnly: true, Secure: c.Request().TLS != nil, SameSite: http.SameSiteStrictMode})
	c.Response().Header().Add(echo.HeaderVary, echo.HeaderCookie)
	return token
}

func wellFormedToken(t string) bool { return len(t) == csrfTokenLen && plainText(t, "-_") }

// plainText is true when s holds only ASCII letters, digits and the bytes of extra.
func plainText(s, extra string) bool {
	for i := range len(s) {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// checkCSRF passes a write from this site's pages, and refuses any other with a
// sentence saying what to do. A multipart form must already be parsed.
func checkCSRF(c echo.Context) error {
	req := c.Request()
	switch req.Header.Get(echo.HeaderSecFetchSite) {
	case "same-origin", "none":
		return nil
	case "cross-site":
		return errCrossSite
	}
	k, err := c.Cookie(csrfCookie)
	if err != nil || !wellFormedToken(k.Value) {
		return errCSRF
	}
	sent := req.Header.Get(csrfHeader)
	if sent == "" {
		sent = req.FormValue(csrfField)
	}
	if subtle.ConstantTimeCompare([]byte(sent), []byte(k.Value)) != 1 {
		return errCSRF
	}
	return nil
}
