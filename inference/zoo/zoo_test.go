package zoo_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
	"gibbon/models"
)

var mnistInput = inference.InputContract{Name: "image", Layout: "NCHW", Channels: 1, Height: 28, Width: 28,
	Color: "gray", Range: [2]float64{0, 1}, Resize: "mnist"}

// linearModel is logits = flatten(image) · W + b, W[i][k] = scale·((i*7+k*13)%17 − 8).
func linearModel(softmax, declareOutput bool, scale float32) []byte {
	b := onnx.NewBuilder("linear")
	x := b.Input("image", 1, 1, 28, 28)
	flat := b.Op("Reshape", []string{x, b.Ints(1, 784)})
	w := make([]float32, 784*10)
	for i := range 784 {
		for k := range 10 {
			w[i*10+k] = scale * float32((i*7+k*13)%17-8)
		}
	}
	bias := []float32{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}
	y := b.Op("Add", []string{b.Op("MatMul", []string{flat, b.Init("W", []int64{784, 10}, w)}), b.Init("b", []int64{10}, bias)})
	if softmax {
		y = b.Op("Softmax", []string{y}, onnx.AttrInt("axis", 1))
	}
	if declareOutput {
		b.Output("scores", y, 1, 10)
	} else {
		b.Output("scores", y)
	}
	return b.Bytes()
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func writeManifest(t *testing.T, dir string, entries []inference.ModelEntry) {
	t.Helper()
	data, err := json.MarshalIndent(inference.Manifest{Models: entries}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func digits() []string { return []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"} }

func TestZooServesGoodModelsAndReportsBadOnes(t *testing.T) {
	rt := testrt.Open(t)
	dir := t.TempDir()
	lin := linearModel(false, true, 0.01)
	soft := linearModel(true, true, 0.01)
	dyn := linearModel(false, false, 0.01)
	writeFile(t, dir, "linear.onnx", lin)
	writeFile(t, dir, "soft.onnx", soft)
	writeFile(t, dir, "dyn.onnx", dyn)
	writeFile(t, dir, "junk.onnx", []byte("not a model"))
	writeFile(t, dir, "labels.txt", []byte("zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n"))
	entry := func(name, file, sum string, edit func(*inference.ModelEntry)) inference.ModelEntry {
		e := inference.ModelEntry{Name: name, File: file, SHA256: sum, Input: mnistInput, Labels: digits(), OutputsLogits: true,
			Architecture: "linear 784→10"}
		if edit != nil {
			edit(&e)
		}
		return e
	}
	writeManifest(t, dir, []inference.ModelEntry{
		entry("good", "linear.onnx", sha(lin), nil),
		entry("softmax", "soft.onnx", strings.ToUpper(sha(soft)), func(e *inference.ModelEntry) {
			e.OutputsLogits, e.Labels, e.LabelsFile = false, nil, "labels.txt"
		}),
		entry("dynamic", "dyn.onnx", sha(dyn), func(e *inference.ModelEntry) { e.Labels = nil }),
		entry("bad-sum", "linear.onnx", sha(soft), nil),
		entry("no-sum", "linear.onnx", "", nil),
		entry("missing", "nope.onnx", sha(lin), nil),
		entry("escape", "../linear.onnx", sha(lin), nil),
		entry("junk", "junk.onnx", sha([]byte("not a model")), nil),
		entry("wrong-size", "linear.onnx", sha(lin), func(e *inference.ModelEntry) { e.Input.Width, e.Input.Height = 32, 32 }),
		entry("wrong-input", "linear.onnx", sha(lin), func(e *inference.ModelEntry) { e.Input.Name = "pixels" }),
		entry("wrong-labels", "linear.onnx", sha(lin), func(e *inference.ModelEntry) { e.Labels = e.Labels[:5] }),
		entry("bad-contract", "linear.onnx", sha(lin), func(e *inference.ModelEntry) { e.Input.Layout = "CHW" }),
		entry("bad-task", "linear.onnx", sha(lin), func(e *inference.ModelEntry) { e.Task = "detector" }),
	})

	reg, err := zoo.Load(context.Background(), rt, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	var names []string
	for _, m := range reg.Classifiers() {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"good", "softmax", "dynamic"}) {
		t.Fatalf("served %v, want good, softmax, dynamic", names)
	}
	if m, _ := reg.Model("softmax"); m.Labels[3] != "three" {
		t.Fatalf("labels file not read: %v", m.Labels)
	}
	if m, _ := reg.Model("dynamic"); len(m.Labels) != 10 || m.Labels[9] != "9" {
		t.Fatalf("labels of a model without labels: %v", m.Labels)
	}

	want := map[string]string{
		"bad-sum":      "checksum mismatch: the file's sha256 is " + sha(lin),
		"no-sum":       "gives no sha256; the file's is " + sha(lin),
		"missing":      "read model file",
		"escape":       "not a path inside the models directory",
		"junk":         "ONNX Runtime cannot load it",
		"wrong-size":   `input "image" has shape [1, 1, 28, 28], the manifest's contract (NCHW, 1 channel(s), 32×32) means [1, 1, 32, 32]`,
		"wrong-input":  `input "pixels" is not a graph input`,
		"wrong-labels": `5 labels, output "scores" has 10 scores`,
		"bad-contract": `layout is "CHW"`,
		"bad-task":     `task "detector" is unknown`,
	}
	got := map[string]string{}
	for _, p := range reg.Problems() {
		got[p.Model] = p.Error()
		if p.Source != dir {
			t.Errorf("problem %v: source %q", p, p.Source)
		}
	}
	for name, msg := range want {
		if !strings.Contains(got[name], msg) {
			t.Errorf("problem for %s = %q, want it to say %q", name, got[name], msg)
		}
	}
	if len(got) != len(want) {
		t.Errorf("problems %v, want exactly %d", got, len(want))
	}
}

func TestZooManifestProblemsAndDuplicateNames(t *testing.T) {
	rt := testrt.Open(t)
	a, b, empty, broken := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	lin := linearModel(false, true, 0.01)
	for _, dir := range []string{a, b} {
		writeFile(t, dir, "linear.onnx", lin)
		writeManifest(t, dir, []inference.ModelEntry{{Name: "same", File: "linear.onnx", SHA256: sha(lin), Input: mnistInput, OutputsLogits: true}})
	}
	writeFile(t, broken, "manifest.json", []byte(`{"models": [`))
	reg, err := zoo.Load(context.Background(), rt,
		inference.ModelSource{Name: "first", FS: os.DirFS(a)},
		inference.ModelSource{Name: "second", FS: os.DirFS(b)},
		inference.ModelSource{Name: "empty", FS: os.DirFS(empty)},
		inference.ModelSource{Name: "broken", FS: os.DirFS(broken)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if all := reg.All(); len(all) != 1 || all[0].Source != "first" {
		t.Fatalf("models %v", all)
	}
	probs := reg.Problems()
	if len(probs) != 3 {
		t.Fatalf("problems %v", probs)
	}
	for i, want := range []string{
		`second model "same" (linear.onnx): the name is already used by a first model`,
		"empty models: read manifest.json",
		"broken models: manifest:",
	} {
		if !strings.Contains(probs[i].Error(), want) {
			t.Errorf("problem %d = %q, want %q", i, probs[i], want)
		}
	}
}

func TestModelProbabilitiesAndTopK(t *testing.T) {
	rt := testrt.Open(t)
	dir := t.TempDir()
	lin, soft := linearModel(false, true, 0.01), linearModel(true, true, 0.01)
	writeFile(t, dir, "lin.onnx", lin)
	writeFile(t, dir, "soft.onnx", soft)
	writeManifest(t, dir, []inference.ModelEntry{
		{Name: "logits", File: "lin.onnx", SHA256: sha(lin), Input: mnistInput, Labels: digits(), OutputsLogits: true},
		{Name: "probs", File: "soft.onnx", SHA256: sha(soft), Input: mnistInput, Labels: digits(), OutputsLogits: false},
	})
	reg, err := zoo.Load(context.Background(), rt, inference.ModelSource{Name: "t", FS: os.DirFS(dir)})
	if err != nil || len(reg.Problems()) > 0 {
		t.Fatal(err, reg.Problems())
	}
	defer reg.Close()
	x := inference.NewTensor(1, 1, 28, 28)
	for i := range x.Data {
		x.Data[i] = float32(i%5) / 4
	}
	// The expected logits, computed here in float64.
	want := make([]float64, 10)
	for k := range 10 {
		want[k] = 0.1 * float64(k)
		for i := range 784 {
			want[k] += float64(x.Data[i]) * 0.01 * float64((i*7+k*13)%17-8)
		}
	}
	hi := slices.Max(want)
	var sum float64
	for k := range want {
		want[k] = math.Exp(want[k] - hi)
		sum += want[k]
	}
	for _, name := range []string{"logits", "probs"} {
		m, _ := reg.Model(name)
		ps, err := m.Probabilities(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		p := ps[0]
		for k := range p {
			if math.Abs(float64(p[k])-want[k]/sum) > 1e-4 {
				t.Fatalf("%s: p[%d] = %v, want %v", name, k, p[k], want[k]/sum)
			}
		}
		top := m.TopK(p, 5)
		if len(top) != 5 {
			t.Fatalf("top-5 has %d", len(top))
		}
		for i := 1; i < len(top); i++ {
			if top[i].Prob > top[i-1].Prob {
				t.Fatalf("top-5 not sorted: %v", top)
			}
		}
		best := 0
		for k := range p {
			if p[k] > p[best] {
				best = k
			}
		}
		if top[0].Index != best || top[0].Label != m.Labels[best] {
			t.Fatalf("top-1 %v, want class %d", top[0], best)
		}
	}
	m, _ := reg.Model("logits")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Probabilities(ctx, x); err == nil {
		t.Fatal("a cancelled context still ran")
	}
}

func TestBuiltinModelsLoadWithoutProblems(t *testing.T) {
	rt := testrt.Open(t)
	reg, err := zoo.Load(context.Background(), rt, inference.ModelSource{Name: "built-in", FS: models.FS()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	for _, p := range reg.Problems() {
		t.Errorf("built-in model problem: %v", p)
	}
	for _, m := range reg.Classifiers() {
		pre, err := inference.Preprocess(blankDigit(), m.Input.Unnormalized())
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		ps, err := m.Probabilities(context.Background(), pre.Tensor)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		p := ps[0]
		var sum float32
		for _, v := range p {
			sum += v
		}
		if math.Abs(float64(sum)-1) > 1e-3 {
			t.Fatalf("%s: probabilities sum to %v", m.Name, sum)
		}
	}
}

// blankDigit is a "1": a black bar on white paper.
func blankDigit() image.Image {
	img := image.NewGray(image.Rect(0, 0, 60, 60))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	for y := 10; y < 50; y++ {
		for x := 27; x < 33; x++ {
			img.Pix[y*60+x] = 0
		}
	}
	return img
}

func TestZooLoadsEachModelOnceOnFirstUse(t *testing.T) {
	rt := testrt.Open(t)
	dir := t.TempDir()
	lin := linearModel(false, true, 0.01)
	writeFile(t, dir, "linear.onnx", lin)
	writeManifest(t, dir, []inference.ModelEntry{
		{Name: "good", File: "linear.onnx", SHA256: sha(lin), Input: mnistInput, OutputsLogits: true},
		{Name: "bad", File: "linear.onnx", SHA256: sha([]byte("other")), Input: mnistInput, OutputsLogits: true},
	})
	z := zoo.Open(rt, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	defer z.Close()
	if names := z.Names(""); !slices.Equal(names, []string{"good", "bad"}) {
		t.Fatalf("names %v", names)
	}
	if len(z.All()) != 0 || len(z.Problems()) != 0 {
		t.Fatalf("Open loaded models (%d) or found problems (%v) before any use", len(z.All()), z.Problems())
	}
	a, err := z.Get(context.Background(), "good")
	if err != nil {
		t.Fatal(err)
	}
	b, err := z.Get(context.Background(), "good")
	if err != nil || a != b || a.Net() != b.Net() {
		t.Fatalf("second Get gave another model (%p, %p) or %v", a, b, err)
	}
	if _, err := z.Get(context.Background(), "bad"); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("bad model: %v", err)
	}
	if _, err := z.Get(context.Background(), "ghost"); err == nil || !strings.Contains(err.Error(), `no model called "ghost" (have: good, bad)`) {
		t.Fatalf("unknown model: %v", err)
	}
	if p := z.Problems(); len(p) != 1 || p[0].Model != "bad" {
		t.Fatalf("problems %v", p)
	}
	if all := z.All(); len(all) != 1 || all[0] != a {
		t.Fatalf("loaded %v", all)
	}
}

// TestWarmGradientsBuildsEveryClassifiersGraphs: after WarmGradients every
// classifier has its gradient graph (Providers names where it runs) and the
// warm-up is not counted as an attack's passes; a graph Gibbon cannot
// differentiate (Atan on the logits) is named with the reason and still served.
func TestWarmGradientsBuildsEveryClassifiersGraphs(t *testing.T) {
	rt := testrt.Open(t)
	dir := t.TempDir()
	atan := atanModel()
	writeFile(t, dir, "atan.onnx", atan)
	writeManifest(t, dir, []inference.ModelEntry{
		{Name: "atan", File: "atan.onnx", SHA256: sha(atan), Input: mnistInput, OutputsLogits: true},
	})
	z, err := zoo.Load(context.Background(), rt,
		inference.ModelSource{Name: "built-in", FS: models.FS()}, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	for _, m := range z.Classifiers() {
		if _, grad := m.Net().Providers(); grad != "" {
			t.Fatalf("%s has a gradient graph before any attack", m.Name)
		}
	}
	warmed, failed := z.WarmGradients(context.Background())
	if len(warmed) != len(z.Classifiers())-1 || len(failed) != 1 {
		t.Fatalf("warmed %v, failed %v", warmed, failed)
	}
	if err := failed["atan"]; !errors.Is(err, autodiff.ErrUnsupported) || !strings.Contains(err.Error(), "Atan") {
		t.Fatalf("atan: %v", err)
	}
	for _, name := range warmed {
		m, _ := z.Classifier(name)
		if _, grad := m.Net().Providers(); grad == "" {
			t.Fatalf("%s: no gradient graph after WarmGradients", name)
		}
		if f, b := m.Net().Passes(); f != 0 || b != 0 {
			t.Fatalf("%s: warm-up counted as %d forward, %d backward passes", name, f, b)
		}
	}
	if _, ok := z.Classifier("atan"); !ok {
		t.Fatal("the graph without gradients is no longer served")
	}
	// A cancelled warm-up stops and blames no model.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if warmed, failed := z.WarmGradients(ctx); len(warmed) != 0 || len(failed) != 0 {
		t.Fatalf("cancelled: warmed %v, failed %v", warmed, failed)
	}
}

// atanModel is a linear classifier with Atan on its logits: an op the autodiff
// transform has no rule for.
func atanModel() []byte {
	b := onnx.NewBuilder("atan")
	x := b.Input("image", 1, 1, 28, 28)
	flat := b.Op("Flatten", []string{x})
	w := make([]float32, 784*10)
	for i := range w {
		w[i] = 0.01 * float32(i%17-8)
	}
	y := b.Op("Atan", []string{b.Op("MatMul", []string{flat, b.Init("W", []int64{784, 10}, w)})})
	b.Output("scores", y, 1, 10)
	return b.Bytes()
}

// Add registers a model while readers use the zoo: it is loaded once, listed and
// usable at once; a taken name and a file that does not load are refused and leave
// the zoo as it was.
func TestZooAddWhileServing(t *testing.T) {
	rt := testrt.Open(t)
	dir := t.TempDir()
	lin := linearModel(false, true, 0.01)
	writeFile(t, dir, "lin.onnx", lin)
	writeManifest(t, dir, []inference.ModelEntry{{Name: "first", File: "lin.onnx", SHA256: sha(lin), Input: mnistInput, Labels: digits(), OutputsLogits: true}})
	src := inference.ModelSource{Name: dir, FS: os.DirFS(dir)}
	reg, err := zoo.Load(context.Background(), rt, src)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	// Readers run throughout (the race detector watches the lists).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = reg.Classifiers()
				_ = reg.Names("")
				_ = reg.Problems()
				_, _ = reg.Model("added")
				_, _ = reg.Entry("added")
			}
		}()
	}
	soft := linearModel(true, true, 0.01)
	writeFile(t, dir, "soft.onnx", soft)
	added := inference.ModelEntry{Name: "added", File: "soft.onnx", SHA256: sha(soft), Input: mnistInput, Labels: digits()}
	m, err := reg.Add(context.Background(), src, added)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := reg.Classifier("added"); !ok || got != m {
		t.Fatalf("added model not served as loaded: %v", ok)
	}
	if got, err := reg.Get(context.Background(), "added"); err != nil || got != m {
		t.Fatalf("Get after Add: %v (same model: %v)", err, got == m)
	}
	if names := reg.Names(inference.TaskClassifier); !slices.Equal(names, []string{"first", "added"}) {
		t.Errorf("names %v", names)
	}
	x := inference.NewTensor(1, 1, 28, 28)
	p, err := m.Probabilities(context.Background(), x)
	if err != nil || len(p) != 1 || len(p[0]) != 10 {
		t.Fatalf("added model does not classify: %v %v", p, err)
	}

	if _, err := reg.Add(context.Background(), src, added); err == nil || !strings.Contains(err.Error(), "already served") {
		t.Errorf("second Add of a name: %v", err)
	}
	bad := inference.ModelEntry{Name: "bad", File: "soft.onnx", SHA256: sha(lin), Input: mnistInput, Labels: digits()}
	if _, err := reg.Add(context.Background(), src, bad); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("Add of a file that does not match: %v", err)
	}
	if _, ok := reg.Entry("bad"); ok || len(reg.Problems()) != 0 || len(reg.All()) != 2 {
		t.Errorf("a refused Add left traces: entry %v, problems %v, %d models", ok, reg.Problems(), len(reg.All()))
	}
}
