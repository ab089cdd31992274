package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/inference/onnx"
)

// attackModels writes a models folder: three linear classifiers on 28×28 gray images
// (one with mean/std in its contract) and a model taking another size.
func attackModels(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	man := inference.Manifest{}
	add := func(name string, seed uint64, side int, mean, std []float64) {
		rng := rand.New(rand.NewPCG(seed, 1))
		d := side * side
		w := make([]float32, 10*d)
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 4 / math.Sqrt(float64(d)))
		}
		b := onnx.NewBuilder(name)
		x := b.Input("input", -1, 1, int64(side), int64(side))
		h := b.Op("Flatten", []string{x}, onnx.AttrInt("axis", 1))
		z := b.Op("Gemm", []string{h, b.Init("w", []int64{10, int64(d)}, w), b.Init("b", []int64{10}, make([]float32, 10))}, onnx.AttrInt("transB", 1))
		b.Output("logits", z, -1, 10)
		data := b.Bytes()
		if err := os.WriteFile(filepath.Join(dir, name+".onnx"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		labels := make([]string, 10)
		for i := range labels {
			labels[i] = fmt.Sprintf("digit%d", i)
		}
		man.Models = append(man.Models, inference.ModelEntry{Name: name, File: name + ".onnx", SHA256: hex.EncodeToString(sum[:]),
			Task: inference.TaskClassifier, OutputsLogits: true, Labels: labels,
			Input: inference.InputContract{Name: "input", Layout: "NCHW", Channels: 1, Height: side, Width: side, Color: "gray",
				Range: [2]float64{0, 1}, Mean: mean, Std: std, Resize: "stretch"}})
	}
	add("lin-a", 1, 28, nil, nil)
	add("lin-b", 2, 28, nil, nil)
	add("lin-norm", 3, 28, []float64{0.1307}, []float64{0.3081})
	add("lin-small", 4, 14, nil, nil)
	data, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func grayPNG(t *testing.T, dir string, seed uint64) (string, *image.Gray) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	img := image.NewGray(image.Rect(0, 0, 28, 28))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	path := filepath.Join(dir, "in.png")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, img
}

func attackCmd(args ...string) (string, string, error) {
	var out, errw bytes.Buffer
	err := run(context.Background(), append([]string{"attack"}, args...), &out, &errw)
	return out.String(), errw.String(), err
}

func TestAttackImageWritesBoundedPNG(t *testing.T) {
	dir := attackModels(t)
	in, img := grayPNG(t, t.TempDir(), 1)
	out := filepath.Join(t.TempDir(), "adv.png")
	// Flags after IMAGE, as in the README.
	stdout, stderr, err := attackCmd("--models", dir, "--model", "lin-a", "--attack", "pgd", "--eps", "0.3", "--steps", "5", "--seed", "9", in, "-o", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	// Every model judges, the 14×14 one on the image resized (as in the explorer).
	for _, want := range []string{"pgd on lin-a", "ε 0.3 (76.5/255)", "seed 9", "lin-a *", "lin-b", "lin-norm", "lin-small", "wrote " + out, "5 steps of", "L∞ 76/255"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	adv, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if adv.Bounds() != img.Bounds() {
		t.Fatalf("adversarial image is %v, want %v", adv.Bounds(), img.Bounds())
	}
	changed := 0
	for y := range 28 {
		for x := range 28 {
			a := int(adv.(*image.Gray).GrayAt(x, y).Y)
			c := int(img.GrayAt(x, y).Y)
			if a-c > 76 || c-a > 76 {
				t.Fatalf("pixel (%d,%d) moved from %d to %d: more than 0.3 (76 levels)", x, y, c, a)
			}
			if a != c {
				changed++
			}
		}
	}
	if changed < 100 {
		t.Fatalf("only %d pixels changed", changed)
	}
}

func TestAttackImageJSONIsReproducible(t *testing.T) {
	dir := attackModels(t)
	in, _ := grayPNG(t, t.TempDir(), 2)
	data := t.TempDir()
	args := []string{"--models", dir, "--model", "lin-a,lin-norm", "--attack", "mi-fgsm", "--eps", "8/255", "--steps", "4", "--seed", "5",
		"--target", "digit3", "--defences", "lin-b+jpeg:75", "--json", "--save", "--data", data, in}
	var reps [2]imageRunReport
	for i := range reps {
		stdout, stderr, err := attackCmd(args...)
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		if err := json.Unmarshal([]byte(stdout), &reps[i]); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, stdout)
		}
	}
	e := reps[0].Entry
	var params engine.Params
	if err := json.Unmarshal(e.Params, &params); err != nil {
		t.Fatal(err)
	}
	p := params.Plan
	if e.Seed != 5 || e.Eps != 8 || e.EpsUnit != gallery.Unit255 || p.Target != "class" || p.TargetClass != 3 || params.Target != 3 ||
		p.Image.Source != "file" || reps[0].Slug == "" {
		t.Fatalf("record %+v, plan %+v, slug %q", e, p, reps[0].Slug)
	}
	if e.LInf > 8 || e.L2 <= 0 {
		t.Fatalf("L∞ %v/255 exceeds 8/255, or L2 %v", e.LInf, e.L2)
	}
	// The attacked models and every other judge watch, plus the transform defence.
	var names []string
	for _, d := range e.Predictions {
		names = append(names, d.DefenceName())
	}
	if strings.Join(names, ",") != "lin-a,lin-norm,lin-b,lin-small,lin-b + JPEG q75" {
		t.Fatalf("defences %v", names)
	}
	// Same seed, same record (but the time it took).
	b := reps[1].Entry
	if b.AdversarialSHA != e.AdversarialSHA || b.OriginalSHA != e.OriginalSHA || !reflect.DeepEqual(b.Predictions, e.Predictions) || !reflect.DeepEqual(b.Steps, e.Steps) {
		t.Fatal("same seed, different records")
	}
	// The saved run replays bit for bit.
	stdout, stderr, err := runCmd(t, "rerun", "--models", dir, "--data", data, reps[0].Slug)
	if err != nil || !strings.Contains(stdout, "reproduced bit-for-bit") {
		t.Fatalf("rerun: %v\n%s%s", err, stdout, stderr)
	}
}

func TestAttackDatasetReportsTransfer(t *testing.T) {
	dir := attackModels(t)
	stdout, stderr, err := attackCmd("--models", dir, "--model", "lin-a", "--attack", "fgsm", "--eps", "0.1", "--dataset", "mnist-test", "--n", "30", "--batch", "16", "--seed", "1", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var r attackReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if r.N != 30 || r.Dataset != "mnist-test" || len(r.Models) != 3 || !r.Models[0].Surrogate || r.Models[1].Surrogate {
		t.Fatalf("report %+v", r)
	}
	for _, m := range r.Models {
		if m.SuccessRate < 0 || m.SuccessRate > 1 || m.AdvAccuracy > 1 || m.CleanAccuracy > 1 {
			t.Fatalf("model %s: rates out of [0,1]: %+v", m.Name, m)
		}
	}
	// Random linear models fail on digits anyway; FGSM still drives the attacked one lower.
	if r.Models[0].AdvAccuracy > r.Models[0].CleanAccuracy {
		t.Fatalf("adversarial accuracy %v above clean %v", r.Models[0].AdvAccuracy, r.Models[0].CleanAccuracy)
	}
	if r.Forward != 2 || r.Backward != 1 || r.LinfMax > 0.1 {
		t.Fatalf("FGSM: %v/%v passes per image, L∞ %v", r.Forward, r.Backward, r.LinfMax)
	}
	if !strings.Contains(stderr, "30/30") {
		t.Fatalf("no progress bar on stderr: %q", stderr)
	}
	stdout, _, err = attackCmd("--models", dir, "--model", "lin-a", "--attack", "noise", "--eps", "0.1", "--dataset", "mnist-test", "--n", "10", "--seed", "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lin-b (transfer)", "clean acc", "10 MNIST test images", "queries"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

func TestAttackBadCommandLines(t *testing.T) {
	dir := attackModels(t)
	in, _ := grayPNG(t, t.TempDir(), 3)
	text := filepath.Join(t.TempDir(), "notes.png")
	if err := os.WriteFile(text, []byte("hello, not a picture"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{in}, true, "--model"},
		{[]string{"--models", dir, "--model", "nope", in}, true, "no classifier \"nope\""},
		{[]string{"--models", dir, "--model", "lin-a", "--attack", "deepfool", in}, true, "unknown attack"},
		{[]string{"--models", dir, "--model", "lin-a", "--eps", "abc", in}, true, "8/255"},
		{[]string{"--models", dir, "--model", "lin-a", "--eps", "2", in}, true, "exceeds"},
		{[]string{"--models", dir, "--model", "lin-a", "--dataset", "mnist-test", in}, true, "not both"},
		{[]string{"--models", dir, "--model", "lin-a", "--dataset", "cifar"}, true, "unknown dataset"},
		{[]string{"--models", dir, "--model", "lin-a", "--target", "12", in}, true, "classes 0..9"},
		{[]string{"--models", dir, "--model", "lin-a", "--target", "cat", in}, true, "not a class"},
		{[]string{"--models", dir, "--model", "lin-a", "--loss", "hinge", in}, true, "unknown loss"},
		{[]string{"--models", dir, "--model", "lin-a,lin-small", in}, true, "different inputs"},
		{[]string{"--models", dir, "--model", "lin-small", "--dataset", "mnist-test"}, true, "28×28"},
		{[]string{"--models", dir, "--model", "lin-a"}, true, "IMAGE"},
		{[]string{"--models", dir, "--model", "lin-a", "--fuse", "max", in}, true, "--fuse"},
		{[]string{"--models", dir, "--model", "lin-a", filepath.Join(dir, "missing.png")}, false, "no such file"},
		{[]string{"--models", dir, "--model", "lin-a", text}, false, "not an image"},
		{[]string{"--models", t.TempDir(), "--model", "lin-a", in}, false, "manifest.json"},
	} {
		_, _, err := attackCmd(c.args...)
		if err == nil {
			t.Errorf("%v: accepted", c.args)
			continue
		}
		var u usageError
		if errors.As(err, &u) != c.usage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %q (usage %v), want %q (usage %v)", c.args, err, errors.As(err, &u), c.want, c.usage)
		}
	}
}
