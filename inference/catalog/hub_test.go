package catalog_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/inference/zoo"
	"gibbon/internal/hubtest"
	"gibbon/internal/testrt"
)

const (
	hubRepo  = "modelzoo/tiny_Opset17"
	hubPath  = "tiny_Opset17.onnx"
	hubToken = "hf_secret_test_token"
)

// hubEntry is a catalog entry without a stored hash: the hub pins it at pull time.
func hubEntry(name string) catalog.Entry {
	return catalog.Entry{Name: name, Architecture: "tiny test net", Description: "test classifier " + name,
		Hub: &catalog.HubFile{Repo: hubRepo, Path: hubPath}, PinSource: "the hub, at pull time",
		Input: contractFor(false), OutputsLogits: true, Classes: 1000}
}

// hubOptions points a pull at the fake hub with a token.
func hubOptions(t *testing.T, h *hubtest.Hub, dir string) (catalog.Options, *strings.Builder) {
	opt := options(t, dir)
	opt.HubURL, opt.HubToken = h.URL, hubToken
	var log strings.Builder
	opt.Log = &log
	return opt, &log
}

// newHub serves a tiny 224-px classifier (LFS) and a README (not LFS) on main.
func newHub(t *testing.T) (*hubtest.Hub, []byte, string) {
	h := hubtest.New(t)
	h.RequireToken(hubToken)
	data := hubtest.Classifier(1, 224)
	commit := h.Commit(hubRepo, "main", hubtest.File{Path: hubPath, Data: data, LFS: true},
		hubtest.File{Path: "README.md", Data: []byte("# tiny\n")})
	return h, data, commit
}

func manifestEntry(t *testing.T, dir, name string) *inference.ModelEntry {
	t.Helper()
	m, err := inference.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := m.Entry(name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// assertNothingRegistered: no manifest, no model file, no unverified download.
func assertNothingRegistered(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, inference.ManifestFile)); !os.IsNotExist(err) {
		t.Errorf("a manifest was written: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, de := range entries {
		if de.Name() != catalog.DownloadsDir {
			t.Errorf("left in the models directory: %s", de.Name())
		}
	}
	downloads, _ := os.ReadDir(filepath.Join(dir, catalog.DownloadsDir))
	for _, de := range downloads {
		if !strings.HasSuffix(de.Name(), ".part") {
			t.Errorf("left in the download area: %s", de.Name())
		}
	}
}

func assertOneLine(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line:\n%v", err)
	}
}

// A pull of an entry without a stored hash: revision resolved to a commit, the LFS
// SHA-256 and size read for it, download from that commit, pin recorded. Later pulls
// reuse the recorded pin even after the branch moves; --revision re-pins.
func TestHubPinsAtPullTime(t *testing.T) {
	h, data, c1 := newHub(t)
	dir := t.TempDir()
	opt, log := hubOptions(t, h, dir)
	res, err := catalog.Pull(context.Background(), hubEntry("tiny"), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "pinned by the hub at commit "+c1) {
		t.Errorf("the pull does not say it was pinned by the hub:\n%s", log)
	}
	pin := manifestEntry(t, dir, "tiny").Pin
	want := inference.Pin{Source: inference.PinByHub, Repo: hubRepo, Path: hubPath, Commit: c1,
		SHA256: hubtest.SHA256(data), Size: int64(len(data)), URL: h.URL + "/" + hubRepo + "/resolve/" + c1 + "/" + hubPath}
	if pin == nil || *pin != want {
		t.Fatalf("recorded pin %+v, want %+v", pin, want)
	}
	if res.Pin == nil || *res.Pin != want {
		t.Errorf("result pin %+v", res.Pin)
	}
	reqs := h.Requests()
	if len(reqs) != 3 || reqs[0].Path != "/api/models/"+hubRepo+"/revision/main" || reqs[0].Query != "blobs=true" ||
		reqs[1].Path != "/"+hubRepo+"/resolve/"+c1+"/"+hubPath || reqs[2].Server != "cdn" {
		t.Fatalf("requests %+v, want the revision API, a resolve at commit %s, then the CDN", reqs, c1)
	}
	for _, r := range reqs {
		if r.Server == "hub" && r.Authorization != "Bearer "+hubToken {
			t.Errorf("the hub got Authorization %q on %s", r.Authorization, r.Path)
		}
	}

	// main moves on to other bytes: a plain pull keeps the recorded commit and hash.
	other := hubtest.Classifier(2, 224)
	c2 := h.Commit(hubRepo, "main", hubtest.File{Path: hubPath, Data: other, LFS: true})
	log.Reset()
	before := len(h.Requests())
	if _, err := catalog.Pull(context.Background(), hubEntry("tiny"), opt); err != nil {
		t.Fatal(err)
	}
	again := h.Requests()[before:]
	if len(again) != 2 || again[0].Path != "/"+hubRepo+"/resolve/"+c1+"/"+hubPath {
		t.Fatalf("second pull requests %+v, want a resolve at the recorded commit and nothing else", again)
	}
	if p := manifestEntry(t, dir, "tiny").Pin; p.Commit != c1 || p.SHA256 != hubtest.SHA256(data) {
		t.Fatalf("second pull moved the pin to %+v", p)
	}
	if !strings.Contains(log.String(), "using the pin recorded at commit "+c1) {
		t.Errorf("second pull log:\n%s", log)
	}

	// --revision main pins the new commit, and says so; --revision with a commit id pins that commit.
	opt.Revision = "main"
	log.Reset()
	if _, err := catalog.Pull(context.Background(), hubEntry("tiny"), opt); err != nil {
		t.Fatal(err)
	}
	if p := manifestEntry(t, dir, "tiny").Pin; p.Commit != c2 || p.SHA256 != hubtest.SHA256(other) {
		t.Fatalf("--revision main pinned %+v, want commit %s", p, c2)
	}
	if !strings.Contains(log.String(), "re-pinned from commit "+c1+" to "+c2) {
		t.Errorf("re-pin log:\n%s", log)
	}
	opt.Revision = c1
	if _, err := catalog.Pull(context.Background(), hubEntry("tiny"), opt); err != nil {
		t.Fatal(err)
	}
	if p := manifestEntry(t, dir, "tiny").Pin; p.Commit != c1 {
		t.Fatalf("--revision %s pinned commit %s", c1, p.Commit)
	}

	// A recorded pin the hub's download headers contradict is refused before any byte is kept.
	forged := sha([]byte("recorded elsewhere"))
	if err := inference.UpdateManifest(dir, func(m *inference.Manifest) error {
		e, _ := m.Entry("tiny")
		e.Pin.SHA256 = forged
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	opt.Revision = ""
	_, err = catalog.Pull(context.Background(), hubEntry("tiny"), opt)
	assertOneLine(t, err)
	if !strings.Contains(err.Error(), "X-Linked-Etag") || !strings.Contains(err.Error(), forged) {
		t.Fatalf("a download whose X-Linked-Etag contradicts the recorded pin: %v", err)
	}
	if p := manifestEntry(t, dir, "tiny").Pin; p.SHA256 != forged || p.Commit != c1 {
		t.Errorf("a refused pull changed the recorded pin: %+v", p)
	}
}

// Stored hashes stay authoritative: the hub must agree with them (and with --sha256).
func TestHubAgreesWithStoredHashesOrIsRefused(t *testing.T) {
	h, data, c1 := newHub(t)
	dir := t.TempDir()
	opt, log := hubOptions(t, h, dir)

	e := hubEntry("stored")
	e.SHA256 = sha([]byte("another file"))
	_, err := catalog.Pull(context.Background(), e, opt)
	assertOneLine(t, err)
	if !strings.Contains(err.Error(), "Gibbon's catalog pins "+e.SHA256) || !strings.Contains(err.Error(), hubtest.SHA256(data)) {
		t.Fatalf("a hub disagreeing with the stored hash: %v", err)
	}
	if h.Count("cdn", "") != 0 || h.Count("hub", "/resolve/") != 0 {
		t.Fatal("a file was downloaded although the hub disagreed with the stored hash")
	}
	assertNothingRegistered(t, dir)

	e = hubEntry("user")
	opt.SHA256 = sha([]byte("what the user thought"))
	if _, err = catalog.Pull(context.Background(), e, opt); err == nil || !strings.Contains(err.Error(), "not the SHA-256 the hub attests") {
		t.Fatalf("--sha256 disagreeing with the hub: %v", err)
	}
	opt.SHA256 = ""
	assertNothingRegistered(t, dir)

	e = hubEntry("stored")
	e.SHA256, e.Size = hubtest.SHA256(data), int64(len(data))
	if _, err := catalog.Pull(context.Background(), e, opt); err != nil {
		t.Fatal(err)
	}
	if p := manifestEntry(t, dir, "stored").Pin; p.Source != inference.PinByCatalog || p.Commit != c1 {
		t.Errorf("pin of a stored hash the hub agrees with: %+v", p)
	}
	if !strings.Contains(log.String(), "attests the SHA-256 Gibbon's catalog pins") {
		t.Errorf("log:\n%s", log)
	}
}

// Bytes that are not the ones the hub attests are deleted, never registered.
func TestHubRefusesBytesThatDoNotMatchTheAttestedHash(t *testing.T) {
	h, data, _ := newHub(t)
	bad := append([]byte(nil), data...)
	bad[len(bad)/2] ^= 0xff
	h.Tamper(data, bad)
	dir := t.TempDir()
	opt, _ := hubOptions(t, h, dir)
	_, err := catalog.Pull(context.Background(), hubEntry("tampered"), opt)
	assertOneLine(t, err)
	if !strings.Contains(err.Error(), "SHA-256") || !strings.Contains(err.Error(), "nothing was registered") {
		t.Fatalf("tampered download: %v", err)
	}
	assertNothingRegistered(t, dir)
	if left, _ := os.ReadDir(filepath.Join(dir, catalog.DownloadsDir)); len(left) != 0 {
		t.Errorf("unverified bytes kept: %v", left)
	}
}

// A download cut halfway resumes: the hub is asked again (a fresh redirect, token
// and all), the CDN gets a Range request and never the token.
func TestHubResumesATruncatedDownload(t *testing.T) {
	h, data, c1 := newHub(t)
	cut := int64(len(data) / 3)
	h.CutOnce(data, cut)
	dir := t.TempDir()
	opt, _ := hubOptions(t, h, dir)
	if _, err := catalog.Pull(context.Background(), hubEntry("cut"), opt); err != nil {
		t.Fatal(err)
	}
	var cdn []hubtest.Request
	for _, r := range h.Requests() {
		if r.Server == "cdn" {
			cdn = append(cdn, r)
		}
	}
	if len(cdn) != 2 || cdn[0].Range != "" || cdn[1].Range != "bytes="+itoa(cut)+"-" {
		t.Fatalf("CDN requests %+v, want a full request then a resume from byte %d", cdn, cut)
	}
	if n := h.Count("hub", "/resolve/"+c1+"/"); n != 2 {
		t.Errorf("%d resolve requests at the commit, want 2", n)
	}

	// An earlier run's partial file resumes too.
	dir = t.TempDir()
	part := filepath.Join(dir, catalog.DownloadsDir, "partial-"+hubtest.SHA256(data)[:16]+".onnx.part")
	os.MkdirAll(filepath.Dir(part), 0o755)
	os.WriteFile(part, data[:len(data)/2], 0o644)
	before := len(h.Requests())
	opt, _ = hubOptions(t, h, dir)
	if _, err := catalog.Pull(context.Background(), hubEntry("partial"), opt); err != nil {
		t.Fatal(err)
	}
	last := h.Requests()[before:]
	if got := last[len(last)-1]; got.Server != "cdn" || got.Range != "bytes="+itoa(int64(len(data)/2))+"-" {
		t.Fatalf("requests %+v, want a resume of the partial file", last)
	}
}

// A file not stored with LFS has no SHA-256 attested: refused unless --sha256 is given.
func TestHubFileNotInLFSNeedsSHA256(t *testing.T) {
	h := hubtest.New(t)
	data := hubtest.Classifier(3, 224)
	c1 := h.Commit(hubRepo, "main", hubtest.File{Path: hubPath, Data: data})
	dir := t.TempDir()
	opt, _ := hubOptions(t, h, dir)
	_, err := catalog.Pull(context.Background(), hubEntry("plain"), opt)
	assertOneLine(t, err)
	if !errors.Is(err, catalog.ErrPinRequired) || !strings.Contains(err.Error(), "not stored with Git LFS") || !strings.Contains(err.Error(), "--sha256") {
		t.Fatalf("non-LFS file without --sha256: %v", err)
	}
	if h.Count("hub", "/resolve/") != 0 {
		t.Fatal("a file with no attested hash was downloaded")
	}
	assertNothingRegistered(t, dir)

	opt.SHA256 = sha([]byte("not it"))
	if _, err := catalog.Pull(context.Background(), hubEntry("plain"), opt); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("non-LFS file with a wrong --sha256: %v", err)
	}
	assertNothingRegistered(t, dir)

	opt.SHA256 = strings.ToUpper(hubtest.SHA256(data))
	if _, err := catalog.Pull(context.Background(), hubEntry("plain"), opt); err != nil {
		t.Fatal(err)
	}
	p := manifestEntry(t, dir, "plain").Pin
	if p.Source != inference.PinByUser || p.Commit != c1 || p.SHA256 != hubtest.SHA256(data) {
		t.Fatalf("pin of a non-LFS file: %+v", p)
	}
	if h.Count("cdn", "") != 0 {
		t.Error("a non-LFS file went through the CDN")
	}
}

// A renamed file, a missing repository, an unknown revision: one line each, naming what to do.
func TestHubMissingRenamedOrUnknown(t *testing.T) {
	h := hubtest.New(t)
	h.Commit(hubRepo, "main", hubtest.File{Path: "tiny_v2_Opset17.onnx", Data: hubtest.Classifier(4, 224), LFS: true})
	dir := t.TempDir()
	opt, _ := hubOptions(t, h, dir)
	for _, c := range []struct {
		name     string
		repo     string
		revision string
		want     []string
	}{
		{"renamed", hubRepo, "", []string{"has no file " + hubPath, "tiny_v2_Opset17.onnx", "--revision"}},
		{"norepo", "modelzoo/missing", "", []string{"the hub has no modelzoo/missing", "HF_TOKEN"}},
		{"norev", hubRepo, "v9", []string{"revision v9", "check --revision"}},
	} {
		e := hubEntry(c.name)
		e.Hub.Repo = c.repo
		opt.Revision = c.revision
		_, err := catalog.Pull(context.Background(), e, opt)
		assertOneLine(t, err)
		t.Log(err)
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v (lacks %q)", c.name, err, w)
			}
		}
	}
	assertNothingRegistered(t, dir)
	if h.Count("hub", "/resolve/") != 0 {
		t.Error("something was downloaded")
	}
}

// 429 with Retry-After: the pull waits as told, then goes on; a wait too long to
// sit through is reported at once; a hub that keeps refusing is given up on.
func TestHubRateLimited(t *testing.T) {
	h, _, _ := newHub(t)
	dir := t.TempDir()
	opt, _ := hubOptions(t, h, dir)
	h.Throttle(1, "1")
	start := time.Now()
	if _, err := catalog.Pull(context.Background(), hubEntry("limited"), opt); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("pull took %v: Retry-After: 1 was not honoured (backoff is %v)", d, opt.Backoff)
	}
	if n := h.Count("hub", "/revision/"); n != 2 {
		t.Errorf("%d revision requests, want 2 (429, then the answer)", n)
	}

	dir = t.TempDir()
	opt, _ = hubOptions(t, h, dir)
	h.Throttle(100, "3600")
	start = time.Now()
	_, err := catalog.Pull(context.Background(), hubEntry("limited"), opt)
	assertOneLine(t, err)
	if !strings.Contains(err.Error(), "HTTP 429") || !strings.Contains(err.Error(), "asks to wait 1h0m0s") || time.Since(start) > 5*time.Second {
		t.Fatalf("an hour's Retry-After: %v after %v", err, time.Since(start))
	}
	h.Throttle(100, "")
	_, err = catalog.Pull(context.Background(), hubEntry("limited"), opt)
	assertOneLine(t, err)
	if !strings.Contains(err.Error(), "gave up after 3 tries") {
		t.Fatalf("a hub that keeps refusing: %v", err)
	}
	assertNothingRegistered(t, dir)
	h.Throttle(0, "")

	// The CDN's own 429 is retried after its Retry-After as well (the download's path).
	var n int
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		w.Write(hubtest.Classifier(5, 224))
	}))
	defer cdn.Close()
	data := hubtest.Classifier(5, 224)
	e := catalog.Entry{Name: "mirror429", Architecture: "t", Description: "t", URLs: []string{cdn.URL + "/m.onnx"},
		SHA256: sha(data), Size: int64(len(data)), PinSource: "test", Input: contractFor(false), OutputsLogits: true, Classes: 1000}
	start = time.Now()
	if _, err := catalog.Pull(context.Background(), e, options(t, t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if n != 2 || time.Since(start) < 900*time.Millisecond {
		t.Errorf("%d requests in %v: Retry-After on a download was not honoured", n, time.Since(start))
	}
}

// Bad input: no network, a DNS failure, a proxy answering HTML (for the API or the
// download), a partial file given with --from, a full disk. One line each, saying
// what happened and what to do; nothing half-registered.
func TestHubBadInput(t *testing.T) {
	h, data, _ := newHub(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	noDNS := &http.Client{Transport: &http.Transport{DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}}}
	for _, c := range []struct {
		name  string
		setup func(opt *catalog.Options, dir string)
		want  []string
	}{
		{"no network", func(opt *catalog.Options, _ string) { opt.HubURL = closedURL },
			[]string{"cannot connect to " + strings.TrimPrefix(closedURL, "http://"), "connection refused", "check your network"}},
		{"dns failure", func(opt *catalog.Options, _ string) { opt.HubURL, opt.Client = "http://hub.invalid", noDNS },
			[]string{"cannot look up hub.invalid", "DNS", "GIBBON_HUB_URL"}},
		{"proxy html api", func(*catalog.Options, string) { h.ServeHTML(true, false) },
			[]string{"HTML page", "proxy", "HTTPS_PROXY"}},
		{"proxy html download", func(*catalog.Options, string) { h.ServeHTML(false, true) },
			[]string{"HTML page, not the model file", "nothing was registered"}},
		{"partial file", func(opt *catalog.Options, _ string) {
			f := filepath.Join(t.TempDir(), "half.onnx")
			os.WriteFile(f, data[:len(data)/2], 0o644)
			opt.From, opt.SHA256 = f, hubtest.SHA256(data)
		}, []string{"half.onnx is not the", "SHA-256", "nothing was registered"}},
		{"full disk", func(_ *catalog.Options, dir string) {
			if _, err := os.Stat("/dev/full"); err != nil {
				t.Skip("no /dev/full here")
			}
			part := filepath.Join(dir, catalog.DownloadsDir, "bad-"+hubtest.SHA256(data)[:16]+".onnx.part")
			os.MkdirAll(filepath.Dir(part), 0o755)
			if err := os.Symlink("/dev/full", part); err != nil {
				t.Fatal(err)
			}
		}, []string{"is full", "free some space", "run the same command again"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer h.ServeHTML(false, false)
			dir := t.TempDir()
			opt, _ := hubOptions(t, h, dir)
			c.setup(&opt, dir)
			_, err := catalog.Pull(context.Background(), hubEntry("bad"), opt)
			assertOneLine(t, err)
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v (lacks %q)", err, w)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, inference.ManifestFile)); !os.IsNotExist(err) {
				t.Error("a manifest was written")
			}
			if onnx, _ := filepath.Glob(filepath.Join(dir, "*.onnx")); len(onnx) != 0 {
				t.Errorf("model files written: %v", onnx)
			}
		})
	}
}

func TestHubSettingsFromEnv(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if u, tok := catalog.HubSettingsFromEnv(get); u != catalog.DefaultHubURL || tok != "" {
		t.Fatalf("defaults: %q %q", u, tok)
	}
	env["GIBBON_HUB_URL"], env["HF_TOKEN"] = " http://mirror.test:8080 ", "hf_x"
	if u, tok := catalog.HubSettingsFromEnv(get); u != "http://mirror.test:8080" || tok != "hf_x" {
		t.Fatalf("from env: %q %q", u, tok)
	}
	opt := catalog.Options{Dir: t.TempDir(), HubURL: "ftp://nowhere"}
	if _, err := catalog.Pull(context.Background(), hubEntry("x"), opt); err == nil || !strings.Contains(err.Error(), "GIBBON_HUB_URL") {
		t.Fatalf("a hub URL that is not http(s): %v", err)
	}
}

// The built-in catalog's hub entries, served by the fake hub under their own repository
// and file names at their input sizes: each is pinned, prepared under its contract and
// registered with its NIPS'17 role, and the app's registry serves them all.
func TestHubPullsTheCatalogsHubEntries(t *testing.T) {
	h := hubtest.New(t)
	dir := t.TempDir()
	opt, log := hubOptions(t, h, dir)
	var names []string
	for i, e := range catalog.Default() {
		if !e.HubPinned() {
			continue
		}
		h.Commit(e.Hub.Repo, "main", hubtest.File{Path: e.Hub.Path, Data: hubtest.Classifier(uint64(30+i), int64(e.Input.Height)), LFS: true})
		if _, err := catalog.Pull(context.Background(), e, opt); err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		names = append(names, e.Name)
		me := manifestEntry(t, dir, e.Name)
		if me.Role != e.Role || me.Robust != e.Robust || me.Input.Height != e.Input.Height || me.Pin.Source != inference.PinByHub || me.Pin.Repo != e.Hub.Repo {
			t.Errorf("%s registered as %+v", e.Name, me)
		}
	}
	if len(names) < 4 || strings.Count(log.String(), "pinned by the hub at commit") != len(names) {
		t.Fatalf("pulled %v; log:\n%s", names, log)
	}
	reg, err := zoo.Load(context.Background(), testrt.Open(t), inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if probs := reg.Problems(); len(probs) != 0 || len(reg.Classifiers()) != len(names) {
		t.Fatalf("registry: %d classifiers of %d, problems %v", len(reg.Classifiers()), len(names), probs)
	}
}
