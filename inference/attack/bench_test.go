package attack_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
)

// mobileNetV2 builds a MobileNetV2-shaped classifier for 3×224×224 images with random
// weights (BatchNorm folded away): the stem, the 17 inverted-residual blocks of the
// paper's table (expansion, channels, repeats, stride), the 1×1 conv to 1280, global
// average pooling and a 1000-way classifier, with ReLU6 as Clip(0,6).
func mobileNetV2(seed uint64) *onnx.ModelProto {
	rng := rand.New(rand.NewPCG(seed, 3))
	b := onnx.NewBuilder("mobilenetv2")
	layer := 0
	weights := func(shape []int64, fanIn int) string {
		layer++
		n := 1
		for _, d := range shape {
			n *= int(d)
		}
		w := make([]float32, n)
		std := math.Sqrt(2 / float64(fanIn))
		for i := range w {
			w[i] = float32(rng.NormFloat64() * std)
		}
		return b.Init(fmt.Sprintf("l%d.w", layer), shape, w)
	}
	zero, six := b.Scalar(0), b.Scalar(6)
	relu6 := func(x string) string { return b.Op("Clip", []string{x, zero, six}) }
	conv := func(x string, cin, cout, k, stride, group int) string {
		w := weights([]int64{int64(cout), int64(cin / group), int64(k), int64(k)}, cin/group*k*k)
		bias := b.Init(fmt.Sprintf("l%d.b", layer), []int64{int64(cout)}, make([]float32, cout))
		p := int64(k / 2)
		return b.Op("Conv", []string{x, w, bias}, onnx.AttrInts("kernel_shape", int64(k), int64(k)),
			onnx.AttrInts("strides", int64(stride), int64(stride)), onnx.AttrInts("pads", p, p, p, p), onnx.AttrInt("group", int64(group)))
	}
	x := b.Input("image", -1, 3, 224, 224)
	h := relu6(conv(x, 3, 32, 3, 2, 1))
	cin := 32
	for _, s := range []struct{ t, c, n, s int }{{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}} {
		for i := range s.n {
			stride := 1
			if i == 0 {
				stride = s.s
			}
			hidden := cin * s.t
			y := h
			if s.t != 1 {
				y = relu6(conv(y, cin, hidden, 1, 1, 1))
			}
			y = relu6(conv(y, hidden, hidden, 3, stride, hidden))
			y = conv(y, hidden, s.c, 1, 1, 1)
			if stride == 1 && cin == s.c {
				y = b.Op("Add", []string{h, b.Op("Mul", []string{y, b.Scalar(0.2)})})
			}
			h, cin = y, s.c
		}
	}
	h = relu6(conv(h, cin, 1280, 1, 1, 1))
	h = b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{h})}, onnx.AttrInt("axis", 1))
	w := weights([]int64{1000, 1280}, 1280)
	z := b.Op("Gemm", []string{h, w, b.Init("fc.b", []int64{1000}, make([]float32, 1000))}, onnx.AttrInt("transB", 1), onnx.AttrFloat("alpha", 0.05))
	b.Output("logits", z, -1, 1000)
	return b.Model()
}

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
		{"mobilenetv2-224", mobileNetV2(1), []int64{3, 224, 224}},
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
