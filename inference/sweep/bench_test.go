package sweep_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/sweep"
	"gibbon/internal/testzoo"
	"gibbon/models"
)

// benchModels are the built-in classifiers (the zoo), else the trained test MLP.
func benchModels(b *testing.B) []attack.Model {
	data, err := models.FS().ReadFile(inference.ManifestFile)
	if err != nil {
		b.Fatal(err)
	}
	man, err := inference.ParseManifest(data)
	if err != nil {
		b.Fatal(err)
	}
	var out []attack.Model
	for _, e := range man.Models {
		if e.Task != inference.TaskClassifier || e.Input.Width != 28 {
			continue
		}
		out = append(out, attack.Model{Name: e.Name, Net: testzoo.Classifier(b, e.Name)})
	}
	if len(out) == 0 {
		out = append(out, model(b, "mlp"))
	}
	return out
}

// BenchmarkPGD10Sweep is PGD-10 on 64 MNIST test images at 16 budgets (0.025 to
// 0.4): one pass per step carrying all 1024 (image, ε) rows, against one pass per
// budget (what running the attack once per ε costs). The metrics are attacked
// image·ε pairs per second of wall time and per second of CPU time (steadier on a
// shared machine).
func BenchmarkPGD10Sweep(b *testing.B) {
	x, labels := testImages(b, 64)
	grid, err := sweep.ParseGrid("0.025:0.4:0.025")
	if err != nil {
		b.Fatal(err)
	}
	seeds := seedsFrom(1, 64)
	for _, m := range benchModels(b) {
		a := pgd(10, m)
		// Build the gradient graph outside the timing.
		if _, err := a.Grid(context.Background(), x, labels, grid[:1], seeds); err != nil {
			b.Fatal(err)
		}
		for _, mode := range []string{"batched", "per-eps"} {
			b.Run(m.Name+"/"+mode, func(b *testing.B) {
				start, c0 := time.Now(), cpuTime()
				for b.Loop() {
					if mode == "batched" {
						if _, err := a.Grid(context.Background(), x, labels, grid, seeds); err != nil {
							b.Fatal(err)
						}
						continue
					}
					for _, e := range grid {
						if _, err := a.Grid(context.Background(), x, labels, []float32{e}, seeds); err != nil {
							b.Fatal(err)
						}
					}
				}
				n := float64(64 * len(grid) * b.N)
				b.ReportMetric(n/time.Since(start).Seconds(), "image·ε/s")
				b.ReportMetric(n/(cpuTime()-c0).Seconds(), "image·ε/cpu-s")
			})
		}
	}
}

// cpuTime is the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
