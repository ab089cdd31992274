package server

import (
	"bytes"
	"encoding/json"
	"image"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"gibbon/views"
)

// upload is one multipart form: fields and an optional file under "image".
type upload struct {
	fields   map[string]string
	file     []byte
	filename string
}

func (u upload) encode(t testing.TB) (*bytes.Buffer, string) {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for k, v := range u.fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if u.file != nil || u.filename != "" {
		part, err := w.CreateFormFile("image", u.filename)
		if err != nil {
			t.Fatal(err)
		}
		part.Write(u.file)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &body, w.FormDataContentType()
}

// session is a browser-less visitor: it loads the home page for the CSRF cookie
// and token, as a browser without Sec-Fetch-Site would.
type session struct {
	t     testing.TB
	f     *fixture
	c     *http.Client
	token string
}

func newSession(t testing.TB, f *fixture) *session {
	t.Helper()
	s := &session{t: t, f: f, c: client(t)}
	resp, err := s.c.Get(f.ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	s.token, _ = doc.Find(`#upload-form input[name="_csrf"]`).Attr("value")
	if s.token == "" {
		t.Fatal("the upload form has no CSRF token")
	}
	return s
}

func (s *session) post(path string, u upload, header http.Header) *http.Response {
	s.t.Helper()
	if u.fields == nil {
		u.fields = map[string]string{}
	}
	if _, ok := u.fields["_csrf"]; !ok && header.Get("X-CSRF-Token") == "" && header.Get("Sec-Fetch-Site") == "" {
		u.fields["_csrf"] = s.token
	}
	body, ctype := u.encode(s.t)
	req, err := http.NewRequest(http.MethodPost, s.f.ts.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := s.c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func doc(t testing.TB, resp *http.Response) *goquery.Document {
	t.Helper()
	d, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func decodeResult(t testing.TB, resp *http.Response) views.Result {
	t.Helper()
	var r views.Result
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestHomePage(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Get(f.ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	d := doc(t, resp)
	if got := d.Find("title").Text(); got != "Classify · Gibbon" {
		t.Errorf("title %q", got)
	}
	var nav []string
	d.Find(`[data-testid="nav-link"]`).Each(func(_ int, s *goquery.Selection) { nav = append(nav, s.Text()) })
	if strings.Join(nav, ",") != "Classify,Models" {
		t.Errorf("nav %v: only routed pages belong in the menu", nav)
	}
	if cur, _ := d.Find(`[data-testid="nav-link"][aria-current="page"]`).Attr("href"); cur != "/" {
		t.Errorf("current menu entry %q", cur)
	}
	form := d.Find(`[data-testid="upload-form"]`)
	if m, _ := form.Attr("method"); m != "post" {
		t.Errorf("upload form method %q", m)
	}
	if e, _ := form.Attr("enctype"); e != "multipart/form-data" {
		t.Errorf("upload form enctype %q", e)
	}
	if a, _ := form.Find(`[data-testid="upload-input"]`).Attr("accept"); a != "image/png,image/jpeg,image/gif,image/webp" {
		t.Errorf("accept %q", a)
	}
	if hint := form.Find(".hint").Text(); !strings.Contains(hint, "10.0 MB") || !strings.Contains(hint, "40.0 MP") {
		t.Errorf("limits hint %q", hint)
	}
	if _, hidden := d.Find(`[data-testid="draw-panel"]`).Attr("hidden"); !hidden {
		t.Error("the drawing pad needs JavaScript and must start hidden")
	}
	var samples []string
	d.Find(`[data-testid="sample"]`).Each(func(_ int, s *goquery.Selection) {
		v, _ := s.Attr("value")
		samples = append(samples, v)
	})
	if strings.Join(samples, ",") != "digit-0-0.png,digit-1-0.png,digit-7-0.png,digit-0-1.png" {
		t.Errorf("samples %v: first of each label, then the rest", samples)
	}
	if d.Find(`[data-testid="results-empty"]`).Length() != 1 {
		t.Error("no results placeholder")
	}
	if got := d.Find(`[data-testid="model-problems"]`).Text(); !strings.Contains(got, "1 model(s) could not be loaded") {
		t.Errorf("load problem notice %q", got)
	}
	if got := d.Find(`[data-testid="error"]`).Text(); strings.TrimSpace(got) != "" {
		t.Errorf("error box not empty: %q", got)
	}
}

func TestPagesSatisfyTheirContentSecurityPolicy(t *testing.T) {
	f := newFixture(t, nil)
	s := newSession(t, f)
	pages := map[string]*http.Response{}
	for _, p := range []string{"/", "/models", "/nope"} {
		resp, err := s.c.Get(f.ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		pages[p] = resp
	}
	pages["POST /classify"] = s.post("/classify", upload{file: pngBytes(t, drawShape("7", 120, 120)), filename: "7.png"}, http.Header{})
	for name, resp := range pages {
		h := resp.Header
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP %q", name, csp)
		}
		for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q", name, k, h.Get(k))
			}
		}
		d := doc(t, resp)
		d.Find("script").Each(func(_ int, sc *goquery.Selection) {
			src, ok := sc.Attr("src")
			if !ok || strings.TrimSpace(sc.Text()) != "" || !strings.HasPrefix(src, "/static/") {
				t.Errorf("%s: inline or foreign script %q", name, src)
			}
		})
		if n := d.Find("style, [style]").Length(); n > 0 {
			t.Errorf("%s: %d inline styles", name, n)
		}
		d.Find("[onclick], [onload], [onerror], [onsubmit], [onchange]").Each(func(_ int, e *goquery.Selection) {
			t.Errorf("%s: inline event handler on <%s>", name, goquery.NodeName(e))
		})
		d.Find(`link[rel="stylesheet"], script[src], link[rel="icon"]`).Each(func(_ int, e *goquery.Selection) {
			u, ok := e.Attr("href")
			if !ok {
				u, _ = e.Attr("src")
			}
			r, err := http.Get(f.ts.URL + u)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != http.StatusOK || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
				t.Errorf("%s: asset %s: %d %q", name, u, r.StatusCode, r.Header.Get("Cache-Control"))
			}
		})
		d.Find("img[src]").Each(func(_ int, e *goquery.Selection) {
			if src, _ := e.Attr("src"); !strings.HasPrefix(src, "/") && !strings.HasPrefix(src, "data:image/png;base64,") {
				t.Errorf("%s: image from %q is outside img-src", name, src)
			}
		})
	}
}

func TestUploadWithoutJavaScript(t *testing.T) {
	f := newFixture(t, nil)
	s := newSession(t, f)
	resp := s.post("/classify", upload{file: pngBytes(t, drawShape("7", 300, 220)), filename: "seven.png"}, http.Header{})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, readAll(t, resp.Body))
	}
	d := doc(t, resp)
	if src := d.Find(`[data-testid="result-source"]`).Text(); !strings.Contains(src, "upload “seven.png”") || !strings.Contains(src, "PNG, 300×220 px") {
		t.Errorf("source %q", src)
	}
	cards := d.Find(`[data-testid="model-result"]`)
	if cards.Length() != 2 {
		t.Fatalf("%d model results, want 2", cards.Length())
	}
	tm := d.Find(`[data-testid="model-result"][data-model="templates"]`)
	preds := tm.Find(`[data-testid="prediction"]`)
	if preds.Length() != 5 {
		t.Fatalf("top-%d, want top-5", preds.Length())
	}
	top := preds.First()
	label, _ := top.Attr("data-label")
	p, _ := strconv.ParseFloat(top.AttrOr("data-probability", ""), 64)
	if label != "7" || p < 0.9 {
		t.Fatalf("templates says %q with p=%v, want 7 with p > 0.9", label, p)
	}
	if v, _ := top.Find("meter").Attr("value"); v != top.AttrOr("data-probability", "") {
		t.Errorf("bar value %q", v)
	}
	if pct := top.Find(".pct").Text(); !strings.HasSuffix(pct, " %") {
		t.Errorf("percentage %q has no unit", pct)
	}
	img := tm.Find(`[data-testid="model-input"]`)
	if src, _ := img.Attr("src"); !strings.HasPrefix(src, "data:image/png;base64,") {
		t.Errorf("input image %.40q", src)
	}
	if w, _ := img.Attr("width"); w != "168" {
		t.Errorf("28 px input shown %s px wide, want 168 (6×)", w)
	}
	steps := tm.Find(`[data-testid="steps"]`).Text()
	for _, want := range []string{"inverted", "cropped to the digit", "centre of mass"} {
		if !strings.Contains(steps, want) {
			t.Errorf("steps %q do not say %q", steps, want)
		}
	}
	if lat := tm.Find(`[data-testid="latency"]`).Text(); !strings.Contains(lat, "inference") || !strings.Contains(lat, " ms") {
		t.Errorf("latency %q", lat)
	}
	cm := d.Find(`[data-testid="model-result"][data-model="colours"]`)
	if n := cm.Find(`[data-testid="prediction"]`).Length(); n != 3 {
		t.Errorf("colours shows %d classes, has 3", n)
	}
	if w, _ := cm.Find(`[data-testid="model-input"]`).Attr("width"); w != "160" {
		t.Errorf("32 px input shown %s px wide, want 160 (5×)", w)
	}
	if steps := cm.Find(`[data-testid="steps"]`).Text(); !strings.Contains(steps, "centre 32×32 px cropped") || !strings.Contains(steps, "mean (0.5, 0.5, 0.5)") {
		t.Errorf("colour steps %q", steps)
	}
	if !strings.Contains(f.logs.String(), "path=/classify status=200") {
		t.Errorf("request log: %s", f.logs.String())
	}
}

func TestClassifyAPI(t *testing.T) {
	f := newFixture(t, nil)
	s := newSession(t, f)
	one := pngBytes(t, drawShape("1", 150, 150))

	// Token from the cookie, as a script without Sec-Fetch-Site would send it.
	resp := s.post("/api/classify", upload{file: one, filename: "d.png", fields: map[string]string{"source": "drawing"}},
		http.Header{"X-Csrf-Token": {s.token}})
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	r := decodeResult(t, resp)
	if r.Source != "your drawing" || len(r.Models) != 2 || r.Models[0].Name != "templates" {
		t.Fatalf("result %+v", r)
	}
	if top := r.Models[0].Top[0]; top.Label != "1" || top.Prob < 0.9 {
		t.Fatalf("top-1 %+v, want 1", top)
	}
	if !strings.HasPrefix(r.Original, "data:image/png;base64,") || r.Models[0].Zoom != 6 || r.Models[0].InferenceMS <= 0 {
		t.Errorf("result fields %q… zoom %d inference %v ms", r.Original[:min(30, len(r.Original))], r.Models[0].Zoom, r.Models[0].InferenceMS)
	}

	// A browser's same-origin fetch passes on Sec-Fetch-Site alone; a cross-site one does not.
	browser := client(t)
	for site, want := range map[string]int{"same-origin": http.StatusOK, "cross-site": http.StatusForbidden} {
		body, ctype := upload{file: one, filename: "d.png"}.encode(t)
		req, _ := http.NewRequest(http.MethodPost, f.ts.URL+"/api/classify", body)
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Sec-Fetch-Site", site)
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Sec-Fetch-Site %s: status %d, want %d", site, resp.StatusCode, want)
		}
		if want != http.StatusOK {
			var e map[string]string
			json.NewDecoder(resp.Body).Decode(&e)
			if !strings.Contains(e["error"], "refused") {
				t.Errorf("cross-site error %q", e["error"])
			}
		}
	}
}

func TestSamples(t *testing.T) {
	f := newFixture(t, nil)
	s := newSession(t, f)
	for sample, want := range map[string]string{"digit-1-0.png": "1", "digit-7-0.png": "7", "digit-0-1.png": "0"} {
		resp := s.post("/api/classify", upload{fields: map[string]string{"sample": sample}}, http.Header{"X-Csrf-Token": {s.token}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", sample, resp.StatusCode)
		}
		r := decodeResult(t, resp)
		if r.Source != "sample "+want || r.Models[0].Top[0].Label != want {
			t.Errorf("%s: %q, top-1 %q", sample, r.Source, r.Models[0].Top[0].Label)
		}
	}
	// The no-JavaScript sample buttons post a urlencoded form.
	form := url.Values{"sample": {"digit-7-0.png"}, "_csrf": {s.token}}
	resp, err := s.c.PostForm(f.ts.URL+"/classify", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	d := doc(t, resp)
	if got := d.Find(`[data-model="templates"] [data-testid="prediction"]`).First().AttrOr("data-label", ""); resp.StatusCode != 200 || got != "7" {
		t.Fatalf("form sample: status %d, top-1 %q", resp.StatusCode, got)
	}

	img, err := http.Get(f.ts.URL + "/samples/digit-1-0.png")
	if err != nil {
		t.Fatal(err)
	}
	defer img.Body.Close()
	if _, _, err := image.Decode(img.Body); img.StatusCode != 200 || img.Header.Get("Content-Type") != "image/png" || err != nil {
		t.Errorf("sample image: %d %s %v", img.StatusCode, img.Header.Get("Content-Type"), err)
	}
	for _, bad := range []string{"/samples/notes.txt", "/samples/digit-9-0.png", "/samples/..%2Fmanifest.json"} {
		r, err := http.Get(f.ts.URL + bad)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d", bad, r.StatusCode)
		}
	}
	resp = s.post("/api/classify", upload{fields: map[string]string{"sample": "digit-5-0.png"}}, http.Header{"X-Csrf-Token": {s.token}})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown sample: status %d", resp.StatusCode)
	}
}

func TestModelsPage(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Get(f.ts.URL + "/models")
	if err != nil {
		t.Fatal(err)
	}
	d := doc(t, resp)
	if d.Find(`[data-testid="model-info"]`).Length() != 2 {
		t.Fatalf("%d models listed", d.Find(`[data-testid="model-info"]`).Length())
	}
	tm := d.Find(`[data-testid="model-info"][data-model="templates"]`)
	for testid, want := range map[string]string{
		"facts-input":        "1×1×28×28 NCHW",
		"facts-architecture": "cosine to 10 templates",
		"facts-output":       "10 logits, softmax applied by Gibbon",
		"facts-metrics":      "20.00 %",
		"facts-provenance":   "go test ./server",
		"facts-file":         "templates.onnx",
	} {
		if got := tm.Find(`[data-testid="` + testid + `"]`).Text(); !strings.Contains(got, want) {
			t.Errorf("%s: %q lacks %q", testid, got, want)
		}
	}
	if got := tm.Find(`[data-testid="facts-input"]`).Text(); !strings.Contains(got, "MNIST-style") {
		t.Errorf("input facts %q", got)
	}
	cm := d.Find(`[data-model="colours"]`)
	if got := cm.Find(`[data-testid="facts-input"]`).Text(); !strings.Contains(got, "1×32×32×3 NHWC") || !strings.Contains(got, "mean (0.5, 0.5, 0.5)") {
		t.Errorf("colour input facts %q", got)
	}
	if cm.Find(".badge").Length() != 1 {
		t.Error("robust model has no badge")
	}
	if got := d.Find(`[data-testid="load-problem"]`).Text(); !strings.Contains(got, `model "tampered"`) || !strings.Contains(got, "checksum mismatch") {
		t.Errorf("load problem %q", got)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Get(f.ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp.Body); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("healthz %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get(f.ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var r readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, err)
	}
	if !r.Ready || r.Classifiers != 2 || r.Problems != 1 {
		t.Errorf("readyz %+v", r)
	}
}

func TestUnknownAddressesAndMethods(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		method, path string
		status       int
		json         bool
	}{
		{"GET", "/nope", 404, false},
		{"GET", "/api/nope", 404, true},
		{"PUT", "/models", 405, false},
		{"GET", "/classify", 303, false},
		{"GET", "/static/nope.css", 404, false},
	} {
		req, _ := http.NewRequest(tc.method, f.ts.URL+tc.path, nil)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := client(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			continue
		}
		if tc.status == 404 && !strings.HasPrefix(tc.path, "/static/") {
			if tc.json {
				var e map[string]string
				if json.NewDecoder(resp.Body).Decode(&e); e["error"] != "There is no page at this address." {
					t.Errorf("%s: %v", tc.path, e)
				}
			} else if msg := doc(t, resp).Find(`[data-testid="error-message"]`).Text(); msg != "There is no page at this address." {
				t.Errorf("%s: message %q", tc.path, msg)
			}
		}
	}
}

func TestStaticAssets(t *testing.T) {
	f := newFixture(t, nil)
	u := f.srv.assets.URL("app.css")
	if u == "/static/app.css" || !strings.HasSuffix(u, ".css") {
		t.Fatalf("app.css URL %q is not content-hashed", u)
	}
	resp, err := http.Get(f.ts.URL + u)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, ".model-card") {
		t.Fatalf("%s: %d %s", u, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	req, _ := http.NewRequest("GET", f.ts.URL+u, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: %d", again.StatusCode)
	}
	plain, err := http.Get(f.ts.URL + "/static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, plain.Body)
	plain.Body.Close()
	if plain.StatusCode != 200 || plain.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("plain name: %d %q", plain.StatusCode, plain.Header.Get("Cache-Control"))
	}
}
