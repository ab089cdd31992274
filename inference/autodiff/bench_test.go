package autodiff_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"gibbon/inference/autodiff/gradbench"
	"gibbon/inference/benchnets"
	"gibbon/internal/testrt"
)

// BenchmarkGradient times each benchnets model's gradient graph (cross-entropy, input
// gradient) against its forward pass, alternating the two so load from other
// processes touches both alike. Report fwd-ms, grad-ms (forward + backward) and
// grad/fwd. Run with
//
//	go test -run '^$' -bench Gradient -benchtime 5x ./inference/autodiff/
//
// GIBBON_BENCH_ARCH=mnist-cnn,resnet18 picks models; `gibbon bench grad --profile`
// also lists the op types that take the time.
func BenchmarkGradient(b *testing.B) {
	rt := testrt.Open(b)
	pick := map[string]bool{}
	for _, n := range strings.Split(os.Getenv("GIBBON_BENCH_ARCH"), ",") {
		if n != "" {
			pick[n] = true
		}
	}
	for _, a := range benchnets.All() {
		if len(pick) > 0 && !pick[a.Name] {
			continue
		}
		b.Run(a.Name, func(b *testing.B) {
			ctx := context.Background()
			p, err := gradbench.NewPair(rt, a.Name, a.Build(1), gradbench.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			if _, err := p.Run(ctx); err != nil { // warm-up: ORT allocates on the first run
				b.Fatal(err)
			}
			var fwd, grad, fwdCPU, gradCPU time.Duration
			for b.Loop() {
				t, err := p.Run(ctx)
				if err != nil {
					b.Fatal(err)
				}
				fwd, grad = fwd+t.Forward, grad+t.Grad
				fwdCPU, gradCPU = fwdCPU+t.ForwardCPU, gradCPU+t.GradCPU
			}
			b.ReportMetric(fwd.Seconds()*1e3/float64(b.N), "fwd-ms")
			b.ReportMetric(grad.Seconds()*1e3/float64(b.N), "grad-ms")
			b.ReportMetric(grad.Seconds()/fwd.Seconds(), "grad/fwd")
			if fwdCPU > 0 {
				// CPU time: steadier than wall time when other processes load the machine
				b.ReportMetric(gradCPU.Seconds()/fwdCPU.Seconds(), "grad/fwd-cpu")
			}
		})
	}
}
