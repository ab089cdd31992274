package ortinstall

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gibbon/inference"
)

// fakePackage is a small tarball shaped like onnxruntime-node's, with a release that
// pins it the way the real one is pinned.
type fakePackage struct {
	tgz []byte
	lib []byte
	rel *release
}

func makeTarball(t *testing.T, entries map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, data := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newFakePackage(t *testing.T) *fakePackage {
	t.Helper()
	lib := randomBytes(1, 200_000) // incompressible, so the download takes several reads
	libName := inference.LibraryFileName()
	tgz := makeTarball(t, map[string][]byte{
		"package/package.json":                                            []byte(`{"name":"onnxruntime-node","version":"1.24.1"}`),
		"package/bin/napi-v6/" + Platform() + "/" + libName:               lib,
		"package/bin/napi-v6/" + Platform() + "/onnxruntime_binding.node": []byte("binding"),
		"package/bin/napi-v6/other/arch/" + libName:                       []byte("other platform"),
	})
	sum512 := sha512.Sum512(tgz)
	sum256 := sha256.Sum256(lib)
	return &fakePackage{tgz: tgz, lib: lib, rel: &release{
		pkg: "onnxruntime-node", version: "1.24.1",
		integrity: "sha512-" + base64.StdEncoding.EncodeToString(sum512[:]),
		size:      int64(len(tgz)),
		platforms: map[string][]pinnedFile{Platform(): {{libName, int64(len(lib)), hex.EncodeToString(sum256[:])}}},
	}}
}

// fakeRegistry serves the version metadata and a tarball (normally fp's) the way an
// npm registry does; tarball handles the tarball route when set.
type fakeRegistry struct {
	*httptest.Server
	metaHits, tarHits atomic.Int32
}

func newFakeRegistry(t *testing.T, fp *fakePackage, announced string, tarball http.HandlerFunc) *fakeRegistry {
	t.Helper()
	reg := &fakeRegistry{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /onnxruntime-node/1.24.1", func(w http.ResponseWriter, r *http.Request) {
		reg.metaHits.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"name": "onnxruntime-node", "version": "1.24.1",
			"dist": map[string]string{"integrity": announced,
				"tarball": reg.URL + "/onnxruntime-node/-/onnxruntime-node-1.24.1.tgz"}})
	})
	mux.HandleFunc("GET /onnxruntime-node/-/onnxruntime-node-1.24.1.tgz", func(w http.ResponseWriter, r *http.Request) {
		reg.tarHits.Add(1)
		if tarball != nil {
			tarball(w, r)
			return
		}
		_, _ = w.Write(fp.tgz)
	})
	reg.Server = httptest.NewServer(mux)
	t.Cleanup(reg.Close)
	return reg
}

func newInstaller(reg *fakeRegistry, fp *fakePackage, dir string) *Installer {
	return &Installer{Registry: reg.URL, Dir: dir, release: fp.rel, StallTimeout: 5 * time.Second}
}

// dirNames lists what is in dir, hidden temporary files included.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// assertNothingInstalled: no library, no temporary file, and Check says so.
func assertNothingInstalled(t *testing.T, inst *Installer, dir string) {
	t.Helper()
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("files left behind in %s: %v", dir, names)
	}
	if _, ok, present, err := inst.Check(); ok || present || err != nil {
		t.Fatalf("Check after failure: ok=%v present=%v err=%v", ok, present, err)
	}
}

func TestInstallThenIdempotent(t *testing.T) {
	fp := newFakePackage(t)
	reg := newFakeRegistry(t, fp, fp.rel.integrity, nil)
	dir := filepath.Join(t.TempDir(), "cache")
	var out bytes.Buffer
	inst := newInstaller(reg, fp, dir)
	inst.Progress = &out
	res, err := inst.Install(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyInstalled || res.Downloaded != fp.rel.size || res.Path != filepath.Join(dir, inference.LibraryFileName()) {
		t.Fatalf("result = %+v", res)
	}
	got, err := os.ReadFile(res.Path)
	if err != nil || !bytes.Equal(got, fp.lib) {
		t.Fatalf("installed library differs from the tarball's (%v)", err)
	}
	if names := dirNames(t, dir); len(names) != 1 || names[0] != inference.LibraryFileName() {
		t.Fatalf("dir holds %v, want only the library", names)
	}
	if !strings.Contains(out.String(), "100%") || strings.Contains(out.String(), "\r") {
		t.Errorf("plain progress should be lines ending at 100%%, got %q", out.String())
	}
	res, err = inst.Install(context.Background())
	if err != nil || !res.AlreadyInstalled {
		t.Fatalf("second install: %+v, %v", res, err)
	}
	if reg.tarHits.Load() != 1 || reg.metaHits.Load() != 1 {
		t.Fatalf("second install fetched again: %d metadata, %d tarball requests", reg.metaHits.Load(), reg.tarHits.Load())
	}
}

func TestInstallReplacesDamagedLibrary(t *testing.T) {
	fp := newFakePackage(t)
	reg := newFakeRegistry(t, fp, fp.rel.integrity, nil)
	dir := t.TempDir()
	lib := filepath.Join(dir, inference.LibraryFileName())
	damaged := append([]byte(nil), fp.lib...)
	damaged[1000] ^= 1
	if err := os.WriteFile(lib, damaged, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := newInstaller(reg, fp, dir).Install(context.Background())
	if err != nil || !res.Replaced || res.AlreadyInstalled {
		t.Fatalf("install over a damaged library: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(lib); !bytes.Equal(got, fp.lib) {
		t.Fatal("damaged library was not replaced")
	}
}

func TestTarballIntegrityMismatchIsRefused(t *testing.T) {
	fp := newFakePackage(t)
	tampered := append([]byte(nil), fp.tgz...)
	tampered[len(tampered)/2] ^= 0xff // same size, other bytes
	reg := newFakeRegistry(t, fp, fp.rel.integrity, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(tampered)
	})
	dir := t.TempDir()
	inst := newInstaller(reg, fp, dir)
	_, err := inst.Install(context.Background())
	if err == nil || !strings.Contains(err.Error(), "sha512") || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("tampered tarball: err = %v", err)
	}
	assertNothingInstalled(t, inst, dir)
}

func TestAnnouncedIntegrityMismatchIsRefusedBeforeDownload(t *testing.T) {
	fp := newFakePackage(t)
	reg := newFakeRegistry(t, fp, "sha512-"+base64.StdEncoding.EncodeToString(make([]byte, 64)), nil)
	dir := t.TempDir()
	inst := newInstaller(reg, fp, dir)
	_, err := inst.Install(context.Background())
	if err == nil || !strings.Contains(err.Error(), "pins") {
		t.Fatalf("err = %v", err)
	}
	if reg.tarHits.Load() != 0 {
		t.Fatal("downloaded a tarball whose announced integrity differs from the pin")
	}
	assertNothingInstalled(t, inst, dir)
}

func TestWrongSizeIsRefused(t *testing.T) {
	fp := newFakePackage(t)
	reg := newFakeRegistry(t, fp, fp.rel.integrity, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(append(append([]byte(nil), fp.tgz...), 0))
	})
	dir := t.TempDir()
	inst := newInstaller(reg, fp, dir)
	if _, err := inst.Install(context.Background()); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("err = %v", err)
	}
	assertNothingInstalled(t, inst, dir)
}

// The server promises the whole tarball, sends half, and drops the connection.
func TestConnectionCutMidDownloadLeavesNothing(t *testing.T) {
	fp := newFakePackage(t)
	reg := newFakeRegistry(t, fp, fp.rel.integrity, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(fp.tgz)))
		_, _ = w.Write(fp.tgz[:len(fp.tgz)/2])
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	dir := t.TempDir()
	inst := newInstaller(reg, fp, dir)
	_, err := inst.Install(context.Background())
	if err == nil {
		t.Fatal("a cut download was accepted")
	}
	t.Logf("refused: %v", err)
	assertNothingInstalled(t, inst, dir)
}

// Without a Content-Length, a body that ends early looks complete to HTTP.
func TestTruncatedChunkedDownloadLeavesNothing(t *testing.T) {
	fp := newFakePackage(t)
	reg := newFakeRegistry(t, fp, fp.rel.integrity, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(fp.tgz[:len(fp.tgz)/3])
		w.(http.Flusher).Flush() // chunked from here on
		_, _ = w.Write(fp.tgz[len(fp.tgz)/3 : len(fp.tgz)-10])
	})
	dir := t.TempDir()
	inst := newInstaller(reg, fp, dir)
	if _, err := inst.Install(context.Background()); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("truncated download: err = %v", err)
	}
	assertNothingInstalled(t, inst, dir)
}

func TestStalledDownloadGivesUp(t *testing.T) {
	fp := newFakePackage(t)
	reg := newFakeRegistry(t, fp, fp.rel.integrity, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(fp.tgz)))
		_, _ = w.Write(fp.tgz[:1000])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	dir := t.TempDir()
	inst := newInstaller(reg, fp, dir)
	inst.StallTimeout = 200 * time.Millisecond
	if _, err := inst.Install(context.Background()); err == nil || !strings.Contains(err.Error(), "no data") {
		t.Fatalf("stalled download: err = %v", err)
	}
	assertNothingInstalled(t, inst, dir)
}

func TestInterruptedDownloadLeavesNothing(t *testing.T) {
	fp := newFakePackage(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := newFakeRegistry(t, fp, fp.rel.integrity, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(fp.tgz)))
		_, _ = w.Write(fp.tgz[:len(fp.tgz)/2])
		w.(http.Flusher).Flush()
		cancel() // Ctrl-C half way
		<-r.Context().Done()
	})
	dir := t.TempDir()
	inst := newInstaller(reg, fp, dir)
	if _, err := inst.Install(ctx); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("interrupted download: err = %v", err)
	}
	assertNothingInstalled(t, inst, dir)
}

func TestLibraryNotMatchingItsPinIsRefused(t *testing.T) {
	fp := newFakePackage(t)
	fp.rel.platforms[Platform()][0].sha256 = strings.Repeat("0", 64)
	reg := newFakeRegistry(t, fp, fp.rel.integrity, nil)
	dir := t.TempDir()
	inst := newInstaller(reg, fp, dir)
	if _, err := inst.Install(context.Background()); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("err = %v", err)
	}
	assertNothingInstalled(t, inst, dir)
}

func TestTarballWithoutThisPlatformIsRefused(t *testing.T) {
	fp := newFakePackage(t)
	fp.rel.platforms = map[string][]pinnedFile{"plan9/mips": fp.rel.platforms[Platform()]}
	reg := newFakeRegistry(t, fp, fp.rel.integrity, nil)
	dir := t.TempDir()
	inst := newInstaller(reg, fp, dir)
	inst.platform = "plan9/mips"
	if _, err := inst.Install(context.Background()); err == nil || !strings.Contains(err.Error(), "no package/bin/napi-v6/plan9/mips") {
		t.Fatalf("err = %v", err)
	}
	assertNothingInstalled(t, inst, dir)
	inst.platform = "beos/x86"
	if _, err := inst.Install(context.Background()); err == nil || !strings.Contains(err.Error(), "--ort-lib") {
		t.Fatalf("unknown platform: err = %v", err)
	}
}

func TestRegistryErrorsAreClear(t *testing.T) {
	fp := newFakePackage(t)
	dir := t.TempDir()
	inst := &Installer{Dir: dir, release: fp.rel}
	if _, err := inst.Install(context.Background()); !errors.Is(err, ErrNoRegistry) {
		t.Fatalf("no registry: err = %v", err)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	inst.Registry = srv.URL
	if _, err := inst.Install(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404 registry: err = %v", err)
	}
	assertNothingInstalled(t, inst, dir)
}

func TestProgressBarOnTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, true, "downloading x", 1000)
	for range 10 {
		_, _ = p.Write(make([]byte, 100))
	}
	p.done()
	s := buf.String()
	if !strings.Contains(s, "\r") || !strings.Contains(s, "100%") || !strings.Contains(s, "[==============================]") {
		t.Fatalf("bar = %q", s)
	}
}

// The pins describe the release the rest of Gibbon expects, and the library this
// machine has installed (CI installs it before the tests) matches them.
func TestPinnedReleaseMatchesInstalledLibrary(t *testing.T) {
	if pinned.version != inference.ORTVersion {
		t.Fatalf("pinned onnxruntime-node %s, Gibbon needs ORT %s", pinned.version, inference.ORTVersion)
	}
	if _, err := parseIntegrity(pinned.integrity); err != nil {
		t.Fatal(err)
	}
	files, ok := pinned.platforms[Platform()]
	if !ok || files[0].name != inference.LibraryFileName() {
		t.Fatalf("no pinned library %s for %s", inference.LibraryFileName(), Platform())
	}
	lib, ok, _, err := (&Installer{}).Check()
	if err != nil || !ok {
		t.Fatalf("installed library %s does not match its pin (ok=%v, err=%v): run `gibbon runtime install`", lib, ok, err)
	}
}
