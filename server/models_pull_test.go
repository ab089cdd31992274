package server

import (
	"context"
	"encoding/json"
	"image"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/internal/testrt"
)

// catalogHost serves catalog files over loopback. A file can be held back after
// its first half until the test releases it, so a pull's progress can be seen.
type catalogHost struct {
	*httptest.Server
	files  map[string][]byte
	hold   map[string]chan struct{}
	mu     sync.Mutex
	served map[string]int
}

func newCatalogHost(t *testing.T) *catalogHost {
	h := &catalogHost{files: map[string][]byte{}, hold: map[string]chan struct{}{}, served: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(func() {
		for _, ch := range h.hold {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
		h.Close()
	})
	return h
}

func (h *catalogHost) serve(w http.ResponseWriter, r *http.Request) {
	data, ok := h.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h.mu.Lock()
	h.served[r.URL.Path]++
	h.mu.Unlock()
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	half := len(data) / 2
	w.Write(data[:half])
	if ch, ok := h.hold[r.URL.Path]; ok {
		w.(http.Flusher).Flush()
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
	}
	w.Write(data[half:])
}

// pullFixture serves the test models with a catalog of three: a tiny RGB
// classifier (colourModel, "tiny-colours") whose download is held at its half, one
// whose bytes do not match its checksum ("corrupt"), and one with no pinned
// checksum ("unpinned").
type pullFixture struct {
	*fixture
	host *catalogHost
	dir  string // where pulls register
	gate chan struct{}
}

func newPullFixture(t *testing.T, allowed bool) *pullFixture {
	t.Helper()
	host := newCatalogHost(t)
	model := colourModel()
	host.files["/tiny-colours.onnx"] = model
	gate := make(chan struct{})
	host.hold["/tiny-colours.onnx"] = gate
	host.files["/corrupt.onnx"] = append([]byte("not the file that was pinned "), model...)
	entry := func(name, path string) catalog.Entry {
		return catalog.Entry{Name: name, Architecture: "channel means", Description: "test classifier: which channel is brightest",
			URLs: []string{host.URL + path}, SHA256: shaHex(model), Size: int64(len(model)), Opset: 13,
			PinSource: "the test", License: "MIT", Input: colourContract, Classes: 3}
	}
	unpinned := entry("unpinned", "/unpinned.onnx")
	unpinned.SHA256, unpinned.Size, unpinned.License = "", 0, ""
	cat := catalog.Catalog{entry("tiny-colours", "/tiny-colours.onnx"), entry("corrupt", "/corrupt.onnx"), unpinned}
	cat[1].Size = 0 // the size cannot tell: only the checksum does

	modelsDir := modelDir(t)
	pullDir := t.TempDir()
	cfg := DefaultConfig()
	cfg.UploadRate, cfg.UploadBurst = 1000, 1000
	logs := &syncBuffer{}
	reg := loadModels(t, modelsDir)
	rt := testrt.Open(t)
	srv, err := New(Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Models: reg,
		Samples: []fs.FS{os.DirFS(filepath.Join(modelsDir, "samples"))},
		Pull: PullDeps{Allowed: allowed, Catalog: cat, Dir: pullDir, MaxPulls: 1, Options: catalog.Options{
			Labels: []string{"red", "green", "blue"}, LabelsFile: "colour_labels.txt",
			Runtime: func() (*inference.Runtime, error) { return rt, nil },
			Retries: 1, Backoff: time.Millisecond,
		}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &pullFixture{fixture: &fixture{srv: srv, ts: ts, reg: reg, logs: logs}, host: host, dir: pullDir, gate: gate}
}

func fetchDoc(t *testing.T, c *http.Client, url string) (*http.Response, *goquery.Document) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	d, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, d
}

func pullStatus(t *testing.T, f *pullFixture, name string) PullStatus {
	t.Helper()
	resp, err := http.Get(f.ts.URL + "/api/models/pull/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st PullStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func registered(t *testing.T, dir, name string) bool {
	t.Helper()
	man, err := inference.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range man.Models {
		if e.Name == name {
			return true
		}
	}
	return false
}

// With --allow-pull, /models lists the catalog with Pull buttons; Pull shows its
// progress live on a page that reloads itself, one pull at a time per name and a
// bounded number in all; the pulled model is then listed and classifies without a
// restart. A download that fails its checksum leaves nothing registered, and a
// model without a pinned checksum is refused.
func TestPullFromModelsPage(t *testing.T) {
	f := newPullFixture(t, true)
	s := newSession(t, f.fixture)

	_, d := fetchDoc(t, s.c, f.ts.URL+"/models")
	if d.Find(`[data-testid="catalog-allowed"]`).Length() != 1 || d.Find(`[data-testid="catalog-entry"]`).Length() != 3 {
		t.Fatalf("catalog: %q", d.Find(`[data-testid="model-catalog"]`).Text())
	}
	row := d.Find(`[data-testid="catalog-entry"][data-model="tiny-colours"]`)
	if row.Find(`[data-testid="pull-button"]`).Length() != 1 || row.Find(`[data-testid="catalog-license"]`).Text() != "MIT" ||
		!strings.Contains(row.Text(), "classifies photos into the 3 ImageNet classes") || row.Find(`[data-testid="catalog-size"]`).Text() != formatBytes(int64(len(colourModel()))) {
		t.Errorf("catalog row %q", row.Text())
	}
	if d.Find(`[data-model="unpinned"] [data-testid="catalog-pin"]`).Length() != 1 || d.Find(`[data-model="unpinned"] [data-testid="pull-button"]`).Length() != 0 {
		t.Error("the unpinned model can be pulled")
	}

	// Pull, as the form does: a redirect to the progress page.
	resp := s.post("/models/pull", upload{fields: map[string]string{"name": "tiny-colours"}}, http.Header{})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/models/pull/tiny-colours" {
		t.Fatalf("pull: status %d, location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Held at half the file: the page shows the bytes so far and reloads itself.
	waitUntil(t, "the download to reach its half", func() bool {
		st := pullStatus(t, f, "tiny-colours")
		return st.State == pullDownloading && st.Done > 0
	})
	resp, d = fetchDoc(t, s.c, f.ts.URL+"/models/pull/tiny-colours")
	bar := d.Find(`[data-testid="pull-bar"]`)
	if resp.Header.Get("Refresh") != "1" || d.Find(`[data-testid="pull-progress"]`).AttrOr("data-state", "") != pullDownloading ||
		bar.AttrOr("value", "") != strconv.Itoa(len(colourModel())/2) || bar.AttrOr("max", "") != strconv.Itoa(len(colourModel())) ||
		!strings.Contains(d.Find(`[data-testid="pull-state"]`).Text(), "(49 %)") {
		t.Errorf("progress page: Refresh %q, state %q, bar %s of %s, %q", resp.Header.Get("Refresh"),
			d.Find(`[data-testid="pull-progress"]`).AttrOr("data-state", ""), bar.AttrOr("value", ""), bar.AttrOr("max", ""), d.Find(`[data-testid="pull-state"]`).Text())
	}
	if _, d = fetchDoc(t, s.c, f.ts.URL+"/models"); d.Find(`[data-model="tiny-colours"] [data-testid="catalog-pulling"]`).Length() != 1 {
		t.Error("the catalog does not say the model is being pulled")
	}
	// While it runs: the same name again is refused, and so is a second pull (MaxPulls 1).
	for name, want := range map[string]int{"tiny-colours": http.StatusConflict, "corrupt": http.StatusTooManyRequests, "unpinned": http.StatusBadRequest} {
		resp := s.post("/models/pull", upload{fields: map[string]string{"name": name}}, http.Header{"Accept": {"application/json"}})
		var e map[string]string
		json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != want || e["error"] == "" {
			t.Errorf("pull %s meanwhile: status %d (want %d), %q", name, resp.StatusCode, want, e["error"])
		}
	}

	close(f.gate)
	waitUntil(t, "the pull to end", func() bool { return !pullStatus(t, f, "tiny-colours").running() })
	if st := pullStatus(t, f, "tiny-colours"); st.State != pullDone || st.Model != "/models#model-tiny-colours" {
		t.Fatalf("pull ended %+v", st)
	}
	resp, d = fetchDoc(t, s.c, f.ts.URL+"/models/pull/tiny-colours")
	if resp.Header.Get("Refresh") != "" || d.Find(`[data-testid="pull-model"]`).Length() != 1 {
		t.Errorf("finished progress page: Refresh %q, %q", resp.Header.Get("Refresh"), d.Find(`[data-testid="pull-progress"]`).Text())
	}
	// Served without a restart: listed, marked in the catalog, and classifying.
	_, d = fetchDoc(t, s.c, f.ts.URL+"/models")
	if d.Find(`[data-testid="model-info"][data-model="tiny-colours"]`).Length() != 1 || d.Find(`[data-model="tiny-colours"] [data-testid="catalog-served"]`).Length() != 1 {
		t.Fatal("the pulled model is not listed as served on /models")
	}
	red := image.NewRGBA(image.Rect(0, 0, 40, 40))
	for i := 0; i < len(red.Pix); i += 4 {
		red.Pix[i], red.Pix[i+3] = 230, 255
	}
	resp = s.post("/api/classify", upload{file: pngBytes(t, red), filename: "red.png"}, http.Header{"X-Csrf-Token": {s.token}})
	r := decodeResult(t, resp)
	var found bool
	for _, m := range r.Models {
		if m.Name == "tiny-colours" {
			found = true
			if m.Error != "" || len(m.Top) == 0 || m.Top[0].Label != "red" {
				t.Errorf("pulled model on a red image: %+v", m)
			}
		}
	}
	if !found || !registered(t, f.dir, "tiny-colours") {
		t.Fatalf("pulled model classified %v, registered %v", found, registered(t, f.dir, "tiny-colours"))
	}
	if resp := s.post("/models/pull", upload{fields: map[string]string{"name": "tiny-colours"}}, http.Header{"Accept": {"application/json"}}); resp.StatusCode != http.StatusConflict {
		t.Errorf("pull of a served model: status %d", resp.StatusCode)
	}

	// A file that is not the pinned one: the pull fails and nothing is registered.
	resp = s.post("/models/pull", upload{fields: map[string]string{"name": "corrupt"}}, http.Header{"Accept": {"application/json"}})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("pull corrupt: status %d", resp.StatusCode)
	}
	waitUntil(t, "the corrupt pull to end", func() bool { return !pullStatus(t, f, "corrupt").running() })
	st := pullStatus(t, f, "corrupt")
	if st.State != pullFailed || !strings.Contains(st.Error, "SHA-256") && !strings.Contains(strings.ToLower(st.Error), "sha256") {
		t.Errorf("corrupt pull ended %+v", st)
	}
	_, d = fetchDoc(t, s.c, f.ts.URL+"/models/pull/corrupt")
	if d.Find(`[data-testid="pull-error"]`).Text() != st.Error {
		t.Errorf("progress page error %q", d.Find(`[data-testid="pull-error"]`).Text())
	}
	if _, ok := f.reg.Entry("corrupt"); ok || registered(t, f.dir, "corrupt") {
		t.Error("a failed pull left the model registered")
	}
	_, d = fetchDoc(t, s.c, f.ts.URL+"/models")
	if d.Find(`[data-testid="model-info"][data-model="corrupt"]`).Length() != 0 || d.Find(`[data-model="corrupt"] [data-testid="catalog-failed"]`).Length() != 1 {
		t.Error("the models page lists the failed model, or does not say its pull failed")
	}
}

// Without --allow-pull the catalog is listed read-only, with the command that
// pulls each model, and POST /models/pull answers 403 saying why.
func TestPullOffByDefault(t *testing.T) {
	f := newPullFixture(t, false)
	s := newSession(t, f.fixture)
	_, d := fetchDoc(t, s.c, f.ts.URL+"/models")
	if d.Find(`[data-testid="catalog-readonly"]`).Length() != 1 || d.Find(`[data-testid="pull-button"]`).Length() != 0 {
		t.Fatalf("catalog with the flag off: %q", d.Find(`[data-testid="model-catalog"]`).Text())
	}
	if got := d.Find(`[data-model="tiny-colours"] [data-testid="catalog-command"]`).Text(); got != "gibbon models pull tiny-colours" {
		t.Errorf("command %q", got)
	}
	resp := s.post("/models/pull", upload{fields: map[string]string{"name": "tiny-colours"}}, http.Header{"Accept": {"application/json"}})
	var e map[string]string
	json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(e["error"], "--allow-pull") || !strings.Contains(e["error"], "gibbon models pull tiny-colours") {
		t.Errorf("pull with the flag off: status %d, %q", resp.StatusCode, e["error"])
	}
	// The form's answer, for people: the error page says the same.
	resp = s.post("/models/pull", upload{fields: map[string]string{"name": "tiny-colours"}}, http.Header{})
	if body := readAll(t, resp.Body); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "--allow-pull") {
		t.Errorf("form pull with the flag off: status %d", resp.StatusCode)
	}
	f.host.mu.Lock()
	defer f.host.mu.Unlock()
	if _, ok := f.reg.Entry("tiny-colours"); ok || len(f.host.served) != 0 {
		t.Errorf("a refused pull downloaded %v", f.host.served)
	}
}

// A pull is work the server owns: shutdown cancels it and waits for it, and the
// cut download registers nothing.
func TestPullStopsAtShutdown(t *testing.T) {
	f := newPullFixture(t, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- f.srv.Serve(ctx, ln) }()

	// A browser's same-origin form post (Sec-Fetch-Site), to the listener Serve owns.
	req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/models/pull", strings.NewReader("name=tiny-colours"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("pull: status %d", resp.StatusCode)
	}
	waitUntil(t, "the download to reach its half", func() bool {
		return pullStatus(t, f, "tiny-colours").State == pullDownloading
	})
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown did not wait for the pull to stop")
	}
	job, _ := f.srv.pulls.job("tiny-colours")
	if st := job.status(); st.State != pullFailed || !strings.Contains(st.Error, "context canceled") {
		t.Errorf("pull after shutdown: %+v", st)
	}
	if _, ok := f.reg.Entry("tiny-colours"); ok || registered(t, f.dir, "tiny-colours") {
		t.Error("a pull cut by shutdown registered the model")
	}
}
