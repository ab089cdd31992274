package inference_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"gibbon/inference"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

// logMu serialises tests that swap the default logger.
var logMu sync.Mutex

// captureWarnings routes the default logger (the runtime's, as testrt opens it)
// into a buffer for the test's duration.
func captureWarnings(t *testing.T) *bytes.Buffer {
	t.Helper()
	logMu.Lock()
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	t.Cleanup(func() {
		slog.SetDefault(prev)
		logMu.Unlock()
	})
	return &buf
}

func warnLines(buf *bytes.Buffer) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.Contains(l, "level=WARN") {
			out = append(out, l)
		}
	}
	return out
}

// smallCNN is a classifier-shaped graph: Conv, Relu, MaxPool, Gemm, Softmax on [N,1,8,8].
func smallCNN(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	randn := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return v
	}
	b := onnx.NewBuilder("small_cnn")
	x := b.Input("x", -1, 1, 8, 8)
	w := b.Init("conv_w", []int64{4, 1, 3, 3}, randn(36, 0.5))
	cb := b.Init("conv_b", []int64{4}, randn(4, 0.1))
	h := b.Op("Conv", []string{x, w, cb}, onnx.AttrInts("pads", 1, 1, 1, 1))
	h = b.Op("Relu", []string{h})
	h = b.Op("MaxPool", []string{h}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2))
	h = b.Op("Flatten", []string{h})
	fw := b.Init("fc_w", []int64{64, 10}, randn(640, 0.2))
	fb := b.Init("fc_b", []int64{10}, randn(10, 0.1))
	logits := b.Op("Gemm", []string{h, fw, fb})
	b.Output("logits", logits, -1, 10)
	b.Output("probs", b.Op("Softmax", []string{logits}, onnx.AttrInt("axis", 1)), -1, 10)
	return b.Bytes()
}

func randomTensor(seed uint64, shape ...int64) *inference.Tensor {
	r := rand.New(rand.NewPCG(seed, 11))
	t := inference.NewTensor(shape...)
	for i := range t.Data {
		t.Data[i] = r.Float32()
	}
	return t
}

// relL2 is |a-b| / |b|.
func relL2(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / max(den, 1e-30))
}

func TestDefaultSessionRunsOnRequestedProvider(t *testing.T) {
	rt := testrt.Open(t)
	s, err := rt.NewSession(smallCNN(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rt.EP() == inference.EPCPU && s.Provider() != inference.EPCPU {
		t.Fatalf("cpu runtime made a %s session", s.Provider())
	}
	lib := rt.Library()
	if lib.Version != inference.ORTVersion || !lib.Offers(inference.EPCPU) || len(lib.Providers) == 0 {
		t.Fatalf("library info = %+v", lib)
	}
}

// CUDA falls back to the CPU here (no CUDA provider libraries); on a machine where it
// starts, both sessions run on it. Either way: correct results, at most one warning.
func TestProviderFallbackWarnsOnce(t *testing.T) {
	rt := testrt.Open(t)
	inference.ForgetProviderState(rt, inference.EPCUDA)
	logs := captureWarnings(t)
	model := smallCNN(2)
	cpu, err := rt.NewSessionOn(model, inference.EPCPU)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	x := randomTensor(3, 2, 1, 8, 8)
	want, err := cpu.Run(context.Background(), map[string]*inference.Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	var providers []string
	for range 2 {
		s, err := rt.NewSessionOn(model, inference.EPCUDA)
		if err != nil {
			t.Fatalf("cuda request must fall back, not fail: %v", err)
		}
		providers = append(providers, s.Provider())
		got, err := s.Run(context.Background(), map[string]*inference.Tensor{"x": x})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if e := relL2(got["logits"].Data, want["logits"].Data); e > 1e-4 {
			t.Fatalf("%s logits differ from cpu: rel L2 %.2g", s.Provider(), e)
		}
	}
	warns := warnLines(logs)
	switch providers[0] {
	case inference.EPCUDA:
		if len(warns) != 0 {
			t.Fatalf("cuda started yet warned: %v", warns)
		}
	case inference.EPCPU:
		if len(warns) != 1 || !strings.Contains(warns[0], "ep=cuda") || !strings.Contains(warns[0], "using=cpu") {
			t.Fatalf("want exactly one fallback warning naming cuda, got %q", warns)
		}
	default:
		t.Fatalf("cuda request ran on %s", providers[0])
	}
	if providers[1] != providers[0] {
		t.Fatalf("providers changed between sessions: %v", providers)
	}
}

// A model that no provider can load is the model's fault: its error comes back and
// the GPU provider is neither warned about nor given up.
func TestBrokenModelIsNotBlamedOnProvider(t *testing.T) {
	rt := testrt.Open(t)
	inference.ForgetProviderState(rt, inference.EPCUDA)
	logs := captureWarnings(t)
	b := onnx.NewBuilder("bad")
	x := b.Input("x", 1, 3)
	b.Output("y", b.Op("NoSuchOp", []string{x}), 1, 3)
	if _, err := rt.NewSessionOn(b.Bytes(), inference.EPCUDA); err == nil || !strings.Contains(err.Error(), "NoSuchOp") {
		t.Fatalf("want the model's error naming NoSuchOp, got %v", err)
	}
	if w := warnLines(logs); len(w) != 0 {
		t.Fatalf("a broken model caused provider warnings: %v", w)
	}
	s, err := rt.NewSessionOn(smallCNN(4), inference.EPCUDA)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Provider() == inference.EPCPU && len(warnLines(logs)) != 1 {
		t.Fatalf("the first real fallback should warn once: %q", logs.String())
	}
}

func TestAutoSkipsSoftwareWebGPU(t *testing.T) {
	rt := testrt.Open(t)
	_ = captureWarnings(t)
	s, err := rt.NewSessionOn(smallCNN(5), inference.EPAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if inference.SoftwareGPUOnly() && s.Provider() == inference.EPWebGPU {
		t.Fatal("auto chose WebGPU on a machine whose only WebGPU device is a CPU driver")
	}
	if _, err := rt.NewSessionOn(smallCNN(5), "tpu"); err == nil {
		t.Fatal("unknown provider accepted")
	}
}

func TestPlacementOnCPU(t *testing.T) {
	rt := testrt.Open(t)
	p, err := rt.Placement(context.Background(), smallCNN(6), inference.EPCPU)
	if err != nil {
		t.Fatal(err)
	}
	if p.Provider != inference.EPCPU || len(p.OffProvider()) != 0 || p.Copies() != 0 {
		t.Fatalf("cpu placement = %+v", p)
	}
	ops := map[string]bool{}
	for _, n := range p.Nodes {
		ops[n.OpType] = true
	}
	for _, op := range []string{"MaxPool", "Gemm", "Softmax"} {
		if !ops[op] {
			t.Errorf("placement lacks %s: %+v", op, p.Nodes)
		}
	}
	if _, err := rt.Placement(context.Background(), []byte("not onnx"), inference.EPCPU); err == nil {
		t.Fatal("placement of a non-model succeeded")
	}
}

// A library of another ORT version, or a file that is no library, is refused with one
// line naming the command that fixes it, before ORT's environment is touched.
func TestOpenRuntimeRefusesWrongLibrary(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "fake.c")
	if err := os.WriteFile(src, []byte(`
typedef struct { const void* (*GetApi)(unsigned); const char* (*GetVersionString)(void); } base_t;
static const void* get_api(unsigned v) { (void)v; return 0; }
static const char* version(void) { return "1.20.0"; }
static const base_t base = { get_api, version };
const base_t* OrtGetApiBase(void) { return &base; }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cc := strings.Fields(goEnv(t, "CC"))
	fake := filepath.Join(dir, "libonnxruntime.so.1")
	if out, err := exec.Command(cc[0], append(cc[1:], "-shared", "-fPIC", "-o", fake, src)...).CombinedOutput(); err != nil {
		t.Fatalf("build fake library: %v\n%s", err, out)
	}
	info, err := inference.ReadLibraryInfo(fake)
	if err != nil || info.Version != "1.20.0" || len(info.Providers) != 0 {
		t.Fatalf("fake library info = %+v, %v", info, err)
	}
	notLib := filepath.Join(dir, "notlib.so")
	if err := os.WriteFile(notLib, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{fake: "1.20.0", notLib: "not a usable", filepath.Join(dir, "missing.so"): "no such file"} {
		_, err := inference.OpenRuntime(inference.RuntimeConfig{LibPath: path})
		if err == nil {
			t.Fatalf("%s accepted", path)
		}
		msg := err.Error()
		if !strings.Contains(msg, want) || !strings.Contains(msg, "gibbon runtime install") || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q should be one line with %q and the fix", path, msg, want)
		}
		if path == fake && !errors.Is(err, inference.ErrWrongVersion) {
			t.Errorf("wrong version error does not wrap ErrWrongVersion: %v", err)
		}
	}
}

func goEnv(t *testing.T, key string) string {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "cc"
	}
	return strings.TrimSpace(string(out))
}
