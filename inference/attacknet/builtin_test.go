package attacknet

import (
	"context"
	"io/fs"
	"math"
	"reflect"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/train"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
	"gibbon/models"
)

// The committed attack network: its manifest entry says what it is and how it was
// made, its recorded results clear the baselines, and its success on the first 500
// test images comes out again here. CI never retrains it.
func TestBuiltInAttackNetworkReproducesItsNumbers(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	_, _, test := smallZoo(t)
	fsys := models.FS()
	builtins := zoo.Open(rt, inference.ModelSource{Name: "built-in", FS: fsys})
	defer builtins.Close()
	raw, err := fs.ReadFile(fsys, inference.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	man, err := inference.ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	var nets []inference.ModelEntry
	for _, e := range man.Models {
		if e.Task == inference.TaskAttackNetwork {
			nets = append(nets, e)
		}
	}
	if len(nets) == 0 {
		t.Fatal("no built-in attack network in the manifest")
	}
	for _, e := range nets {
		t.Run(e.Name, func(t *testing.T) {
			pixel := train.MNISTInput()
			if !reflect.DeepEqual(e.Input, pixel) || e.Attack == nil || !reflect.DeepEqual(e.Attack.Eps, []float64{0.1, 0.2, 0.3}) || len(e.Attack.Targets) < 2 {
				t.Fatalf("entry %+v", e)
			}
			if p := e.Training; p == nil || !strings.HasPrefix(p.Command, "gibbon train-attack ") || p.WallSeconds <= 0 || p.Date == "" || p.Epochs <= 0 {
				t.Errorf("provenance %+v", e.Training)
			}
			served, err := builtins.Get(ctx, e.Name) // checks the checksum
			if err != nil {
				t.Fatal(err)
			}
			net := served.Network()
			isTarget := map[string]bool{}
			for _, n := range e.Attack.Targets {
				isTarget[n] = true
			}
			var judges []Judge
			heldOut, robust := 0, 0
			for _, c := range man.Models {
				if c.Task != inference.TaskClassifier {
					continue
				}
				served, err := builtins.Get(ctx, c.Name)
				if err != nil {
					t.Fatal(err)
				}
				m := served.Net()
				role := RoleHeldOut
				switch {
				case isTarget[c.Name]:
					role = RoleTarget
					if c.Robust {
						t.Errorf("target %s is the robust model: it must be held out", c.Name)
					}
				case c.Robust:
					role, robust = RoleRobust, robust+1
				default:
					heldOut++
				}
				judges = append(judges, Judge{Name: c.Name, Role: role, Net: m})
			}
			if heldOut < 2 || robust < 1 {
				t.Errorf("%d standard classifiers and %d robust ones held out: want at least 2 and 1", heldOut, robust)
			}
			// Recorded on the full test set, beside the baselines.
			met := e.Metrics
			if met["eval_images"] != 10000 || !(met["speedup_vs_pgd10"] > 1) {
				t.Errorf("recorded evaluation: %d images, %.1f× PGD-10's speed", int(met["eval_images"]), met["speedup_vs_pgd10"])
			}
			for _, j := range judges {
				for _, eps := range e.Attack.Eps {
					key := HeadName(eps) + "_" + j.Name
					got, noise := met["success_"+key], met["noise_success_"+key]
					if _, ok := met["success_"+key]; !ok {
						t.Errorf("no recorded success for %s", key)
					}
					if j.Role == RoleTarget && eps >= 0.2 && got < noise+0.3 {
						t.Errorf("%s: success %.3f is not well above noise %.3f", key, got, noise)
					}
				}
			}
			x, labels := batchOf(test, 0, CheckSubset)
			res, err := Evaluate(ctx, net, judges, x, labels, EvalOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// Float sums may differ in the last bit on another CPU: allow two images.
			for _, row := range res.Rows {
				key := SubsetMetric(row.Eps, row.Model, CheckSubset)
				want, ok := met[key]
				if !ok || math.Abs(row.Network-want) > 2.0/CheckSubset+1e-9 {
					t.Errorf("%s: %.4f now, manifest says %.4f", key, row.Network, want)
				}
			}
		})
	}
}
