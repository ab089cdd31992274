package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/zoo"
)

func TestTrainAttackCommandLines(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"train-attack"},
		{"train-attack", "--targets", "a", "--target", "b.onnx"},
		{"train-attack", "--targets", "a", "extra"},
		{"train-attack", "--dir", dir, "--targets", "nope"},
		{"train-attack", "--targets", "a", "--eps", "0.1,zero"},
		{"train-attack", "--targets", "a", "--threads", "0"},
		{"train-attack", "--target", filepath.Join(dir, "x.onnx")},
		{"train-attack", "--target", filepath.Join(dir, "x.onnx"), "--size", "2x"},
		{"eval-attack"},
		{"eval-attack", "--n", "0", "x"},
		{"eval-attack", "--dir", dir, "nope"},
	} {
		_, _, err := runCmd(t, args...)
		var u usageError
		if !errors.As(err, &u) {
			t.Errorf("%q: error %v, want a usage error", args, err)
		}
	}
}

// End to end on MNIST: two tiny classifiers, a network trained against one of them,
// evaluated (with baselines) on both; then eval-attack on its own.
func TestTrainAttackThenEvalAttack(t *testing.T) {
	dir := t.TempDir()
	for _, m := range []string{"mnist-mlp", "mnist-cnn-small"} {
		if _, logs, err := runCmd(t, "train", "--dir", dir, "--subset", "512", "--epochs", "1", "--checkpoint", filepath.Join(dir, m+".ckpt"), m); err != nil {
			t.Fatalf("train %s: %v\n%s", m, err, logs)
		}
	}
	ckpt := filepath.Join(dir, "net.ckpt")
	out, logs, err := runCmd(t, "train-attack", "--dir", dir, "--targets", "mnist-mlp", "--steps", "30", "--batch", "16",
		"--checkpoint", ckpt, "--eval-n", "60", "--name", "net")
	if err != nil {
		t.Fatalf("train-attack: %v\n%s", err, logs)
	}
	for _, want := range []string{"| mnist-mlp | target |", "| mnist-cnn-small | held-out |", "PGD-10 | mnist-mlp (together)", "wrote " + filepath.Join(dir, "net.onnx")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(logs, "30/30") || !strings.Contains(logs, "recording only the first-500") {
		t.Errorf("logs:\n%s", logs)
	}
	if _, err := os.Stat(ckpt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("checkpoint left behind: %v", err)
	}
	man, err := inference.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := man.Entry("net")
	if err != nil {
		t.Fatal(err)
	}
	if e.Task != inference.TaskAttackNetwork || e.Attack == nil || len(e.Attack.Eps) != 3 || e.Attack.Eps[2] != 0.3 ||
		len(e.Attack.Targets) != 1 || e.Attack.Targets[0] != "mnist-mlp" || e.Training == nil || e.Training.Seed != 1 ||
		!strings.HasPrefix(e.Training.Command, "gibbon train-attack --dir") || e.Input.Name != "image" || len(e.SHA256) != 64 {
		t.Errorf("entry %+v", e)
	}
	if len(man.Models) != 3 {
		t.Errorf("manifest has %d models, want the 2 classifiers and the network", len(man.Models))
	}
	if _, ok := e.Metrics["success_eps0.3_mnist-cnn-small_first500"]; !ok || len(e.Metrics) != 6 {
		t.Errorf("metrics %v: want the first-500 success of each head on each classifier, nothing more", e.Metrics)
	}

	out, _, err = runCmd(t, "eval-attack", "--dir", dir, "--n", "40", "--baselines=false", "net")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "| mnist-cnn-small | held-out |") || strings.Contains(out, "PGD-10 | mnist-mlp") {
		t.Errorf("eval-attack without baselines:\n%s", out)
	}
	if _, _, err := runCmd(t, "eval-attack", "--dir", dir, "mnist-mlp"); err == nil || !strings.Contains(err.Error(), "not an attack network") {
		t.Errorf("eval-attack on a classifier: %v", err)
	}
}

// A user's classifier file and a folder of unlabelled images: the network is written
// beside the classifier, both are registered, and the app's registry serves them.
func TestTrainAttackOnAUsersClassifier(t *testing.T) {
	base := t.TempDir()
	if _, logs, err := runCmd(t, "train", "--dir", base, "--subset", "256", "--epochs", "1", "--checkpoint", filepath.Join(base, "c.ckpt"), "mnist-cnn-small"); err != nil {
		t.Fatalf("train: %v\n%s", err, logs)
	}
	user := t.TempDir()
	data, _ := os.ReadFile(filepath.Join(base, "mnist-cnn-small.onnx"))
	os.WriteFile(filepath.Join(user, "digits.onnx"), data, 0o644)
	test, err := mnist.LoadTest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	imgs := filepath.Join(user, "images")
	if _, err := mnist.WriteSamples(imgs, test, 6); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(imgs, "README.txt"), []byte("not an image"), 0o644)
	out, logs, err := runCmd(t, "train-attack", "--target", filepath.Join(user, "digits.onnx"), "--size", "28", "--channels", "1",
		"--resize", "mnist", "--images", imgs, "--steps", "8", "--batch", "8", "--checkpoint", filepath.Join(user, "n.ckpt"))
	if err != nil {
		t.Fatalf("train-attack --target: %v\n%s", err, logs)
	}
	if !strings.Contains(logs, "skipping") || !strings.Contains(logs, "registered classifier digits") {
		t.Errorf("logs:\n%s", logs)
	}
	if !strings.Contains(out, "held-out images") || !strings.Contains(out, "digits") {
		t.Errorf("output:\n%s", out)
	}
	// The commands open and close their own runtime; so does this check.
	rt, err := inference.OpenRuntime(inference.RuntimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := zoo.Load(context.Background(), rt, inference.ModelSource{Name: user, FS: os.DirFS(user)})
	if err != nil {
		rt.Close()
		t.Fatal(err)
	}
	problems, classifiers, nets := reg.Problems(), reg.Classifiers(), reg.AttackNetworks()
	reg.Close()
	rt.Close()
	if len(problems) != 0 || len(classifiers) != 1 || len(nets) != 1 || nets[0].Name != "attack-net-digits" {
		t.Fatalf("registry: problems %v, %d classifiers, %d attack networks", problems, len(classifiers), len(nets))
	}
	// The wrong input size is caught before any training.
	_, _, err = runCmd(t, "train-attack", "--target", filepath.Join(user, "digits.onnx"), "--size", "32", "--channels", "1", "--images", imgs)
	var u usageError
	if !errors.As(err, &u) || !strings.Contains(err.Error(), "takes images") {
		t.Errorf("wrong size: %v", err)
	}
}
