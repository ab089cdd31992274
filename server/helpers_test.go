package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/onnx"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
)

// Test models. "templates" is a nearest-template classifier over MNIST-style
// inputs: logit k = 12 × cosine(input, template k), where templates 0, 1 and 7 are
// the preprocessed shapes below and the rest are zero-mean noise. It answers "7"
// for the seven shape, "1" for a vertical stroke and "0" for a ring, so tests can
// check the whole path: upload → decode → preprocess → ONNX Runtime → page.
// "colours" is a 32×32 RGB NHWC model with mean/std and a softmax output that
// says which channel is brightest.

var mnistContract = inference.InputContract{Name: "image", Layout: "NCHW", Channels: 1, Height: 28, Width: 28,
	Color: "gray", Range: [2]float64{0, 1}, Resize: "mnist"}

var colourContract = inference.InputContract{Name: "pixels", Layout: "NHWC", Channels: 3, Height: 32, Width: 32,
	Color: "RGB", Range: [2]float64{0, 1}, Mean: []float64{0.5, 0.5, 0.5}, Std: []float64{0.25, 0.25, 0.25},
	Resize: "crop", CropPct: 0.875}

// drawShape draws a black digit-like shape on a white w×h page.
func drawShape(digit string, w, h int) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	s := float64(min(w, h))
	cx, cy := float64(w)/2, float64(h)/2
	stroke := s * 0.09
	ink := func(f func(x, y float64) bool) {
		for y := range h {
			for x := range w {
				if f(float64(x)+0.5, float64(y)+0.5) {
					img.Pix[y*w+x] = 0
				}
			}
		}
	}
	seg := func(x0, y0, x1, y1 float64) func(x, y float64) bool {
		return func(x, y float64) bool { return segDist(x, y, x0, y0, x1, y1) <= stroke/2 }
	}
	switch digit {
	case "0":
		ink(func(x, y float64) bool {
			r := math.Hypot((x-cx)/0.7, y-cy)
			return math.Abs(r-s*0.3) <= stroke/2
		})
	case "1":
		ink(seg(cx, cy-s*0.35, cx, cy+s*0.35))
	case "7":
		ink(seg(cx-s*0.25, cy-s*0.33, cx+s*0.25, cy-s*0.33))
		ink(seg(cx+s*0.25, cy-s*0.33, cx-s*0.08, cy+s*0.35))
	}
	return img
}

func segDist(px, py, x0, y0, x1, y1 float64) float64 {
	dx, dy := x1-x0, y1-y0
	t := 0.0
	if l := dx*dx + dy*dy; l > 0 {
		t = math.Max(0, math.Min(1, ((px-x0)*dx+(py-y0)*dy)/l))
	}
	return math.Hypot(px-(x0+t*dx), py-(y0+t*dy))
}

func pngBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func templateModel(t testing.TB) []byte {
	t.Helper()
	w := templateWeights(t, 1) // seed 1: the templates of cosineModel(t, 1)
	// Dividing by the input's norm makes the logits cosines (×12).
	b := onnx.NewBuilder("templates")
	x := b.Input("image", 1, 1, 28, 28)
	flat := b.Op("Reshape", []string{x, b.Ints(1, 784)})
	norm := b.Op("Sqrt", []string{b.Op("Add", []string{b.Op("ReduceSumSquare", []string{flat}, onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 1)), b.Scalar(1e-6)})})
	y := b.Op("Div", []string{b.Op("MatMul", []string{flat, b.Init("W", []int64{784, 10}, w)}), norm})
	b.Output("logits", y, 1, 10)
	return b.Bytes()
}

func colourModel() []byte {
	b := onnx.NewBuilder("colours")
	x := b.Input("pixels", 1, 32, 32, 3)
	m := b.Op("ReduceMean", []string{x}, onnx.AttrInts("axes", 1, 2), onnx.AttrInt("keepdims", 0))
	y := b.Op("Softmax", []string{b.Op("Mul", []string{m, b.Scalar(10)})}, onnx.AttrInt("axis", 1))
	b.Output("probs", y, 1, 3)
	return b.Bytes()
}

// slowModel takes seconds per image on one CPU thread (a chain of 532×532
// matrix products), so a test can shut the server down while it runs.
func slowModel() []byte {
	b := onnx.NewBuilder("slow")
	x := b.Input("image", 1, 1, 28, 28)
	sq := b.Op("Tile", []string{b.Op("Reshape", []string{x, b.Ints(28, 28)}), b.Ints(19, 19)}) // 532×532
	n := 532
	w := make([]float32, n*n)
	for i := range w {
		w[i] = float32((i*31)%7-3) / float32(n)
	}
	wn := b.Init("W", []int64{int64(n), int64(n)}, w)
	y := sq
	for range 400 {
		y = b.Op("MatMul", []string{y, wn})
	}
	out := b.Op("Slice", []string{y, b.Ints(0, 0), b.Ints(1, 10)})
	b.Output("logits", out, 1, 10)
	return b.Bytes()
}

func shaHex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func digitLabels() []string { return []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"} }

// modelDir writes a user models directory: the two test models, one model whose
// checksum is wrong (a load problem), and samples/.
func modelDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	tm, cm := templateModel(t), colourModel()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("templates.onnx", tm)
	write("colours.onnx", cm)
	man := inference.Manifest{Models: []inference.ModelEntry{
		{Name: "templates", File: "templates.onnx", SHA256: shaHex(tm), Task: inference.TaskClassifier,
			Description: "Nearest template (test model).", Architecture: "cosine to 10 templates",
			Input: mnistContract, Labels: digitLabels(), OutputsLogits: true,
			Metrics: map[string]float64{"clean_accuracy": 0.42, "clean_accuracy_first500": 0.5, "pgd40_eps0.3_accuracy_first100": 0.1,
				"pgd40_eps0.3_step0.02_accuracy": 0.2},
			Training: &inference.Provenance{Command: "go test ./server", Seed: 1, Data: "three drawn shapes"}},
		{Name: "colours", File: "colours.onnx", SHA256: shaHex(cm), Task: inference.TaskClassifier,
			Architecture: "channel means", Robust: true,
			Input: colourContract, Labels: []string{"red", "green", "blue"}, OutputsLogits: false},
		{Name: "tampered", File: "templates.onnx", SHA256: shaHex(cm), Input: mnistContract, OutputsLogits: true},
	}}
	data, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	write("manifest.json", data)
	write("samples/digit-0-0.png", pngBytes(t, drawShape("0", 28, 28)))
	write("samples/digit-0-1.png", pngBytes(t, drawShape("0", 40, 40)))
	write("samples/digit-1-0.png", pngBytes(t, drawShape("1", 28, 28)))
	write("samples/digit-7-0.png", pngBytes(t, drawShape("7", 28, 28)))
	write("samples/notes.txt", []byte("not a sample"))
	return dir
}

// keepModels rewrites dir's manifest to list only the named models.
func keepModels(t testing.TB, dir string, names []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	man, err := inference.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	var kept []inference.ModelEntry
	for _, e := range man.Models {
		if slices.Contains(names, e.Name) {
			kept = append(kept, e)
		}
	}
	out, err := json.Marshal(inference.Manifest{Models: kept})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixture is a server over the test models, served by httptest.
type fixture struct {
	srv   *Server
	ts    *httptest.Server
	reg   *zoo.Zoo
	logs  *syncBuffer
	store *gallery.Store // nil without a gallery
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func loadModels(t testing.TB, dir string) *zoo.Zoo {
	t.Helper()
	reg, err := zoo.Load(context.Background(), testrt.Open(t),
		inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg
}

func newFixture(t testing.TB, edit func(*Config)) *fixture {
	t.Helper()
	return newFixtureWith(t, edit, nil)
}

// newFixtureWith serves only the named test models (all when only is nil).
func newFixtureWith(t testing.TB, edit func(*Config), only []string) *fixture {
	t.Helper()
	dir := modelDir(t)
	if only != nil {
		keepModels(t, dir, only)
	}
	cfg := DefaultConfig()
	cfg.UploadRate, cfg.UploadBurst = 1000, 1000
	if edit != nil {
		edit(&cfg)
	}
	logs := &syncBuffer{}
	reg := loadModels(t, dir)
	srv, err := New(Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Models: reg,
		Samples: []fs.FS{os.DirFS(filepath.Join(dir, "samples"))}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &fixture{srv: srv, ts: ts, reg: reg, logs: logs}
}

// client is a browser-less client with cookies.
func client(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
