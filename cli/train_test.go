package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/inference"
)

func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	err := run(context.Background(), args, &out, &errw)
	return out.String(), errw.String(), err
}

func TestTrainAndEvalCommandLines(t *testing.T) {
	for _, args := range [][]string{
		{"train"},
		{"train", "a", "b"},
		{"train", "nope"},
		{"train", "--epochs", "-1", "mnist-mlp"},
		{"train", "--threads", "0", "mnist-mlp"},
		{"train", "--samples", "mnist-mlp"},
		{"eval"},
		{"eval", "--n", "0", "mnist-mlp"},
		{"eval", "--n", "20000", "mnist-mlp"},
		{"eval", "--bogus", "mnist-mlp"},
	} {
		_, _, err := runCmd(t, args...)
		var u usageError
		if !errors.As(err, &u) {
			t.Errorf("%q: error %v, want a usage error", args, err)
		}
	}
	out, _, err := runCmd(t, "train", "--list")
	if err != nil || !strings.Contains(out, "mnist-cnn-robust") {
		t.Fatalf("train --list: %v\n%s", err, out)
	}
}

// A tiny run end to end: train on 256 images, evaluate on 200, read the manifest back.
func TestTrainThenEvalRecordsManifest(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "mlp.ckpt")
	out, logs, err := runCmd(t, "train", "--dir", dir, "--subset", "256", "--epochs", "2", "--checkpoint", ckpt, "mnist-mlp")
	if err != nil {
		t.Fatalf("train: %v\n%s", err, logs)
	}
	if !strings.Contains(out, "test accuracy") || !strings.Contains(logs, "epoch 2/2") {
		t.Errorf("train output:\n%s\n%s", out, logs)
	}
	if _, err := os.Stat(ckpt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoint left behind after a finished run: %v", err)
	}
	man, err := inference.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := man.Entry("mnist-mlp")
	if err != nil {
		t.Fatal(err)
	}
	if e.File != "mnist-mlp.onnx" || len(e.SHA256) != 64 || e.Input.Name != "image" || len(e.Labels) != 10 || !e.OutputsLogits {
		t.Errorf("entry %+v", e)
	}
	if p := e.Training; p == nil || p.Command != "gibbon train --dir "+dir+" --subset 256 --epochs 2 --checkpoint "+ckpt+" mnist-mlp" ||
		p.Epochs != 2 || p.WallSeconds <= 0 || p.Seed != 1 || !strings.Contains(p.Data, "first 256") {
		t.Errorf("provenance %+v", e.Training)
	}

	out, _, err = runCmd(t, "eval", "--dir", dir, "--n", "200", "--steps", "3", "mnist-mlp")
	if err != nil {
		t.Fatal(err)
	}
	man, _ = inference.ReadManifest(dir)
	e, _ = man.Entry("mnist-mlp")
	clean, okC := e.Metrics["clean_accuracy_first200"]
	pgd, okP := e.Metrics["pgd3_eps0.3_accuracy_first200"]
	if !okC || !okP || clean < 0.3 || pgd > clean {
		t.Fatalf("metrics %v (output %q)", e.Metrics, out)
	}

	// A model file that no longer matches its checksum is refused.
	path := filepath.Join(dir, e.File)
	data, _ := os.ReadFile(path)
	data[len(data)-1] ^= 1
	os.WriteFile(path, data, 0o644)
	if _, _, err := runCmd(t, "eval", "--dir", dir, "--n", "10", "--steps", "0", "mnist-mlp"); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("tampered model: %v", err)
	}
	if _, _, err := runCmd(t, "eval", "--dir", dir, "mnist-resnet-small"); err == nil || !strings.Contains(err.Error(), "no model") {
		t.Fatalf("model missing from the manifest: %v", err)
	}

	_, _, err = runCmd(t, "train", "--dir", dir, "--samples")
	if err != nil {
		t.Fatal(err)
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "samples", "digit-*-*.png"))
	if len(pngs) != 100 {
		t.Fatalf("%d sample digits, want 100", len(pngs))
	}
}
