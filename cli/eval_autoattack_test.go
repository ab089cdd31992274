package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/onnx"
	"gibbon/models"
)

// builtinCopy writes the built-in manifest and one model file into a folder eval may
// write to.
func builtinCopy(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	data, err := fs.ReadFile(models.FS(), inference.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, inference.ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	model, err := fs.ReadFile(models.FS(), name+".onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".onnx"), model, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// `gibbon eval --attack autoattack` prints each stage and records the robust accuracy
// under a name that says ε and n.
func TestEvalAutoAttackRecordsManifest(t *testing.T) {
	dir := builtinCopy(t, "mnist-mlp")
	out, _, err := runCmd(t, "eval", "--dir", dir, "--attack", "autoattack", "--n", "8", "--eps", "0.05", "--batch", "5", "mnist-mlp")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apgd-ce", "apgd-t", "fab-t", "square", "first 8 test digits", "seed 0", "0.05 (12.75/255)", "autoattack_eps0.05_accuracy_first8"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	man, err := inference.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := man.Entry("mnist-mlp")
	if err != nil {
		t.Fatal(err)
	}
	v, ok := e.Metrics["autoattack_eps0.05_accuracy_first8"]
	if !ok || v < 0 || v > 1 || v >= e.Metrics["clean_accuracy"] {
		t.Fatalf("recorded %v (%v); want a robust accuracy below the clean %v", v, ok, e.Metrics["clean_accuracy"])
	}
	for _, args := range [][]string{
		{"eval", "--dir", dir, "--attack", "autoattack", "--steps", "10", "mnist-mlp"},
		{"eval", "--dir", dir, "--attack", "autoattack", "--batch", "0", "mnist-mlp"},
		{"eval", "--dir", dir, "--attack", "autoattack", "--eps", "0", "mnist-mlp"},
		{"eval", "--dir", dir, "--attack", "cw", "mnist-mlp"},
		{"eval", "--dir", dir, "--attack", "autoattack", "nope"},
	} {
		_, _, err := runCmd(t, args...)
		var u usageError
		if !errors.As(err, &u) {
			t.Errorf("%q: error %v, want a usage error", args, err)
		}
	}
}

// `gibbon attack` runs the new methods on an image and on a data set; AutoAttack
// reports its stages.
func TestAttackAPGDAndAutoAttack(t *testing.T) {
	dir := attackModels(t)
	in, _ := grayPNG(t, t.TempDir(), 3)
	for _, method := range []string{"apgd-ce", "apgd-dlr", "apgd-t", "fab-t"} {
		stdout, stderr, err := attackCmd("--models", dir, "--model", "lin-a", "--attack", method, "--eps", "0.05", "--steps", "10", "--seed", "1", "--restarts", "2", in)
		if err != nil {
			t.Fatalf("%s: %v\n%s", method, err, stderr)
		}
		if !strings.Contains(stdout, method+" on lin-a") || !strings.Contains(stdout, "iterations") {
			t.Errorf("%s: output\n%s", method, stdout)
		}
	}
	stdout, stderr, err := attackCmd("--models", dir, "--model", "lin-a", "--attack", "autoattack", "--eps", "0.05", "--steps", "10", "--target-classes", "2", "--queries", "50",
		"--dataset", "mnist-test", "--n", "6", "--batch", "4", "--seed", "1")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"autoattack on lin-a", "stage", "apgd-ce", "square", "6 MNIST test images"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	for _, args := range [][]string{
		{"--attack", "apgd-t", "--target", "3", in},
		{"--attack", "autoattack", "--queries", "50", in},
		{"--attack", "apgd-ce", "--target-classes", "2", in},
		{"--attack", "pgd", "--target-classes", "2", in},
		{"--attack", "apgd-dlr", "--loss", "ce", in},
	} {
		if _, _, err := attackCmd(append([]string{"--models", dir, "--model", "lin-a"}, args...)...); err == nil {
			t.Errorf("%q was accepted", args)
		}
	}
}

// atanModels is a folder with one imported classifier Gibbon cannot differentiate:
// a linear layer whose logits go through Atan (same answers, no gradient rule).
func atanModels(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b := onnx.NewBuilder("lin-atan")
	x := b.Input("input", -1, 1, 28, 28)
	h := b.Op("Flatten", []string{x}, onnx.AttrInt("axis", 1))
	w := make([]float32, 10*784)
	for i := range w {
		w[i] = float32((i*7919)%13-6) / 40
	}
	z := b.Op("Gemm", []string{h, b.Init("w", []int64{10, 784}, w), b.Init("b", []int64{10}, make([]float32, 10))}, onnx.AttrInt("transB", 1))
	b.Output("logits", b.Op("Atan", []string{z}), -1, 10)
	data := b.Bytes()
	if err := os.WriteFile(filepath.Join(dir, "lin-atan.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	labels := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	man := inference.Manifest{Models: []inference.ModelEntry{{Name: "lin-atan", File: "lin-atan.onnx", SHA256: hex.EncodeToString(sum[:]),
		Task: inference.TaskClassifier, OutputsLogits: true, Labels: labels,
		Input: inference.InputContract{Name: "input", Layout: "NCHW", Channels: 1, Height: 28, Width: 28, Color: "gray", Range: [2]float64{0, 1}, Resize: "stretch"}}}}
	js, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, inference.ManifestFile), js, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// AutoAttack on a graph Gibbon cannot differentiate runs its black-box part only
// and says so, on an image and on the test set; a gradient attack says why not.
func TestAutoAttackWithoutGradientsSaysSo(t *testing.T) {
	dir := atanModels(t)
	in, _ := grayPNG(t, t.TempDir(), 3)
	stdout, stderr, err := attackCmd("--models", dir, "--model", "lin-atan", "--attack", "autoattack", "--eps", "0.1", "--steps", "5", "--seed", "1", in)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "note: AutoAttack ran its black-box part only") || !strings.Contains(stdout, "Atan") {
		t.Errorf("IMAGE run output lacks the note:\n%s", stdout)
	}
	stdout, stderr, err = attackCmd("--models", dir, "--model", "lin-atan", "--attack", "autoattack", "--eps", "0.1", "--queries", "50",
		"--dataset", "mnist-test", "--n", "4", "--seed", "1")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "black-box part only") || !strings.Contains(stdout, "skipped") {
		t.Errorf("dataset run output lacks the note:\n%s", stdout)
	}
	_, _, err = attackCmd("--models", dir, "--model", "lin-atan", "--attack", "pgd", "--steps", "3", in)
	if err == nil || !strings.Contains(err.Error(), "cannot differentiate") || !strings.Contains(err.Error(), "Atan") {
		t.Errorf("PGD on the graph: %v", err)
	}
}
