package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/gallery/gallerytest"
)

// savedEntry saves a small generated run through the store, as the explorer's
// save would, and returns its slug.
func savedEntry(t *testing.T, f *fixture, w, h int) string {
	t.Helper()
	r, err := f.srv.gallery.Save(context.Background(), gallerytest.Run(7, gallerytest.Options{Width: w, Height: h, Models: []string{"cosine", "cosine-b"}}))
	if err != nil {
		t.Fatal(err)
	}
	return r.Slug
}

func do(t *testing.T, c *http.Client, method, url string, header http.Header, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(t, resp.Body)
}

// Point 6: every page and file answers HEAD as it answers GET, without a body
// (uptime checks use HEAD).
func TestHeadAnswersLikeGet(t *testing.T) {
	f := newExplorerFixture(t, nil)
	slug := savedEntry(t, f, 28, 28)
	e, err := f.srv.gallery.Get(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/healthz", "/readyz", "/models", "/gallery", "/attack", "/sweep", "/samples/digit-7-0.png",
		"/g/" + slug, "/g/" + slug + "/original.png", "/g/" + slug + "/export.zip", "/gallery/img/" + e.OriginalSHA + ".png",
		f.srv.assets.URL("app.css")} {
		get, getBody := do(t, client(t), http.MethodGet, f.ts.URL+path, nil, nil)
		head, headBody := do(t, client(t), http.MethodHead, f.ts.URL+path, nil, nil)
		if get.StatusCode != 200 || head.StatusCode != 200 || headBody != "" || getBody == "" {
			t.Errorf("%s: GET %d (%d bytes), HEAD %d (%d bytes)", path, get.StatusCode, len(getBody), head.StatusCode, len(headBody))
		}
		if g, h := get.Header.Get("Content-Type"), head.Header.Get("Content-Type"); g != h {
			t.Errorf("%s: Content-Type %q for GET, %q for HEAD", path, g, h)
		}
	}
}

// Point 11: a method an address does not take is a 405 naming the ones it does,
// not a CSRF refusal; an address that does not exist is a 404.
func TestWrongMethodsAreRefusedAsSuch(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodPut, "/", 405},
		{http.MethodDelete, "/", 405},
		{http.MethodPost, "/healthz", 405},
		{http.MethodPatch, "/classify", 405},
		{http.MethodPost, "/no/such/page", 404},
	} {
		resp, body := do(t, client(t), tc.method, f.ts.URL+tc.path, http.Header{"Accept": {"application/json"}}, strings.NewReader("x=1"))
		var e map[string]string
		json.Unmarshal([]byte(body), &e)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d %q, want %d", tc.method, tc.path, resp.StatusCode, e["error"], tc.status)
		}
		if tc.status == 405 && (!strings.Contains(e["error"], "does not accept that kind of request") || !strings.Contains(resp.Header.Get("Allow"), "GET")) {
			t.Errorf("%s %s: %q, Allow %q", tc.method, tc.path, e["error"], resp.Header.Get("Allow"))
		}
	}
}

// Point 7: a client's request id is used only when it is short and plain; any
// other gets a fresh id, and never reaches the log.
func TestRequestIDsAreShortAndPlain(t *testing.T) {
	f := newFixture(t, nil)
	huge := strings.Repeat("A", 600_000)
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"3f2a9c1e-7b44-4d0e-9a51-0c2b8f6d1e77", true},
		{"lb-01:req.42_x", true},
		{huge, false},
		{strings.Repeat("b", maxRequestIDLen+1), false},
		{"id with spaces", false},
		{`"><script>`, false},
	} {
		resp, _ := do(t, client(t), http.MethodGet, f.ts.URL+"/healthz", http.Header{"X-Request-Id": {tc.sent}}, nil)
		got := resp.Header.Get("X-Request-Id")
		if kept := got == tc.sent; kept != tc.kept || got == "" || len(got) > maxRequestIDLen {
			t.Errorf("sent %.40q (%d bytes): answered %q", tc.sent, len(tc.sent), got)
		}
	}
	if logs := f.logs.String(); strings.Contains(logs, huge[:1000]) || len(logs) > 100_000 {
		t.Fatalf("the log holds the client's long id (%d bytes of log)", len(logs))
	}
}

// Point 8: the CSRF cookie comes with HTML pages only, never with images,
// scripts, samples or downloads (some are cached for a year).
func TestCSRFCookieOnlyOnPages(t *testing.T) {
	f := newExplorerFixture(t, nil)
	slug := savedEntry(t, f, 28, 28)
	e, err := f.srv.gallery.Get(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	setsCookie := func(resp *http.Response) bool {
		for _, c := range resp.Cookies() {
			if c.Name == csrfCookie {
				return true
			}
		}
		return false
	}
	for _, path := range []string{"/", "/attack", "/gallery", "/g/" + slug, "/no/such/page"} {
		if resp, _ := do(t, client(t), http.MethodGet, f.ts.URL+path, nil, nil); !setsCookie(resp) {
			t.Errorf("the page %s (%d) sets no CSRF cookie", path, resp.StatusCode)
		}
	}
	for _, path := range []string{f.srv.assets.URL("app.js"), "/gallery/img/" + e.OriginalSHA + ".png", "/samples/digit-7-0.png",
		"/g/" + slug + "/perturbation.npy", "/g/" + slug + "/entry.json", "/healthz", "/readyz"} {
		if resp, _ := do(t, client(t), http.MethodGet, f.ts.URL+path, nil, nil); setsCookie(resp) || resp.StatusCode != 200 {
			t.Errorf("%s (%d) sets a CSRF cookie: %v", path, resp.StatusCode, resp.Header.Values("Set-Cookie"))
		}
	}
}

// Point 10: requests refused for CSRF use none of the address's upload allowance;
// valid uploads still do.
func TestCSRFRefusalsAreNotCountedAsUploads(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.UploadRate, c.UploadBurst = 0.01, 3 })
	s := newSession(t, f)
	seven := pngBytes(t, drawShape("7", 60, 60))
	for i := range 30 {
		h := http.Header{}
		if i%2 == 1 {
			h.Set("Sec-Fetch-Site", "cross-site")
		}
		resp := s.post("/api/classify", upload{file: seven, filename: "7.png", fields: map[string]string{"_csrf": ""}}, h)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("token-less POST %d: %d", i, resp.StatusCode)
		}
	}
	var statuses []int
	for range 4 {
		resp := s.post("/api/classify", upload{file: seven, filename: "7.png"}, http.Header{})
		statuses = append(statuses, resp.StatusCode)
	}
	if statuses[0] != 200 || statuses[1] != 200 || statuses[2] != 200 || statuses[3] != http.StatusTooManyRequests {
		t.Fatalf("valid uploads after 30 refused ones: %v, want 200 200 200 429", statuses)
	}
}

// Point 9: an animated WebP is unsupported media (415), said so; not "damaged".
func TestAnimatedWebPUploadIsUnsupported(t *testing.T) {
	f := newFixture(t, nil)
	s := newSession(t, f)
	anim, err := os.ReadFile(filepath.Join("..", "inference", "testdata", "gopher-doc.animated.webp"))
	if err != nil {
		t.Fatal(err)
	}
	st, msg, err := s.classifyStatus(anim, "anim.webp")
	if err != nil {
		t.Fatal(err)
	}
	if st != http.StatusUnsupportedMediaType || !strings.Contains(msg, "animated WebP") {
		t.Fatalf("animated WebP: %d %q, want 415 saying it is animated", st, msg)
	}
}
