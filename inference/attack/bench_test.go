package attack_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/benchnets"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
)

// BenchmarkPGD10 measures PGD-10 (10 gradient steps and one forward pass of the end
// point) in images per second, and its cost relative to 21 forward passes of the same
// batch, the ideal if a backward pass cost one forward. Run it with
//
//	go test -run '^$' -bench PGD10 -benchtime 3x ./inference/attack/
func BenchmarkPGD10(b *testing.B) {
	cnn, _ := arch.SmallCNN.Build(1)
	models := []struct {
		name  string
		proto *onnx.ModelProto
		shape []int64
	}{
		{"cnn-small", cnn, []int64{1, 28, 28}},
		{"mobilenetv2-224", benchnets.MobileNetV2(1), []int64{3, 224, 224}},
	}
	for _, m := range models {
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/batch%d", m.name, batch), func(b *testing.B) {
				ctx := context.Background()
				net := newModel(b, m.proto, attack.ModelOptions{Name: m.name})
				x := gridImages(uint64(batch), append([]int64{int64(batch)}, m.shape...)...)
				labels := make([]int, batch)
				for i := range labels {
					labels[i] = i % net.Classes()
				}
				req := attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{{Name: m.name, Net: net}}}
				cfg := attack.Config{Method: attack.PGD, Eps: 8.0 / 255, Steps: 10, Seed: 1}
				// Warm up: builds the gradient graph and lets ORT allocate.
				if _, err := attack.Run(ctx, cfg, req, nil); err != nil {
					b.Fatal(err)
				}
				w := inference.NewTensor(int64(batch), int64(net.Classes()))
				for i, l := range labels {
					w.Data[i*net.Classes()+l] = 1
				}
				// One forward and one gradient pass are timed after each attack (outside
				// its clock), so that load on the machine touches all three alike.
				// CPU time is reported beside wall time: on a shared machine it is the
				// steadier measure (ORT runs in the calling thread).
				var attackTime, fwdTime, gradTime, attackCPU, fwdCPU time.Duration
				b.ResetTimer()
				for b.Loop() {
					c0 := cpuTime()
					res, err := attack.Run(ctx, cfg, req, nil)
					if err != nil {
						b.Fatal(err)
					}
					attackTime += res.Wall
					attackCPU += cpuTime() - c0
					// Small batches repeat the reference passes, for steadier means.
					reps := max(1, 32/batch)
					start, c1 := time.Now(), cpuTime()
					for range reps {
						if _, err := net.Predict(ctx, x); err != nil {
							b.Fatal(err)
						}
					}
					fwdTime += time.Since(start) / time.Duration(reps)
					fwdCPU += (cpuTime() - c1) / time.Duration(reps)
					start = time.Now()
					for range reps {
						if _, err := net.Gradient(ctx, x, attack.CrossEntropy, w); err != nil {
							b.Fatal(err)
						}
					}
					gradTime += time.Since(start) / time.Duration(reps)
				}
				b.StopTimer()
				n := float64(b.N)
				per, fwd, grad := attackTime.Seconds()/n, fwdTime.Seconds()/n, gradTime.Seconds()/n
				// Run's CPU time includes the clean forward pass of its evaluation.
				attackCPU -= fwdCPU
				b.ReportMetric(float64(batch)/per, "images/s")
				b.ReportMetric(per/(21*fwd), "x21fwd")
				b.ReportMetric(float64(batch)/(attackCPU.Seconds()/n), "cpu-images/s")
				b.ReportMetric(attackCPU.Seconds()/(21*fwdCPU.Seconds()), "cpu-x21fwd")
				b.ReportMetric(grad/fwd, "grad/fwd")
				b.ReportMetric(fwd*1e3, "fwd-ms/batch")
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
