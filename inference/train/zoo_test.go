package train

import (
	"context"
	"fmt"
	"io/fs"
	"math"
	"reflect"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/internal/testrt"
	"gibbon/models"
)

// The committed zoo: every recipe has an embedded model whose checksum, contract and
// provenance are in the manifest, whose recorded quality meets the targets, and whose
// numbers on fixed test subsets come out again here. CI never retrains.
func TestBuiltInModelsReproduceTheirNumbers(t *testing.T) {
	rt := testrt.Open(t)
	_, test := data(t)
	fsys := models.FS()
	raw, err := fs.ReadFile(fsys, inference.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	man, err := inference.ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	best := 0.0
	for _, r := range Zoo {
		t.Run(r.Name, func(t *testing.T) {
			e, err := man.Entry(r.Name)
			if err != nil {
				t.Fatal(err)
			}
			model, err := fs.ReadFile(fsys, e.File)
			if err != nil {
				t.Fatal(err)
			}
			if sha256Hex(model) != e.SHA256 {
				t.Fatalf("%s does not match its manifest checksum", e.File)
			}
			if e.Task != inference.TaskClassifier || !reflect.DeepEqual(e.Input, MNISTInput()) || !e.OutputsLogits || len(e.Labels) != 10 || e.Robust != r.Robust {
				t.Errorf("entry %+v", e)
			}
			p := e.Training
			if p == nil || !strings.HasPrefix(p.Command, "gibbon train ") || !strings.HasSuffix(p.Command, " "+r.Name) ||
				p.Epochs < 1 || p.WallSeconds <= 0 || p.Date == "" || !strings.Contains(p.Data, mnist.Module) {
				t.Errorf("provenance %+v", p)
			}

			clean, pgd := e.Metrics[CleanMetric(10000)], e.Metrics[PGDMetric(DefaultPGD, 10000)]
			best = max(best, clean)
			if r.Robust {
				if clean < 0.97 || pgd < 0.85 {
					t.Errorf("robust model records clean %.4f, PGD-40 %.4f: want >= 0.97 and >= 0.85", clean, pgd)
				}
			} else if clean < 0.985 || pgd >= 0.05 {
				t.Errorf("standard model records clean %.4f, PGD-40 %.4f: want >= 0.985 and < 0.05", clean, pgd)
			}

			ev, err := NewEvaluator(rt, model)
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			// Float sums may differ in the last bit on another CPU's kernels: allow one
			// image either way on 500 clean and two on 100 attacked.
			acc, err := ev.Accuracy(context.Background(), test.Subset(CleanSubset), EvalBatch, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, ok := e.Metrics[CleanMetric(CleanSubset)]
			if !ok || math.Abs(acc-want) > 1.0/CleanSubset+1e-9 {
				t.Errorf("clean accuracy on the first %d test images %.4f, manifest says %.4f", CleanSubset, acc, want)
			}
			rob, err := ev.PGDAccuracy(context.Background(), test.Subset(PGDSubset), DefaultPGD, 0, EvalBatch, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, ok = e.Metrics[PGDMetric(DefaultPGD, PGDSubset)]
			if !ok || math.Abs(rob-want) > 2.0/PGDSubset+1e-9 {
				t.Errorf("PGD-40 accuracy on the first %d test images %.4f, manifest says %.4f", PGDSubset, rob, want)
			}
		})
	}
	if best < 0.992 {
		t.Errorf("best clean accuracy %.4f, want >= 0.992", best)
	}
}

// The embedded sample digits are the first ten test images of each class.
func TestEmbeddedSamplesAreMNISTTestDigits(t *testing.T) {
	_, test := data(t)
	fsys := models.FS()
	idx := mnist.SampleIndices(test, 10)
	for k, i := range idx {
		l := test.Labels[i]
		name := fmt.Sprintf("samples/digit-%d-%d.png", l, k%10)
		raw, err := fs.ReadFile(fsys, name)
		if err != nil {
			t.Fatal(err)
		}
		px, err := mnist.DecodePNG(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for j, v := range test.Image(i) {
			if math.Abs(float64(px[j]-v)) > 0.5/255 {
				t.Fatalf("%s differs from test image %d at pixel %d", name, i, j)
			}
		}
	}
}
