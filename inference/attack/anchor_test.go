package attack_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/mnist"
	"gibbon/internal/testzoo"
	"gibbon/models"
)

// Correctness anchors on the built-in MNIST models: results the literature leads us to
// expect, measured on a small fixed subset of the test set (the first images).

// anchorModelsEnv points the anchors at a models folder instead of the embedded
// models, to check candidate models before they are committed.
const anchorModelsEnv = "GIBBON_ANCHOR_MODELS"

// zoo loads the embedded manifest's MNIST classifiers; robust selects adversarially
// trained ones or standard ones.
func zoo(t *testing.T, robust bool) []*attack.ONNXModel {
	t.Helper()
	var src fs.FS = models.FS()
	if dir := os.Getenv(anchorModelsEnv); dir != "" {
		src = os.DirFS(dir)
	}
	data, err := fs.ReadFile(src, inference.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	man, err := inference.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []*attack.ONNXModel
	classifiers := 0
	for _, e := range man.Models {
		if e.Task != inference.TaskClassifier {
			continue
		}
		classifiers++
		if e.Robust != robust || e.Input.Channels != 1 || e.Input.Height != mnist.Rows || e.Input.Width != mnist.Cols {
			continue
		}
		out = append(out, testzoo.Classifier(t, e.Name))
	}
	if classifiers == 0 {
		t.Fatal("the models/manifest.json in use lists no classifiers: the anchors need the built-in zoo")
	}
	return out
}

// digits returns the first n MNIST test images and labels.
func digits(t *testing.T, n int) (*inference.Tensor, []int) { return testzoo.Digits(t, n) }

func named(ms []*attack.ONNXModel) []attack.Model {
	out := make([]attack.Model, len(ms))
	for i, m := range ms {
		out[i] = attack.Model{Name: m.Name(), Net: m}
	}
	return out
}

// PGD-40 at ε = 0.3 (Madry et al.'s MNIST setting) drives every standard model below
// 5% accuracy.
func TestAnchorPGD40DefeatsStandardModels(t *testing.T) {
	std := zoo(t, false)
	if len(std) == 0 {
		t.Fatal("the manifest has classifiers but no standard 28×28 MNIST model")
	}
	x, labels := digits(t, 100)
	for _, m := range std {
		res, err := attack.Run(context.Background(), attack.Config{Method: attack.PGD, Eps: 0.3, Steps: 40, Seed: 1},
			attack.Request{Images: x, Labels: labels, Surrogates: named([]*attack.ONNXModel{m})}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := res.Models[0]
		t.Logf("%s: clean accuracy %.0f%%, under PGD-40 ε=0.3 %.0f%%", m.Name(), 100*r.CleanAccuracy, 100*r.AdvAccuracy)
		if r.CleanAccuracy < 0.9 {
			t.Errorf("%s: clean accuracy %.0f%% on the first 100 test digits; a built-in model should do better", m.Name(), 100*r.CleanAccuracy)
		}
		if r.AdvAccuracy >= 0.05 {
			t.Errorf("%s: %.0f%% accuracy under PGD-40 at ε=0.3, want below 5%%", m.Name(), 100*r.AdvAccuracy)
		}
	}
}

// transferMatrix attacks from each source model and reports the success rate on every
// model (rows: source, columns: target).
func transferMatrix(t *testing.T, cfg attack.Config, ms []*attack.ONNXModel, x *inference.Tensor, labels []int) [][]float64 {
	t.Helper()
	out := make([][]float64, len(ms))
	for i, src := range ms {
		var others []*attack.ONNXModel
		for j, m := range ms {
			if j != i {
				others = append(others, m)
			}
		}
		res, err := attack.Run(context.Background(), cfg, attack.Request{Images: x, Labels: labels,
			Surrogates: named([]*attack.ONNXModel{src}), Others: named(others)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		rates := map[string]float64{}
		for _, r := range res.Models {
			rates[r.Name] = r.SuccessRate
		}
		for _, m := range ms {
			out[i] = append(out[i], rates[m.Name()])
		}
	}
	return out
}

func formatMatrix(ms []*attack.ONNXModel, m [][]float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s", "source \\ target")
	for _, x := range ms {
		fmt.Fprintf(&b, " %18s", x.Name())
	}
	for i, row := range m {
		fmt.Fprintf(&b, "\n%-20s", ms[i].Name())
		for _, v := range row {
			fmt.Fprintf(&b, " %17.0f%%", 100*v)
		}
	}
	return b.String()
}

// MI-FGSM transfers better than I-FGSM (Dong et al. 2018): at the same budget and
// step count, its examples fool the models it did not attack more often. (ε = 0.2
// separates them: at 0.3 nearly everything transfers, at 0.1 little does.)
func TestAnchorMomentumTransfersBetter(t *testing.T) {
	ms := zoo(t, false)
	if len(ms) < 2 {
		t.Fatalf("transfer needs at least two standard built-in MNIST models, the manifest has %d", len(ms))
	}
	x, labels := digits(t, 200)
	base := attack.Config{Eps: 0.2, Steps: 10, Seed: 1}
	var means [2]float64
	for k, method := range []attack.Method{attack.BIM, attack.MIFGSM} {
		cfg := base
		cfg.Method = method
		m := transferMatrix(t, cfg, ms, x, labels)
		var sum float64
		var cells int
		for i := range m {
			for j := range m[i] {
				if i != j {
					sum += m[i][j]
					cells++
				}
			}
		}
		means[k] = sum / float64(cells)
		t.Logf("%s ε=0.2, 10 steps, success (untargeted) on the first 200 test digits; mean transfer %.1f%%\n%s", method, 100*means[k], formatMatrix(ms, m))
	}
	if means[1] <= means[0] {
		t.Fatalf("MI-FGSM mean transfer %.1f%% does not beat I-FGSM's %.1f%%", 100*means[1], 100*means[0])
	}
}

// Square Attack with 1000 queries beats random noise of the same ε by a wide margin.
// The noise is ±ε on every pixel, the strongest of its budget: at ε = 0.3 it alone
// fools a weak MNIST model half the time, so the comparison is made at ε = 0.2.
func TestAnchorSquareBeatsNoise(t *testing.T) {
	std := zoo(t, false)
	if len(std) == 0 {
		t.Fatal("the manifest has classifiers but no standard 28×28 MNIST model")
	}
	x, labels := digits(t, 64)
	for _, m := range std {
		req := attack.Request{Images: x, Labels: labels, Surrogates: named([]*attack.ONNXModel{m})}
		sq, err := attack.Run(context.Background(), attack.Config{Method: attack.Square, Eps: 0.2, Queries: 1000, SquareP: 0.8, Seed: 1}, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		nz, err := attack.Run(context.Background(), attack.Config{Method: attack.Noise, Eps: 0.2, Seed: 1}, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		var q float64
		for _, v := range sq.Queries {
			q += float64(v)
		}
		a, b := sq.Models[0].SuccessRate, nz.Models[0].SuccessRate
		t.Logf("%s ε=0.2: Square Attack (1000 queries, %.0f used on average) %.0f%% success, random ±ε noise %.0f%%", m.Name(), q/float64(len(sq.Queries)), 100*a, 100*b)
		if a < b+0.3 {
			t.Errorf("%s: Square Attack %.0f%% does not beat noise %.0f%% by 30 points", m.Name(), 100*a, 100*b)
		}
	}
}
