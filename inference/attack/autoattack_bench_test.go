package attack_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/internal/testzoo"
)

// BenchmarkAutoAttack times standard AutoAttack at ε 0.3 on the first
// GIBBON_BENCH_N (default 1000) MNIST test digits, batches of 500, on each built-in
// MNIST classifier (GIBBON_BENCH_MODELS, comma-separated, picks some), and reports
// where the time goes: per stage its wall seconds and the images it attacked and
// fooled, with the robust accuracy and the process's CPU time (steadier than wall
// time on a shared machine). Run it with
//
//	go test -run '^$' -bench AutoAttack -benchtime 1x -timeout 0 ./inference/attack/
func BenchmarkAutoAttack(b *testing.B) {
	n := 1000
	if v := os.Getenv("GIBBON_BENCH_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 10000 {
			b.Fatalf("GIBBON_BENCH_N=%q: want 1..10000 images", v)
		}
	}
	names := []string{"mnist-mlp", "mnist-cnn-small", "mnist-cnn-wide", "mnist-resnet-small", "mnist-cnn-robust"}
	if v := os.Getenv("GIBBON_BENCH_MODELS"); v != "" {
		names = strings.Split(v, ",")
	}
	x, labels := testzoo.Digits(b, n)
	for _, name := range names {
		b.Run(name, func(b *testing.B) {
			m := builtin(b, name)
			model := attack.Model{Name: name, Net: m}
			cfg := attack.Config{Method: attack.AutoAttack, Eps: 0.3, Seed: 0}
			// Warm up: build both gradient graphs (cross-entropy, logit seed) outside the clock.
			warm := cfg
			warm.Steps, warm.Queries = 2, 2
			if _, err := attack.Evaluate(context.Background(), warm, model, x, labels, n, 1, nil); err != nil {
				b.Fatal(err)
			}
			pgd, err := pgd40Accuracy(m, x, labels)
			if err != nil {
				b.Fatal(err)
			}
			var ev *attack.Evaluation
			var cpu time.Duration
			for b.Loop() {
				c0 := cpuTime()
				var err error
				if ev, err = attack.Evaluate(context.Background(), cfg, model, x, labels, 500, 1, nil); err != nil {
					b.Fatal(err)
				}
				cpu = cpuTime() - c0
			}
			b.ReportMetric(100*ev.Clean, "clean-%")
			b.ReportMetric(100*ev.Robust, "robust-%")
			b.ReportMetric(100*pgd, "pgd40-%")
			b.ReportMetric(ev.Wall.Seconds(), "wall-s")
			b.ReportMetric(cpu.Seconds(), "cpu-s")
			var table strings.Builder
			fmt.Fprintf(&table, "%s, %d digits, ε 0.3: clean %.1f%%, PGD-40 %.1f%%, AutoAttack %.1f%% in %.1f s wall, %.1f s CPU\n", name, n, 100*ev.Clean, 100*pgd, 100*ev.Robust, ev.Wall.Seconds(), cpu.Seconds())
			for _, s := range ev.Stages {
				b.ReportMetric(s.Wall.Seconds(), s.Name+"-s")
				fmt.Fprintf(&table, "  %-8s attacked %5d fooled %5d robust after %5.1f%%  %7.1f s  %8.1f fwd %7.1f bwd per attacked image\n", s.Name, s.Attacked, s.Fooled,
					100*s.RobustAccuracy, s.Wall.Seconds(), float64(s.Forward)/float64(max(s.Attacked, 1)), float64(s.Backward)/float64(max(s.Attacked, 1)))
			}
			b.Log(table.String())
		})
	}
}

// pgd40Accuracy is the accuracy under PGD-40 as `gibbon eval` measures it (ε 0.3,
// step 0.01, random start) on the same digits, in batches of 500.
func pgd40Accuracy(m *attack.ONNXModel, x *inference.Tensor, labels []int) (float64, error) {
	robust := 0
	for start := 0; start < len(labels); start += 500 {
		end := min(start+500, len(labels))
		xs := &inference.Tensor{Shape: append([]int64{int64(end - start)}, x.Shape[1:]...), Data: x.Data[start*784 : end*784]}
		res, err := attack.Run(context.Background(), attack.Config{Method: attack.PGD, Eps: 0.3, Steps: 40, Alpha: 0.01, Seed: int64(start)},
			attack.Request{Images: xs, Labels: labels[start:end], Surrogates: []attack.Model{{Name: m.Name(), Net: m}}}, nil)
		if err != nil {
			return 0, err
		}
		for i, p := range res.Models[0].Adv {
			if p == labels[start+i] {
				robust++
			}
		}
	}
	return float64(robust) / float64(len(labels)), nil
}
