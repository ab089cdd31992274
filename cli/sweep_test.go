package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/sweep"
)

// sweepModels is attackModels plus "centroid", a linear classifier whose weights are
// the MNIST training digits' class means (centred): about 80 % accurate, so attacks
// have something to break.
func sweepModels(t *testing.T) string {
	t.Helper()
	dir := attackModels(t)
	train, _, err := mnist.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	const n = 6000
	w := make([]float32, 10*mnist.Pixels)
	count := make([]float32, 10)
	for i := range n {
		l := int(train.Labels[i])
		count[l]++
		for j, v := range train.Image(i) {
			w[l*mnist.Pixels+j] += v
		}
	}
	mean := make([]float32, mnist.Pixels)
	for k := range 10 {
		for j := range mnist.Pixels {
			w[k*mnist.Pixels+j] /= count[k]
			mean[j] += w[k*mnist.Pixels+j] / 10
		}
	}
	b := make([]float32, 10)
	for k := range 10 {
		var sq float32
		for j := range mnist.Pixels {
			w[k*mnist.Pixels+j] = 4 * (w[k*mnist.Pixels+j] - mean[j])
			sq += w[k*mnist.Pixels+j] * w[k*mnist.Pixels+j]
		}
		b[k] = -sq / 8 // nearest centroid: −|x−μ|²/2 up to terms equal for every class
	}
	bd := onnx.NewBuilder("centroid")
	x := bd.Input("input", -1, 1, 28, 28)
	h := bd.Op("Flatten", []string{x}, onnx.AttrInt("axis", 1))
	z := bd.Op("Gemm", []string{h, bd.Init("w", []int64{10, mnist.Pixels}, w), bd.Init("b", []int64{10}, b)}, onnx.AttrInt("transB", 1))
	bd.Output("logits", z, -1, 10)
	data := bd.Bytes()
	if err := os.WriteFile(filepath.Join(dir, "centroid.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	man, err := inference.ParseManifest(mustRead(t, filepath.Join(dir, "manifest.json")))
	if err != nil {
		t.Fatal(err)
	}
	e := man.Models[0]
	// The zoo vouches for every model by its checksum, as the server does.
	e.Name, e.File, e.SHA256 = "centroid", "centroid.onnx", gallery.SHA256(data)
	man.Models = append([]inference.ModelEntry{e}, man.Models...)
	out, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func cmdRun(name string, args ...string) (string, string, error) {
	var out, errw bytes.Buffer
	err := run(context.Background(), append([]string{name}, args...), &out, &errw)
	return out.String(), errw.String(), err
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s is not CSV: %v", path, err)
	}
	return rows
}

// The data set sweep's JSON and CSV hold the same numbers, in the documented schema.
func TestSweepDatasetWritesCSVAndJSON(t *testing.T) {
	dir := sweepModels(t)
	csvPath := filepath.Join(t.TempDir(), "sweep.csv")
	stdout, stderr, err := cmdRun("sweep", "--models", dir, "--dataset", "mnist-test", "--n", "40", "--attack", "pgd", "--steps", "3",
		"--eps", "0:0.2:0.1", "--seed", "2", "--csv", csvPath, "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "not a defence: lin-small takes 14×14") || !strings.Contains(stderr, "40/40") {
		t.Errorf("stderr lacks the skipped model or the progress bar:\n%s", stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	for key, kind := range map[string]string{"schema": "string", "dataset": "string", "n": "number", "total": "number", "attack": "object",
		"range": "array", "eps": "array", "eps_255": "array", "seed": "number", "batch_images": "number", "defences": "array",
		"wall_seconds": "number", "images_per_second": "number"} {
		if got := jsonKind(res[key]); got != kind {
			t.Errorf("JSON %q is %s, want %s", key, got, kind)
		}
	}
	var r sweep.DatasetResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.Schema != sweep.SchemaDataset || r.N != 40 || !slices.Equal(r.Eps, []float64{0, 0.1, 0.2}) || r.Eps255[2] != 51 || r.Seed != 2 {
		t.Errorf("result header %+v", r)
	}
	names := []string{"centroid", "lin-a", "lin-b", "lin-norm", "centroid + JPEG q75", "centroid + 3-bit", "centroid + median 3×3", "centroid + random resize ≥90% + pad"}
	var got []string
	for _, d := range r.Defences {
		got = append(got, d.Name)
		if len(d.Correct) != 3 || len(d.Accuracy) != 3 || d.Predictions != nil {
			t.Errorf("%s: %d counts, %d accuracies, predictions %v", d.Name, len(d.Correct), len(d.Accuracy), d.Predictions != nil)
		}
	}
	if !slices.Equal(got, names) {
		t.Errorf("defences %v, want %v", got, names)
	}
	if c := r.Defences[0].Correct; c[0] < 18 || c[2] >= c[0]/2 {
		t.Errorf("centroid: %d of %d correct when clean, %d under white-box PGD at ε 0.2", c[0], r.N, c[2])
	}
	rows := readCSV(t, csvPath)
	if !slices.Equal(rows[0], sweep.DatasetCSVHeader) || len(rows) != 1+3*len(names) {
		t.Fatalf("CSV header %v, %d rows", rows[0], len(rows))
	}
	for i, row := range rows[1:] {
		k, d := i/len(names), i%len(names)
		c := r.Defences[d]
		correct, _ := strconv.Atoi(row[5])
		acc, err1 := strconv.ParseFloat(row[7], 64)
		succ, err2 := strconv.ParseFloat(row[8], 64)
		eps, err3 := strconv.ParseFloat(row[0], 64)
		if err1 != nil || err2 != nil || err3 != nil || eps != r.Eps[k] || row[2] != c.Name || row[3] != c.Model || correct != c.Correct[k] ||
			acc != c.Accuracy[k] || row[6] != "40" || (acc+succ-1)*(acc+succ-1) > 1e-12 {
			t.Errorf("CSV row %v disagrees with the JSON (%s at ε %g: %d correct)", row, c.Name, r.Eps[k], c.Correct[k])
		}
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case bool:
		return "bool"
	case nil:
		return "missing"
	}
	return "?"
}

// One image: a line per ε as it finishes, the flip summary, a PNG per ε, and a gallery
// entry whose parameters re-run it.
func TestSweepImageStreamsTableFramesAndSaves(t *testing.T) {
	dir := sweepModels(t)
	_, test, err := mnist.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	digit, err := mnist.PNG(test.Image(0))
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "digit.png")
	if err := os.WriteFile(in, digit, 0o644); err != nil {
		t.Fatal(err)
	}
	label := strconv.Itoa(int(test.Labels[0]))
	frames := filepath.Join(t.TempDir(), "frames")
	data := t.TempDir()
	stdout, stderr, err := cmdRun("sweep", in, "--models", dir, "--defences", "centroid,lin-b,centroid+median:2", "--label", label,
		"--eps", "0:0.3:0.05", "--steps", "5", "--seed", "4", "--frames", frames, "--save", "--data", data, "--title", "A seven")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	// Each defence's flip summary is the first ε line that marks it flipped.
	defs := []string{"centroid", "lin-b", "centroid + median 2×2"}
	first := map[string]string{}
	var epsLines int
	for _, l := range strings.Split(stdout, "\n") {
		eps, rest, ok := strings.Cut(l, "  ")
		if !strings.HasPrefix(l, "ε ") || !ok {
			continue
		}
		epsLines++
		for _, d := range defs {
			i := strings.Index(rest, d+": ")
			if i < 0 {
				t.Fatalf("line %q lacks %s", l, d)
			}
			cell := strings.Fields(rest[i+len(d)+2:])[0]
			if _, seen := first[d]; strings.HasSuffix(cell, "*") && !seen {
				first[d] = strings.TrimSpace(strings.TrimPrefix(eps, "ε "))
			}
		}
	}
	if epsLines != 7 || !strings.Contains(stdout, "true class "+label+" (digit"+label+"); smallest ε that flips each defence:") {
		t.Fatalf("output:\n%s", stdout)
	}
	if first["centroid"] == "" {
		t.Errorf("white-box PGD never flipped the attacked model up to ε 0.3:\n%s", stdout)
	}
	for _, d := range defs {
		want := "  " + d + ": " + first[d] + "\n"
		if first[d] == "" {
			want = "  " + d + ": not flipped up to ε 0.3 (76.5/255)\n"
		}
		if !strings.Contains(stdout, want) {
			t.Errorf("the summary lacks %q:\n%s", want, stdout)
		}
	}
	files, err := filepath.Glob(filepath.Join(frames, "eps-*.png"))
	if err != nil || len(files) != 7 {
		t.Errorf("frames %v (%v)", files, err)
	}
	i := strings.Index(stdout, "/g/")
	if i < 0 {
		t.Fatalf("no permalink in:\n%s", stdout)
	}
	slug := strings.Fields(stdout[i+3:])[0]
	store, err := gallery.Open(context.Background(), filepath.Join(data, gallery.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e, err := store.Get(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	if e.Kind != gallery.KindSweep || e.Title != "A seven" || e.Attack != "pgd" || e.Eps != 0.3 || e.EpsUnit != gallery.Unit1 ||
		e.OriginalSHA == "" || e.AdversarialSHA == "" || e.LInfMeasured == nil || *e.LInfMeasured > 76.5 {
		t.Errorf("entry %+v", e)
	}
	man, err := inference.ParseManifest(mustRead(t, filepath.Join(dir, "manifest.json")))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Models) != 2 || e.Models[0].Name != "centroid" || !e.Models[0].Attacked || e.Models[1].Name != "lin-b" || e.Models[1].Attacked ||
		e.Models[0].SHA256 != gallery.SHA256(mustRead(t, filepath.Join(dir, "centroid.onnx"))) || e.Models[1].SHA256 != man.Models[2].SHA256 {
		t.Errorf("models %+v", e.Models)
	}
	var params sweep.Saved
	if err := json.Unmarshal(e.Params, &params); err != nil {
		t.Fatal(err)
	}
	want := "gibbon sweep digit.png --label " + label + " --model centroid --defences centroid,lin-b,centroid+median:2 --attack pgd --eps 0:0.3:0.05 --steps 5 --seed 4"
	if params.Kind != sweep.KindImage || params.Seed != 4 || params.Image != "digit.png" || params.Steps != 5 || params.Command != want {
		t.Errorf("params %+v\nwant command %s", params, want)
	}
	var payload sweep.ImageResult
	if err := json.Unmarshal(e.Payload, &payload); err != nil || payload.Schema != sweep.SchemaImage || len(payload.Points) != 7 {
		t.Errorf("payload %v: %+v", err, payload)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compete and transfer: JSON whose scores add up, and CSV in the documented columns.
func TestCompeteAndTransferCommands(t *testing.T) {
	dir := sweepModels(t)
	csvPath := filepath.Join(t.TempDir(), "compete.csv")
	stdout, stderr, err := cmdRun("compete", "--models", dir, "--model", "centroid", "--attacks", "noise,fgsm,pgd", "--defences", "centroid,lin-b,centroid+bits:1",
		"--n", "30", "--batch", "10", "--steps", "3", "--seed", "5", "--json", "--csv", csvPath)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var m sweep.Matrix
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatal(err)
	}
	if m.Schema != sweep.SchemaCompete || m.N != 30 || len(m.BatchEps) != 3 || len(m.Attacks) != 3 || len(m.Defences) != 3 {
		t.Fatalf("matrix %+v", m)
	}
	for a, at := range m.Attacks {
		sum := 0
		for d := range m.Defences {
			sum += m.Misclassified[a][d]
		}
		if at.Score != sum {
			t.Errorf("%s scores %d, its row sums to %d", at.Name, at.Score, sum)
		}
	}
	for d, def := range m.Defences {
		sum := 0
		for a := range m.Attacks {
			sum += 30 - m.Misclassified[a][d]
		}
		if def.Score != sum {
			t.Errorf("%s scores %d, its column's correct answers sum to %d", def.Name, def.Score, sum)
		}
	}
	rows := readCSV(t, csvPath)
	if !slices.Equal(rows[0], sweep.CompeteCSVHeader) || len(rows) != 1+9 {
		t.Errorf("compete CSV header %v, %d rows", rows[0], len(rows))
	}
	table, _, err := cmdRun("compete", "--models", dir, "--model", "lin-a", "--attacks", "noise,pgd", "--defences", "lin-a,lin-b", "--n", "20", "--steps", "2", "--seed", "5")
	if err != nil || !strings.Contains(table, "defence rank") || !strings.Contains(table, "#1") {
		t.Errorf("compete table (%v):\n%s", err, table)
	}

	csvPath = filepath.Join(t.TempDir(), "transfer.csv")
	stdout, stderr, err = cmdRun("transfer", "--models", dir, "--sources", "centroid,lin-b", "--targets", "centroid,lin-b,lin-norm", "--eps", "0.1",
		"--n", "30", "--steps", "3", "--seed", "6", "--json", "--csv", csvPath)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var tm sweep.TransferMatrix
	if err := json.Unmarshal([]byte(stdout), &tm); err != nil {
		t.Fatal(err)
	}
	if tm.Schema != sweep.SchemaTransfer || len(tm.Sources) != 2 || len(tm.Targets) != 3 || tm.Eps != 0.1 || tm.Rate[0][0] < tm.Rate[1][0] {
		t.Errorf("transfer %+v", tm)
	}
	rows = readCSV(t, csvPath)
	if !slices.Equal(rows[0], sweep.TransferCSVHeader) || len(rows) != 1+6 {
		t.Errorf("transfer CSV header %v, %d rows", rows[0], len(rows))
	}
}

// compete --adaptive: each transform defence gets an adaptive twin, labelled in the
// JSON, explained under the table with the defence's caveat.
func TestCompeteAdaptive(t *testing.T) {
	dir := sweepModels(t)
	args := []string{"--models", dir, "--model", "centroid", "--attacks", "pgd,noise", "--defences", "centroid,centroid+median:2",
		"--adaptive", "--n", "20", "--eps", "0.1", "--steps", "5", "--seed", "5"}
	stdout, stderr, err := cmdRun("compete", append(args, "--json")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var m sweep.Matrix
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Defences) != 3 || m.Defences[1].Mode != sweep.NonAdaptive || m.Defences[2].Mode != sweep.Adaptive ||
		m.Defences[2].Name != "centroid + median 2×2 (adaptive)" || m.Defences[2].Caveat == "" {
		t.Fatalf("defences %+v", m.Defences)
	}
	if pgdScore := m.Misclassified[0][0] + m.Misclassified[0][1]; m.Attacks[0].Score != pgdScore {
		t.Errorf("pgd scores %d; the competition's columns sum to %d", m.Attacks[0].Score, pgdScore)
	}
	table, _, err := cmdRun("compete", args...)
	if err != nil || !strings.Contains(table, "centroid + median 2×2 (adaptive): gradients through the median 2×2's own derivative") ||
		!strings.Contains(table, "note: The median filter holds mostly against attacks that ignore it") {
		t.Errorf("compete table (%v):\n%s", err, table)
	}
}

func TestSweepBadCommandLines(t *testing.T) {
	dir := attackModels(t)
	in, _ := grayPNG(t, t.TempDir(), 1)
	for _, c := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"sweep", []string{"--models", dir}, "one IMAGE, or --dataset"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", in}, "not both"},
		{"sweep", []string{"--models", dir, "--dataset", "cifar10"}, "unknown dataset"},
		{"sweep", []string{"--models", dir, in, "--n", "5"}, "--n counts"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--eps", "0:1"}, "FROM:TO:STEP"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--eps", "0:2:0.5"}, "outside"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--attack", "cw"}, "unknown attack"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--model", "nope"}, `no classifier "nope"`},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--model", "lin-small"}, "28×28 gray digits"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--defences", "lin-a+blur"}, "unknown transform"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--defences", "lin-small"}, "takes 14×14"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--n", "20000"}, "between 1 and 10000"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--attack", "net:atn"}, "no attack network"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--threads", "0"}, "--threads"},
		{"sweep", []string{"--models", dir, in, "--label", "10"}, "classes 0..9"},
		{"compete", []string{"--models", dir, "--eps", "0,0.1"}, "positive"},
		{"compete", []string{"--models", dir, "extra"}, "no arguments"},
		{"compete", []string{"--models", dir, "--adaptive", "--eot-samples", "0"}, "--eot-samples: EOT samples must be between 1 and 100, got 0"},
		{"compete", []string{"--models", dir, "--adaptive", "--eot-samples", "101"}, "between 1 and 100, got 101"},
		{"compete", []string{"--models", dir, "--eot-samples", "5", "--defences", "lin-a+resize-pad"}, "ask for it too"},
		{"compete", []string{"--models", dir, "--adaptive", "--defences", "lin-a,lin-b"}, "no defence has one"},
		{"sweep", []string{"--models", dir, "--dataset", "mnist-test", "--adaptive", "--eot-samples", "-2"}, "between 1 and 100"},
		{"transfer", []string{"--models", dir, "--adaptive"}, "flag provided but not defined: -adaptive"},
		{"transfer", []string{"--models", dir, "extra"}, "transfer takes no arguments, only flags (see gibbon transfer -h)"},
		{"transfer", []string{"--models", dir, "--eps", "0.1,0.2"}, "one positive ε"},
		{"transfer", []string{"--models", dir, "--sources", "lin-a,lin-small"}, "same input"},
	} {
		_, _, err := cmdRun(c.cmd, c.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want a usage error about %q", c.cmd, c.args, err, c.want)
		}
	}
	// A file that is not an image is an error about the file, not a usage error.
	bad := filepath.Join(t.TempDir(), "bad.png")
	if err := os.WriteFile(bad, []byte("not a picture"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cmdRun("sweep", bad, "--models", dir, "--eps", "0,0.1"); err == nil || !strings.Contains(err.Error(), "bad.png") {
		t.Errorf("a broken image: %v", err)
	}
}
