package server

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

// galleryFixture is a server over the test models with a real gallery file.
type galleryFixture struct {
	*fixture
}

func newGalleryFixture(t testing.TB, edit func(*Config)) *galleryFixture {
	t.Helper()
	dir := modelDir(t)
	cfg := DefaultConfig()
	cfg.UploadRate, cfg.UploadBurst = 1000, 1000
	if edit != nil {
		edit(&cfg)
	}
	store, err := gallery.Open(context.Background(), filepath.Join(t.TempDir(), gallery.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	logs := &syncBuffer{}
	reg := loadModels(t, dir)
	srv, err := New(Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Models: reg,
		Samples: []fs.FS{os.DirFS(filepath.Join(dir, "samples"))}, Gallery: store})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &galleryFixture{fixture: &fixture{srv: srv, ts: ts, reg: reg, logs: logs, store: store}}
}

// hostile is user text that would run as script if it reached the page unescaped.
const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>`

// entryFor is a run entry over the test models, as the server would have made it
// (gallery entries are the server's own records; see runs.go), with a hostile title.
func entryFor(t testing.TB, seed uint64) *gallery.Entry {
	t.Helper()
	e := gallerytest.Run(seed, gallerytest.Options{Models: []string{"templates", "colours"}, Title: hostile})
	e.Attack, e.Seed, e.Eps, e.EpsUnit, e.LInf = "pgd", 1, 8, gallery.Unit255, 8
	e.Params = json.RawMessage(`{"steps":10,"alpha":2,"note":` + mustJSON(t, hostile) + `}`)
	e.Models = []gallery.ModelRef{{Name: "templates", SHA256: shaHex(templateModel(t)), Attacked: true}, {Name: "colours", SHA256: shaHex(colourModel())}}
	return e
}

func mustJSON(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *galleryFixture) do(t testing.TB, method, path string, body []byte, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin") // a same-origin fetch, as app.js makes
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// save stores e and returns what a saver is told.
func (f *galleryFixture) save(t testing.TB, e *gallery.Entry) saveResponse {
	t.Helper()
	rec, err := f.store.Save(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	perm := f.ts.URL + "/g/" + rec.Slug
	return saveResponse{Slug: rec.Slug, Permalink: perm, DeleteURL: perm + "/delete?" + url.Values{"token": {rec.DeleteToken}}.Encode(),
		DeleteToken: rec.DeleteToken}
}

func TestGallerySaveAndPermalink(t *testing.T) {
	f := newGalleryFixture(t, nil)
	saved := entryFor(t, 1)
	wantAdv := saved.Adversarial
	r := f.save(t, saved)
	stored, err := f.store.Get(context.Background(), r.Slug)
	if err != nil {
		t.Fatal(err)
	}

	resp := f.do(t, http.MethodGet, "/g/"+r.Slug, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("permalink status %d", resp.StatusCode)
	}
	html := readAll(t, resp.Body)
	if strings.Contains(html, "<script>alert") || strings.Contains(html, "<img src=x") {
		t.Fatal("hostile title reached the page unescaped")
	}
	d, err := goquery.NewDocumentFromReader(strings.NewReader(html))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Find(`[data-testid="entry-title"]`).Text(); got != hostile {
		t.Errorf("title shown as %q, want the saved text exactly", got)
	}
	if got := d.Find("head > title").Text(); got != hostile+" · Gibbon" {
		t.Errorf("<title> %q", got)
	}
	imgs := map[string]string{}
	for _, id := range []string{"image-original", "image-adversarial", "image-perturbation"} {
		src, ok := d.Find(`[data-testid="` + id + `"]`).Attr("src")
		if !ok {
			t.Fatalf("no %s image", id)
		}
		imgs[id] = src
	}
	if imgs["image-adversarial"] != "/gallery/img/"+stored.AdversarialSHA+".png" || imgs["image-perturbation"] != "/g/"+r.Slug+"/perturbation.png?gain=1" {
		t.Fatalf("image URLs %v", imgs)
	}
	if w, _ := d.Find(`[data-testid="image-adversarial"]`).Attr("width"); w != "224" {
		t.Errorf("28 px image shown %s px wide, want 224 (8× without smoothing)", w)
	}
	og := map[string]string{}
	d.Find(`meta[property]`).Each(func(_ int, s *goquery.Selection) {
		p, _ := s.Attr("property")
		og[p], _ = s.Attr("content")
	})
	if og["og:image"] != r.Permalink+"/card.png" || og["og:title"] != hostile || og["og:url"] != r.Permalink {
		t.Fatalf("Open Graph tags %v", og)
	}
	if tc := d.Find(`meta[name="twitter:card"]`).AttrOr("content", ""); tc != "summary_large_image" {
		t.Errorf("twitter:card %q", tc)
	}
	// A run saved before plans were recorded: its parameters as stored, its
	// distances from the record and the images, no Verify.
	stepsRow := d.Find(`[data-testid="param-stored"]`).FilterFunction(func(_ int, s *goquery.Selection) bool { return s.Find("th").Text() == "steps" })
	if got := stepsRow.Find(".value").Text(); got != "10" {
		t.Errorf("stored steps shown as %q", got)
	}
	for key, want := range map[string]string{"linf": "8/255", "linf-measured": "8/255"} {
		if got := d.Find(`[data-testid="param-` + key + `"] .value`).Text(); got != want {
			t.Errorf("%s %q, want %q", key, got, want)
		}
	}
	if d.Find(`[data-testid="verify"]`).Length() != 0 {
		t.Error("a Verify button on a server without the explorer")
	}
	if n := d.Find(`[data-testid="entry-step"]`).Length(); n != 10 {
		t.Errorf("%d step rows, want 10", n)
	}
	if n := d.Find(`[data-testid="defence-card"]`).Length(); n != 2 || d.Find(`[data-testid="fooled"]`).Length() != 2 {
		t.Errorf("%d defence cards (fooled: %d)", n, d.Find(`[data-testid="fooled"]`).Length())
	}
	if d.Find(`[data-testid="chart-loss"] polyline`).Length() != 1 {
		t.Error("no loss chart")
	}
	if rerun := d.Find(`[data-testid="rerun"]`).AttrOr("href", ""); rerun != "/attack?from="+r.Slug {
		t.Fatalf("re-run link %q", rerun)
	}

	// The images are the saved bytes, cached for good under their hash.
	resp = f.do(t, http.MethodGet, imgs["image-adversarial"], nil, nil)
	if got := readAll(t, resp.Body); got != string(wantAdv) || resp.Header.Get("Content-Type") != "image/png" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("adversarial image: %d bytes, %v", len(got), resp.Header)
	}
	resp = f.do(t, http.MethodGet, imgs["image-adversarial"], nil, http.Header{"If-None-Match": {`"` + stored.AdversarialSHA + `"`}})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: status %d, want 304", resp.StatusCode)
	}

	// Exports: PNGs, the record as JSON, the perturbation as .npy, all as a zip.
	get := func(file string) (*http.Response, []byte) {
		resp := f.do(t, http.MethodGet, "/g/"+r.Slug+"/"+file, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", file, resp.StatusCode)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if _, b := get("adversarial.png"); string(b) != string(wantAdv) {
		t.Error("adversarial.png differs from the saved image")
	}
	if _, b := get("perturbation.png"); !decodesAsPNG(b) {
		t.Error("perturbation.png is not a PNG")
	}
	resp, npy := get("perturbation.npy")
	if !strings.Contains(resp.Header.Get("Content-Disposition"), "gibbon-"+r.Slug+"-perturbation.npy") {
		t.Errorf("npy disposition %q", resp.Header.Get("Content-Disposition"))
	}
	hl := int(binary.LittleEndian.Uint16(npy[8:10]))
	if !bytes.HasPrefix(npy, []byte("\x93NUMPY\x01\x00")) || !strings.Contains(string(npy[10:10+hl]), "'shape': (1, 28, 28)") ||
		len(npy) != 10+hl+4*28*28 {
		t.Errorf("npy header %q, %d bytes", npy[10:10+hl], len(npy))
	}
	_, js := get("entry.json")
	var back gallery.Entry
	if err := json.Unmarshal(js, &back); err != nil || back.Slug != r.Slug || back.Title != hostile || len(back.Steps) != 10 {
		t.Fatalf("entry.json: %v", err)
	}
	if strings.Contains(string(js), "delete") || strings.Contains(string(js), r.DeleteToken) {
		t.Fatal("entry.json leaks the delete secret")
	}
	_, zb := get("export.zip")
	z, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range z.File {
		names = append(names, f.Name)
		if f.Name == "perturbation.png" {
			// The export's map is the page's (and the explorer's), at gain 1.
			r, _ := f.Open()
			inZip, _ := io.ReadAll(r)
			r.Close()
			if _, page := get("perturbation.png?gain=1"); !bytes.Equal(inZip, page) {
				t.Error("export.zip's perturbation.png is not the permalink's map")
			}
		}
	}
	if strings.Join(names, ",") != "entry.json,original.png,adversarial.png,perturbation.npy,perturbation.png" {
		t.Errorf("zip holds %v", names)
	}
}

func decodesAsPNG(b []byte) bool {
	_, err := png.Decode(bytes.NewReader(b))
	return err == nil
}

func TestRunSaveRefusesWhatItCannotVouchFor(t *testing.T) {
	f := newGalleryFixture(t, nil)
	key := f.srv.runs.open("ip:127.0.0.1")
	cases := []struct {
		name, path string
		body       []byte
		header     http.Header
		status     int
		says       string
	}{
		{"unknown key", "/api/runs/" + strings.Repeat("a", 32) + "/save", nil, nil, 404, "no run with this key"},
		{"malformed key", "/api/runs/<b>x<b>/save", nil, nil, 404, "no run with this key"},
		{"unfinished", "/api/runs/" + key + "/save", nil, nil, 409, "still going"},
		{"client-made images", "/api/runs/" + key + "/save", []byte(`{"title":"x","adversarial_png":"AAAA"}`), nil, 400, "come from the server"},
		{"not json", "/api/runs/" + key + "/save", []byte(`{nope`), nil, 400, "not valid"},
		{"cross-site", "/api/runs/" + key + "/save", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.do(t, http.MethodPost, tc.path, tc.body, tc.header)
			var e struct{ Error string }
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tc.status || !strings.Contains(e.Error, tc.says) {
				t.Fatalf("status %d %q, want %d mentioning %q", resp.StatusCode, e.Error, tc.status, tc.says)
			}
		})
	}
	// Another page's run, and one that ended without a result.
	other := f.srv.runs.open("cookie:someone-else")
	f.srv.runs.close(other, entryFor(t, 3), "")
	if resp := f.do(t, http.MethodPost, "/api/runs/"+other+"/save", nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("someone else's run: status %d", resp.StatusCode)
	}
	f.srv.runs.close(key, nil, "it ended before its first step.")
	if resp := f.do(t, http.MethodPost, "/api/runs/"+key+"/save", nil, nil); resp.StatusCode != http.StatusConflict {
		t.Fatalf("a run without a result: status %d", resp.StatusCode)
	}
	p, err := f.store.List(context.Background(), gallery.ListOptions{})
	if err != nil || len(p.Entries) != 0 {
		t.Fatalf("refused saves stored %d entries (%v)", len(p.Entries), err)
	}
	if strings.Contains(f.logs.String(), "level=ERROR") {
		t.Fatalf("a refused save was logged as a server error:\n%s", f.logs.String())
	}
}

func TestGalleryIndexPagesAndFilters(t *testing.T) {
	f := newGalleryFixture(t, nil)
	ctx := context.Background()
	for i := range 30 {
		attack := []string{"fgsm", "pgd", hostile}[i%3]
		e := gallerytest.Run(uint64(i), gallerytest.Options{Attack: attack, Eps: float64(4 + 4*(i%2))})
		if i == 29 {
			e.Title = hostile
		}
		if _, err := f.store.Save(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	page := func(path string, want int) *goquery.Document {
		t.Helper()
		resp := f.do(t, http.MethodGet, path, nil, nil)
		if resp.StatusCode != want {
			t.Fatalf("%s: status %d, want %d", path, resp.StatusCode, want)
		}
		html := readAll(t, resp.Body)
		if strings.Contains(html, "<script>alert") {
			t.Fatalf("%s: hostile text unescaped", path)
		}
		d, err := goquery.NewDocumentFromReader(strings.NewReader(html))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := page("/gallery", 200)
	cards := d.Find(`[data-testid="gallery-card"]`)
	if cards.Length() != gallery.DefaultPageSize {
		t.Fatalf("%d cards on the first page, want %d", cards.Length(), gallery.DefaultPageSize)
	}
	if got := cards.First().Find(`[data-testid="card-title"]`).Text(); got != hostile {
		t.Errorf("newest card title %q", got)
	}
	if src, _ := cards.First().Find(`[data-testid="card-thumb"]`).Attr("src"); !strings.HasPrefix(src, "/gallery/img/") {
		t.Errorf("thumbnail %q", src)
	}
	if got := cards.Eq(1).Find(`[data-testid="card-change"]`).Text(); got != "7 → 3" {
		t.Errorf("card change %q", got)
	}
	if d.Find(`[data-testid="nav-link"][aria-current="page"]`).Text() != "Gallery" {
		t.Error("the menu does not mark Gallery as the current page")
	}
	next, ok := d.Find(`[data-testid="next-page"]`).Attr("href")
	if !ok {
		t.Fatal("no next page link")
	}
	d2 := page(next, 200)
	if n := d2.Find(`[data-testid="gallery-card"]`).Length(); n != 30-gallery.DefaultPageSize {
		t.Fatalf("%d cards on page 2", n)
	}
	if d2.Find(`[data-testid="next-page"]`).Length() != 0 || d2.Find(`[data-testid="first-page"]`).Length() != 1 {
		t.Error("page 2 is the last: no next link, a link back to the newest")
	}

	// Filters, including a hostile attack name chosen from the select.
	var attackOpts []string
	d.Find(`[data-testid="filter-attack"] option`).Each(func(_ int, s *goquery.Selection) {
		v, _ := s.Attr("value")
		attackOpts = append(attackOpts, v)
	})
	if len(attackOpts) != 4 || attackOpts[0] != "" {
		t.Fatalf("attack options %q", attackOpts)
	}
	d3 := page("/gallery?"+url.Values{"attack": {hostile}, "eps": {"8/255"}}.Encode(), 200)
	n := d3.Find(`[data-testid="gallery-card"]`).Length()
	// i%3 == 2 and i%2 == 1: i = 5, 11, 17, 23, 29.
	if n != 5 {
		t.Fatalf("%d cards for attack=hostile, eps=8/255; want 5", n)
	}
	d3.Find(`[data-testid="card-attack"]`).Each(func(_ int, s *goquery.Selection) {
		if s.Text() != hostile {
			t.Errorf("filtered card with attack %q", s.Text())
		}
	})
	if sel, _ := d3.Find(`[data-testid="filter-eps"] option[selected]`).Attr("value"); sel != "8/255" {
		t.Errorf("selected eps %q", sel)
	}
	if d := page("/gallery?model=nobody", 200); d.Find(`[data-testid="gallery-empty"]`).Length() != 1 {
		t.Error("no empty-result notice")
	}
	for _, bad := range []string{"/gallery?after=zzz", "/gallery?eps=8", "/gallery?kind=<b>", "/gallery?after=" + strings.Repeat("1", 100)} {
		d := page(bad, 400)
		if d.Find(`[data-testid="gallery-error"]`).Text() == "" || d.Find(`[data-testid="gallery-filters"]`).Length() != 1 {
			t.Errorf("%s: no error shown, or no filters to fix it with", bad)
		}
	}
}

func TestGalleryDeleteBySecretLink(t *testing.T) {
	f := newGalleryFixture(t, nil)
	r := f.save(t, entryFor(t, 1))
	other := f.save(t, entryFor(t, 2))
	stored, _ := f.store.Get(context.Background(), r.Slug)

	u, _ := url.Parse(r.DeleteURL)
	resp := f.do(t, http.MethodGet, u.RequestURI(), nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("delete link: status %d", resp.StatusCode)
	}
	d := doc(t, resp)
	if tok, _ := d.Find(`[data-testid="delete-form"] input[name="token"]`).Attr("value"); tok != r.DeleteToken {
		t.Fatal("the confirmation form does not carry the token")
	}
	if resp := f.do(t, http.MethodGet, "/g/"+r.Slug, nil, nil); resp.StatusCode != 200 {
		t.Fatal("opening the delete link deleted the entry (a GET must not)")
	}
	form := func(token string) *http.Response {
		return f.do(t, http.MethodPost, "/g/"+r.Slug+"/delete", []byte(url.Values{"token": {token}}.Encode()),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	}
	resp = form(other.DeleteToken)
	if resp.StatusCode != http.StatusForbidden || doc(t, resp).Find(`[data-testid="delete-error"]`).Length() != 1 {
		t.Fatalf("another entry's token: status %d", resp.StatusCode)
	}
	resp = form(r.DeleteToken)
	if resp.StatusCode != 200 || doc(t, resp).Find(`[data-testid="delete-done"]`).Length() != 1 {
		t.Fatalf("delete: status %d", resp.StatusCode)
	}
	for _, path := range []string{"/g/" + r.Slug, "/g/" + r.Slug + "/entry.json", imageURL(stored.AdversarialSHA), r.DeleteURL[len(f.ts.URL):]} {
		if resp := f.do(t, http.MethodGet, path, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s after delete: status %d, want 404", path, resp.StatusCode)
		}
	}
	// The JSON API deletes too, with the token in a header.
	if resp := f.do(t, http.MethodDelete, "/api/gallery/"+other.Slug, nil, http.Header{"X-Delete-Token": {"wrong"}}); resp.StatusCode != 403 {
		t.Fatalf("API delete with a wrong token: %d", resp.StatusCode)
	}
	if resp := f.do(t, http.MethodDelete, "/api/gallery/"+other.Slug, nil, http.Header{"X-Delete-Token": {other.DeleteToken}}); resp.StatusCode != 204 {
		t.Fatalf("API delete: %d", resp.StatusCode)
	}
	if err := f.store.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestGalleryPathsAreValidated(t *testing.T) {
	f := newGalleryFixture(t, nil)
	r := f.save(t, entryFor(t, 1))
	for _, path := range []string{
		"/g/" + strings.ToUpper(r.Slug),
		"/g/" + r.Slug + "x",
		"/g/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
		"/g/" + r.Slug + "/..%2f..%2fgallery.db",
		"/g/" + r.Slug + "/secret.txt",
		"/gallery/img/" + strings.Repeat("g", 64) + ".png",
		"/gallery/img/" + strings.Repeat("a", 64) + ".png",
		"/gallery/img/../../gallery.db",
		fmt.Sprintf("/g/%s/delete", "0000000000"),
	} {
		resp := f.do(t, http.MethodGet, path, nil, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
		}
	}
	if resp := f.do(t, http.MethodDelete, "/api/gallery/../x", nil, nil); resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("API delete of a bad slug: %d", resp.StatusCode)
	}
}
