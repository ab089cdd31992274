package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/onnx"
)

func runtimeCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	err := run(context.Background(), append([]string{"runtime"}, args...), &out, &errw)
	return out.String(), errw.String(), err
}

// The installed library (CI installs it before the tests) describes itself.
func TestRuntimeInfoReadsInstalledLibrary(t *testing.T) {
	t.Setenv("GIBBON_ORT_LIB", "")
	t.Setenv("GIBBON_EP", "")
	out, errs, err := runtimeCmd(t, "info")
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	for _, want := range []string{"version    " + inference.ORTVersion, "CPUExecutionProvider", "(from cache)", "cpu requested; a session runs on cpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("runtime info lacks %q:\n%s", want, out)
		}
	}
}

// Already installed: says so, and neither resolves a registry nor fetches anything.
func TestRuntimeInstallWhenInstalledFetchesNothing(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "no", http.StatusTeapot)
	}))
	defer srv.Close()
	t.Setenv("GIBBON_NPM_REGISTRY", srv.URL)
	out, errs, err := runtimeCmd(t, "install")
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	if !strings.Contains(out, "already installed") || hits.Load() != 0 {
		t.Fatalf("out %q, %d registry requests", out, hits.Load())
	}
}

// isolateCache points the user cache at an empty folder: no library installed.
func isolateCache(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", dir)
	t.Setenv("HOME", dir)
	t.Setenv("GIBBON_ORT_LIB", "")
	return dir
}

func assertOneLineNaming(t *testing.T, err error, fix string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), fix) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("want one line naming %q, got %v", fix, err)
	}
}

func TestRuntimeMissingLibraryIsOneLine(t *testing.T) {
	isolateCache(t)
	_, _, err := runtimeCmd(t, "info")
	if !errors.Is(err, inference.ErrNoRuntime) {
		t.Fatalf("err = %v", err)
	}
	assertOneLineNaming(t, err, "gibbon runtime install")
	_, _, err = runtimeCmd(t, "info", "--ort-lib", filepath.Join(t.TempDir(), "nope.so"))
	assertOneLineNaming(t, err, "gibbon runtime install")
	notLib := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.WriteFile(notLib, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runtimeCmd(t, "info", "--ort-lib", notLib)
	assertOneLineNaming(t, err, "gibbon runtime install")
	if !strings.Contains(out, notLib) {
		t.Errorf("info should still name the library it looked at: %q", out)
	}
}

func TestRuntimeInstallWithoutRegistryIsOneLine(t *testing.T) {
	isolateCache(t)
	t.Setenv("GIBBON_NPM_REGISTRY", "")
	t.Setenv("npm_config_registry", "")
	t.Setenv("NPM_CONFIG_REGISTRY", "")
	t.Setenv("PATH", t.TempDir()) // no npm binary to ask
	_, _, err := runtimeCmd(t, "install")
	assertOneLineNaming(t, err, "GIBBON_NPM_REGISTRY")
}

// A registry whose tarball is not the pinned one: refused, and the cache stays empty.
func TestRuntimeInstallRefusesWrongTarball(t *testing.T) {
	cache := isolateCache(t)
	var tarHits atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".tgz") {
			tarHits.Add(1)
			_, _ = w.Write([]byte("a small tarball that is not onnxruntime-node"))
			return
		}
		// Announce no integrity: the pin alone must catch the tarball.
		_ = json.NewEncoder(w).Encode(map[string]any{"dist": map[string]string{
			"tarball": srv.URL + "/onnxruntime-node/-/onnxruntime-node-1.24.1.tgz"}})
	}))
	defer srv.Close()
	_, _, err := runtimeCmd(t, "install", "--registry", srv.URL)
	assertOneLineNaming(t, err, "refusing")
	if tarHits.Load() != 1 {
		t.Fatalf("tarball requests: %d", tarHits.Load())
	}
	var left []string
	_ = filepath.Walk(cache, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) != 0 {
		t.Fatalf("files left in the cache: %v", left)
	}
}

func TestRuntimePlacementOnCPU(t *testing.T) {
	t.Setenv("GIBBON_EP", "")
	b := onnx.NewBuilder("tiny")
	x := b.Input("x", -1, 3)
	w := b.Init("w", []int64{3, 2}, []float32{1, 2, 3, 4, 5, 6})
	b.Output("y", b.Op("Relu", []string{b.Op("MatMul", []string{x, w})}), -1, 2)
	model := filepath.Join(t.TempDir(), "tiny.onnx")
	if err := os.WriteFile(model, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, err := runtimeCmd(t, "placement", "--ep", "cpu", model)
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	if !strings.Contains(out, "cpu requested, runs on cpu; nodes: CPUExecutionProvider") {
		t.Fatalf("placement said %q", out)
	}
	out, errs, err = runtimeCmd(t, "placement", "--ep", "cpu", "--grad", model)
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	if !strings.Contains(out, "tiny.onnx (gradient graph): cpu requested, runs on cpu") {
		t.Fatalf("gradient graph placement said %q", out)
	}
	out, errs, err = runtimeCmd(t, "placement", "--ep", "cpu", "--grad", "--target", "gpu", model)
	if err != nil || !strings.Contains(out, "tiny.onnx (gradient graph): cpu requested, runs on cpu") {
		t.Fatalf("gradient graph placement, GPU forms: %v %q\n%s", err, out, errs)
	}
	if _, _, err := runtimeCmd(t, "placement", "--grad", "--target", "tpu", model); err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--target") {
		t.Fatalf("bad --target: %v", err)
	}
	if _, _, err := runtimeCmd(t, "placement", filepath.Join(t.TempDir(), "missing.onnx")); err == nil || !strings.Contains(err.Error(), "no such file or built-in model") {
		t.Fatalf("missing model: %v", err)
	}
	if _, _, err := runtimeCmd(t, "placement"); err == nil {
		t.Fatal("placement without a model accepted")
	}
	if _, _, err := runtimeCmd(t, "frobnicate"); err == nil || exitCode(err) != 2 {
		t.Fatalf("unknown subcommand: %v", err)
	}
}

// A WebGPU provider without a Vulkan device falls back with one warning, the command
// ends (ORT deadlocks releasing its environment after such a failure: Close keeps it),
// and the next runtime in the process opens on the kept environment.
func TestRuntimeInfoWebGPUWithoutDeviceFallsBackAndEnds(t *testing.T) {
	t.Setenv("GIBBON_ORT_LIB", "")
	t.Setenv("VK_ICD_FILENAMES", filepath.Join(t.TempDir(), "no_icd.json"))
	t.Setenv("VK_DRIVER_FILES", filepath.Join(t.TempDir(), "no_icd.json"))
	type result struct {
		out string
		err error
	}
	done := make(chan result, 2)
	go func() {
		for range 2 {
			out, errs, err := runtimeCmd(t, "info", "--ep", "webgpu")
			if err != nil {
				err = fmt.Errorf("%w\n%s", err, errs)
			}
			done <- result{out, err}
		}
	}()
	for i := range 2 {
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("run %d: %v", i, r.err)
			}
			if !strings.Contains(r.out, "webgpu requested; a session runs on ") {
				t.Fatalf("run %d said %q", i, r.out)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("runtime info --ep webgpu hung (run %d)", i)
		}
	}
}

// Every command that opens the runtime takes --ep and --ort-lib.
func TestRuntimeFlagsOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"serve"}, {"runtime", "info"}, {"runtime", "placement"}, {"grad"}, {"attack"}, {"models", "pull"},
		{"train"}, {"eval"}, {"train-attack"}, {"eval-attack"}, {"bench", "grad"}, {"bench", "flops"}, {"bench", "pgd"},
		{"sweep"}, {"compete"}, {"transfer"},
	} {
		var out, errw bytes.Buffer
		err := run(context.Background(), append(args, "-h"), &out, &errw)
		help := out.String() + errw.String()
		if err == nil || !strings.Contains(help, "-ep ") || !strings.Contains(help, "-ort-lib ") {
			t.Errorf("gibbon %s -h: %v; the help lacks --ep or --ort-lib:\n%s", strings.Join(args, " "), err, help)
		}
	}
}

// A provider that cannot start (CUDA: the npm library ships without its provider
// library) falls back to the CPU with one warning line on the command's stderr,
// however many sessions the command opens; runtime info says where each model runs.
func TestCUDAFallsBackWithOneWarning(t *testing.T) {
	t.Setenv("GIBBON_ORT_LIB", "")
	t.Setenv("GIBBON_EP", "")
	out, errs, err := runtimeCmd(t, "info", "--ep", "cuda", "--grad")
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	if !strings.Contains(out, "cuda requested; a session runs on cpu") {
		t.Fatalf("runtime info --ep cuda:\n%s", out)
	}
	if n := strings.Count(errs, "did not start; falling back"); n != 1 || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("want exactly one warning line, got %d in:\n%s", n, errs)
	}
	m, err := builtinManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Models {
		want := e.Name + " (built-in): runs on cpu"
		if e.Task == inference.TaskClassifier {
			want += "; gradient graph on cpu"
		}
		if !strings.Contains(out, want) {
			t.Errorf("runtime info lacks %q:\n%s", want, out)
		}
	}
}
