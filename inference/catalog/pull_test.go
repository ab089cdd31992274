package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/inference/onnx"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
)

func options(t *testing.T, dir string) catalog.Options {
	rt := testrt.Open(t)
	return catalog.Options{
		Dir: dir, Labels: labels(1000), LabelsFile: "imagenet_labels.txt",
		Runtime: func() (*inference.Runtime, error) { return rt, nil },
		Retries: 2, Backoff: time.Millisecond,
	}
}

func runModel(t *testing.T, model []byte, input string, x *inference.Tensor) *inference.Tensor {
	t.Helper()
	s, err := testrt.Open(t).NewSession(model)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(context.Background(), map[string]*inference.Tensor{input: x})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("%d outputs", len(out))
	}
	for _, v := range out {
		return v
	}
	return nil
}

func image(seed float32, nhwc bool) *inference.Tensor {
	shape := []int64{1, 3, 224, 224}
	if nhwc {
		shape = []int64{1, 224, 224, 3}
	}
	x := inference.NewTensor(shape...)
	for i := range x.Data {
		x.Data[i] = float32(math.Sin(float64(seed) + float64(i)*0.37))
	}
	return x
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// The four shapes of public ImageNet files: opset 12 and 17, with and without a
// terminal Softmax, and an NHWC one. Each is served, pulled, upgraded and registered;
// the registered file must run at batch 2 and agree, row by row, with the file as
// published run at batch 1.
func TestPullDownloadsPreparesAndRegisters(t *testing.T) {
	z := newZooServer(t)
	dir := t.TempDir()
	opt := options(t, dir)
	cases := []struct {
		name  string
		model tinyModel
	}{
		{"zoo12-logits", tinyModel{opset: 12, seed: 1}},
		{"zoo12-softmax", tinyModel{opset: 12, softmax: true, seed: 2}},
		{"timm17-logits", tinyModel{opset: 17, seed: 3}},
		{"lite11-nhwc-softmax", tinyModel{opset: 11, softmax: true, nhwc: true, seed: 4}},
	}
	published := map[string][]byte{}
	for _, c := range cases {
		data := c.model.build()
		published[c.name] = data
		e := z.entryFor(c.name, "/models/"+c.name+".onnx", data, c.model.nhwc)
		e.OutputsLogits = !c.model.softmax
		res, err := catalog.Pull(context.Background(), e, opt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		p := res.Prepared
		if !p.BatchDynamic || p.OutputsLogits == c.model.softmax || p.Classes != 1000 {
			t.Errorf("%s: prepared %+v", c.name, p)
		}
		if c.model.opset < 17 && (p.Upgrade.From != c.model.opset || p.Upgrade.To != 17 || len(p.Upgrade.Rewrites) == 0) {
			t.Errorf("%s: upgrade report %v", c.name, p.Upgrade)
		}
	}

	data, err := os.ReadFile(filepath.Join(dir, inference.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := inference.ParseManifest(data)
	if err != nil {
		t.Fatalf("inference.ParseManifest: %v", err)
	}
	if len(m.Models) != len(cases) {
		t.Fatalf("manifest has %d models, want %d", len(m.Models), len(cases))
	}
	lab, err := os.ReadFile(filepath.Join(dir, "imagenet_labels.txt"))
	if err != nil || lines(string(lab)) != 1000 {
		t.Fatalf("labels file: %d lines, %v", lines(string(lab)), err)
	}
	for i, c := range cases {
		me := m.Models[i]
		if me.Name != c.name || me.Task != inference.TaskClassifier || me.LabelsFile != "imagenet_labels.txt" {
			t.Errorf("entry %d: %+v", i, me)
		}
		if me.OutputsLogits == c.model.softmax {
			t.Errorf("%s: outputs_logits %v, but the graph ends in Softmax: %v", c.name, me.OutputsLogits, c.model.softmax)
		}
		wantIn := "data"
		if c.model.nhwc {
			wantIn = "images:0"
		}
		if me.Input.Name != wantIn || me.Input.Layout != contractFor(c.model.nhwc).Layout {
			t.Errorf("%s: input contract %+v", c.name, me.Input)
		}
		file := filepath.Join(dir, me.File)
		sum, _, err := catalog.FileSHA256(file)
		if err != nil || sum != me.SHA256 {
			t.Fatalf("%s: registered file sha %s, manifest says %s (%v)", c.name, sum, me.SHA256, err)
		}
		model, err := onnx.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		if onnx.Opset(model) != 17 {
			t.Errorf("%s: registered model imports opset %d", c.name, onnx.Opset(model))
		}
		if d := model.GetGraph().GetInput()[0].GetType().GetTensorType().GetShape().GetDim()[0]; d.GetDimParam() == "" {
			t.Errorf("%s: registered input batch is %v, want dynamic", c.name, d)
		}
		prepared, _ := os.ReadFile(file)
		x0, x1 := image(0, c.model.nhwc), image(1, c.model.nhwc)
		want0 := runModel(t, published[c.name], wantIn, x0)
		want1 := runModel(t, published[c.name], wantIn, x1)
		both := &inference.Tensor{Shape: append([]int64{2}, x0.Shape[1:]...), Data: append(append([]float32(nil), x0.Data...), x1.Data...)}
		got := runModel(t, prepared, wantIn, both)
		if got.Shape[0] != 2 || maxDiff(got.Data[:1000], want0.Data) > 1e-4 || maxDiff(got.Data[1000:], want1.Data) > 1e-4 {
			t.Errorf("%s: batch-2 rows differ from the published model (%g, %g)", c.name,
				maxDiff(got.Data[:1000], want0.Data), maxDiff(got.Data[1000:], want1.Data))
		}
	}
	// The app's model registry serves every pulled model, labels and all.
	reg, err := zoo.Load(context.Background(), testrt.Open(t), inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if probs := reg.Problems(); len(probs) != 0 || len(reg.Classifiers()) != len(cases) {
		t.Fatalf("registry: %d classifiers, problems %v", len(reg.Classifiers()), probs)
	}
	if m, _ := reg.Model(cases[0].name); len(m.Labels) != 1000 || m.Labels[999] != "class 999" {
		t.Fatalf("registry labels: %d", len(m.Labels))
	}
	left, _ := os.ReadDir(filepath.Join(dir, catalog.DownloadsDir))
	if len(left) != 0 {
		t.Errorf("downloads left behind: %v", left)
	}

	// Pulling again replaces the entry (and its file) instead of adding one.
	before := m.Models[0].File
	e := z.entryFor(cases[0].name, "/models/v2.onnx", tinyModel{opset: 17, seed: 9}.build(), false)
	if _, err := catalog.Pull(context.Background(), e, opt); err != nil {
		t.Fatal(err)
	}
	m2, err := inference.ReadManifest(dir)
	if err != nil || len(m2.Models) != len(cases) || m2.Models[0].File == before {
		t.Fatalf("re-pull: %d models, file %s (was %s), %v", len(m2.Models), m2.Models[0].File, before, err)
	}
	if _, err := os.Stat(filepath.Join(dir, before)); !os.IsNotExist(err) {
		t.Errorf("the replaced model file %s is still there", before)
	}
}

func TestPullResumesAfterCutConnection(t *testing.T) {
	z := newZooServer(t)
	dir := t.TempDir()
	data := tinyModel{opset: 12, seed: 5}.build()
	e := z.entryFor("cut", "/cut.onnx", data, false)
	cut := int64(len(data) * 2 / 5)
	z.cutAfter["/cut.onnx"] = cut
	var log strings.Builder
	opt := options(t, dir)
	opt.Progress = catalog.NewBar(&log, false)
	if _, err := catalog.Pull(context.Background(), e, opt); err != nil {
		t.Fatalf("pull after a cut connection: %v", err)
	}
	reqs := z.requests()
	if len(reqs) != 2 || reqs[0].rangeHeader != "" || reqs[1].rangeHeader != "bytes="+itoa(cut)+"-" {
		t.Fatalf("requests %+v, want a full request then a resume from byte %d", reqs, cut)
	}
	if !strings.Contains(log.String(), "resuming at") || !strings.Contains(log.String(), "stopped at") {
		t.Errorf("progress log does not show the cut and the resume:\n%s", log.String())
	}
}

func TestPullResumesAnEarlierRunsPartialFile(t *testing.T) {
	z := newZooServer(t)
	dir := t.TempDir()
	data := tinyModel{opset: 17, seed: 6}.build()
	e := z.entryFor("partial", "/partial.onnx", data, false)
	// An earlier pull was interrupted a third of the way in.
	if err := os.MkdirAll(filepath.Join(dir, catalog.DownloadsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(dir, catalog.DownloadsDir, "partial-"+e.SHA256[:16]+".onnx.part")
	have := len(data) / 3
	if err := os.WriteFile(part, data[:have], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Pull(context.Background(), e, options(t, dir)); err != nil {
		t.Fatal(err)
	}
	reqs := z.requests()
	if len(reqs) != 1 || reqs[0].rangeHeader != "bytes="+itoa(int64(have))+"-" {
		t.Fatalf("requests %+v, want one resume from byte %d", reqs, have)
	}
}

func TestPullRefusesWrongChecksumAndRegistersNothing(t *testing.T) {
	z := newZooServer(t)
	dir := t.TempDir()
	data := tinyModel{opset: 12, seed: 7}.build()
	e := z.entryFor("tampered", "/tampered.onnx", data, false)
	bad := append([]byte(nil), data...)
	bad[len(bad)/2] ^= 0xff // same size, other bytes
	z.put("/tampered.onnx", bad)

	_, err := catalog.Pull(context.Background(), e, options(t, dir))
	if err == nil || !strings.Contains(err.Error(), "SHA-256") || !strings.Contains(err.Error(), "nothing was registered") {
		t.Fatalf("pull of a tampered file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, de := range entries {
		if de.Name() != catalog.DownloadsDir {
			t.Errorf("left in the models directory: %s", de.Name())
		}
	}
	if left, _ := os.ReadDir(filepath.Join(dir, catalog.DownloadsDir)); len(left) != 0 {
		t.Errorf("unverified bytes kept: %v", left)
	}

	// A file given with --from is checked the same way.
	f := filepath.Join(t.TempDir(), "local.onnx")
	os.WriteFile(f, bad, 0o644)
	opt := options(t, dir)
	opt.From = f
	if _, err := catalog.Pull(context.Background(), e, opt); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("--from a tampered file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, inference.ManifestFile)); !os.IsNotExist(err) {
		t.Fatal("a manifest was written for an unverified file")
	}
}

func TestPullTriesMirrorsInOrder(t *testing.T) {
	z := newZooServer(t)
	dir := t.TempDir()
	data := tinyModel{opset: 17, seed: 8}.build()
	e := z.entryFor("mirrored", "/good/m.onnx", data, false)
	bad := append([]byte(nil), data...)
	bad[10] ^= 1
	e.URLs = []string{z.URL + "/missing/m.onnx", z.put("/bad/m.onnx", bad), e.URLs[0]}
	res, err := catalog.Pull(context.Background(), e, options(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if res.Source != e.URLs[2] {
		t.Fatalf("registered from %s, want the third mirror", res.Source)
	}
}

func TestPullPinRequired(t *testing.T) {
	z := newZooServer(t)
	dir := t.TempDir()
	data := tinyModel{opset: 17, seed: 10}.build()
	e := z.entryFor("unpinned", "/unpinned.onnx", data, false)
	e.SHA256, e.Size = "", 0
	_, err := catalog.Pull(context.Background(), e, options(t, dir))
	if !errors.Is(err, catalog.ErrPinRequired) || !strings.Contains(err.Error(), "--from FILE --sha256 HASH unpinned") {
		t.Fatalf("pull of an unpinned entry: %v", err)
	}
	if len(z.requests()) != 0 {
		t.Fatal("an unpinned entry was downloaded")
	}

	// The user downloads it, checks it, and imports it with its checksum.
	f := filepath.Join(t.TempDir(), "unpinned.onnx")
	os.WriteFile(f, data, 0o644)
	opt := options(t, dir)
	opt.From = f
	opt.SHA256 = strings.ToUpper(sha(data))
	res, err := catalog.Pull(context.Background(), e, opt)
	if err != nil {
		t.Fatal(err)
	}
	if res.Entry.Name != "unpinned" || res.Source != f {
		t.Fatalf("imported %+v from %s", res.Entry, res.Source)
	}
	if _, err := os.Stat(f); err != nil {
		t.Fatal("--from deleted the user's file")
	}
	opt.SHA256 = sha([]byte("something else"))
	if _, err := catalog.Pull(context.Background(), e, opt); err == nil {
		t.Fatal("--from accepted a file whose checksum is not the one given")
	}
}

func TestPrepareChecksTheContract(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	nhwc := tinyModel{opset: 11, nhwc: true, seed: 11}.build()
	if _, err := catalog.Prepare(ctx, rt, nhwc, contractFor(false), 1000); err == nil || !strings.Contains(err.Error(), "other layout") {
		t.Fatalf("NHWC model under an NCHW contract: %v", err)
	}
	ten := tinyModel{opset: 17, seed: 12, classes: 10}.build()
	if _, err := catalog.Prepare(ctx, rt, ten, contractFor(false), 1000); err == nil || !strings.Contains(err.Error(), "10 classes") {
		t.Fatalf("10-class model with 1000 labels: %v", err)
	}
	c := contractFor(false)
	c.Height, c.Width = 299, 299
	if _, err := catalog.Prepare(ctx, rt, ten, c, 10); err == nil || !strings.Contains(err.Error(), "299") {
		t.Fatalf("224 model under a 299 contract: %v", err)
	}
	if _, err := catalog.Prepare(ctx, rt, []byte("not a model"), c, 10); err == nil {
		t.Fatal("garbage accepted")
	}
	p, err := catalog.Prepare(ctx, rt, tinyModel{opset: 12, softmax: true, seed: 13}.build(), contractFor(false), 1000)
	if err != nil {
		t.Fatal(err)
	}
	if p.OutputsLogits || p.Logits == "" || !p.BatchDynamic || p.MaxDiff > 1e-5 {
		t.Fatalf("prepared %+v", p)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A server that ignores Range answers 200 with the whole file: the part is rewritten.
func TestPullRestartsWhenTheServerIgnoresRange(t *testing.T) {
	data := tinyModel{opset: 17, seed: 14}.build()
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ranges = append(ranges, r.Header.Get("Range"))
		w.Write(data)
	}))
	defer srv.Close()
	dir := t.TempDir()
	e := catalog.Entry{Name: "norange", Architecture: "t", Description: "t", URLs: []string{srv.URL + "/m.onnx"},
		SHA256: sha(data), Size: int64(len(data)), PinSource: "test", Input: contractFor(false), OutputsLogits: true, Classes: 1000}
	os.MkdirAll(filepath.Join(dir, catalog.DownloadsDir), 0o755)
	part := filepath.Join(dir, catalog.DownloadsDir, "norange-"+e.SHA256[:16]+".onnx.part")
	os.WriteFile(part, []byte("stale bytes from elsewhere"), 0o644)
	if _, err := catalog.Pull(context.Background(), e, options(t, dir)); err != nil {
		t.Fatal(err)
	}
	if len(ranges) != 1 || ranges[0] == "" {
		t.Fatalf("requests with Range %q", ranges)
	}
}

// A connection that goes silent is cut after Options.Stall and the download resumes.
func TestPullCutsAStalledConnection(t *testing.T) {
	data := tinyModel{opset: 17, seed: 15}.build()
	half := len(data) / 2
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ranges = append(ranges, r.Header.Get("Range"))
		if len(ranges) == 1 {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:half])
			w.(http.Flusher).Flush()
			<-r.Context().Done() // hang until the client gives up
			return
		}
		http.ServeContent(w, r, "m.onnx", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	dir := t.TempDir()
	e := catalog.Entry{Name: "stall", Architecture: "t", Description: "t", URLs: []string{srv.URL + "/m.onnx"},
		SHA256: sha(data), Size: int64(len(data)), PinSource: "test", Input: contractFor(false), OutputsLogits: true, Classes: 1000}
	opt := options(t, dir)
	opt.Stall = 100 * time.Millisecond
	if _, err := catalog.Pull(context.Background(), e, opt); err != nil {
		t.Fatal(err)
	}
	if len(ranges) != 2 || ranges[1] != "bytes="+strconv.Itoa(half)+"-" {
		t.Fatalf("requests with Range %q, want a resume from byte %d", ranges, half)
	}
}

// Cancelling (Ctrl-C) keeps the partial download for the next run.
func TestPullInterruptedKeepsThePart(t *testing.T) {
	data := tinyModel{opset: 17, seed: 16}.build()
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:1000])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	dir := t.TempDir()
	e := catalog.Entry{Name: "ctrlc", Architecture: "t", Description: "t", URLs: []string{srv.URL + "/m.onnx"},
		SHA256: sha(data), Size: int64(len(data)), PinSource: "test", Input: contractFor(false), OutputsLogits: true, Classes: 1000}
	opt := options(t, dir)
	opt.Progress = cancelOnData{cancel} // the user presses Ctrl-C once bytes arrive
	_, err := catalog.Pull(ctx, e, opt)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("interrupted pull: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, catalog.DownloadsDir, "ctrlc-"+e.SHA256[:16]+".onnx.part"))
	if err != nil || fi.Size() == 0 || fi.Size() > 1000 {
		t.Fatalf("partial download: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, inference.ManifestFile)); !os.IsNotExist(err) {
		t.Fatal("an interrupted pull wrote a manifest")
	}
}

type cancelOnData struct{ cancel context.CancelFunc }

func (c cancelOnData) Start(string, string, int64, int64) {}
func (c cancelOnData) Add(int64)                          { c.cancel() }
func (c cancelOnData) Done(error)                         {}
