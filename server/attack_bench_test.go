package server

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/engine"
)

// BenchmarkFrameEncode is the server's image work per frame: the adversarial
// image and the perturbation map as PNG (BestSpeed), for an MNIST input and an
// ImageNet-sized one. ns/op is the CPU time one frame spends on encoding.
func BenchmarkFrameEncode(b *testing.B) {
	for _, c := range []struct {
		name     string
		contract inference.InputContract
	}{
		{"mnist-28x28-gray", mnistContract},
		{"imagenet-224x224-rgb", inference.InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB", Resize: "crop"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			g := engine.NewGrid(c.contract)
			n := c.contract.Channels * c.contract.Height * c.contract.Width
			rng := rand.New(rand.NewPCG(1, 2))
			clean, adv := make([]uint8, n), make([]uint8, n)
			for i := range clean {
				clean[i] = uint8(rng.IntN(256))
				adv[i] = uint8(min(255, max(0, int(clean[i])+rng.IntN(17)-8)))
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := engine.EncodePNG(g.Image(adv)); err != nil {
					b.Fatal(err)
				}
				if _, err := engine.EncodePNG(g.Perturbation(adv, clean, 8, 1)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExplorerPGDSmallCNN streams PGD-40 on the zoo's small CNN (fresh weights:
// the same work per step as the trained one) over a real websocket, watched by the
// CNN itself, the CNN behind JPEG q75 and the cosine model. It reports the time
// from the start message to the first frame, frames and steps per second, and the
// server's PNG encoding time per frame.
func BenchmarkExplorerPGDSmallCNN(b *testing.B) {
	cnn := modelFile{inference.ModelEntry{Name: "cnn-small", File: "cnn-small.onnx", Task: inference.TaskClassifier,
		Architecture: "small CNN", Input: mnistContract, Labels: digitLabels(), OutputsLogits: true}, smallCNN(b)}
	f := newExplorerFixture(b, nil, cnn)
	c := dial(b, f)
	start := func() map[string]any {
		return map[string]any{"type": "start", "attack": "pgd", "eps": 77, "steps": 40, "surrogates": []string{"cnn-small"},
			"watch":  []map[string]any{{"model": "cnn-small"}, {"model": "cnn-small", "defence": "jpeg", "param": 75}, {"model": "cosine"}},
			"source": "sample", "sample": "digit-7-0.png", "seed": 1}
	}
	// The first run adapts the model and builds its gradient graph: measured apart.
	t0 := time.Now()
	c.send(start())
	first, _ := c.until("done", time.Minute)
	b.Logf("first run (builds the gradient graph): first frame %.1f ms, whole run %v", first.Timings["first_frame_ms"], time.Since(t0))
	var firstFrame, fps, sps, enc float64
	runs := 0
	for b.Loop() {
		c.send(start())
		done, _ := c.until("done", time.Minute)
		firstFrame += done.Timings["first_frame_ms"]
		fps += done.Timings["frames_per_second"]
		sps += done.Timings["steps_per_second"]
		enc += done.Timings["encode_ms_per_frame"]
		runs++
	}
	n := float64(runs)
	b.ReportMetric(firstFrame/n, "ms-to-first-frame")
	b.ReportMetric(fps/n, "frames/s")
	b.ReportMetric(sps/n, "steps/s")
	b.ReportMetric(enc/n, "encode-ms/frame")
}

// BenchmarkExplorerFirstRunAfterStart is the first run of a freshly started
// server: PGD-10 on the small CNN, the time from the start message to the first
// frame. "cold" attacks at once (the run builds the gradient graph and pays the
// runtime's first-run set-up); "warmed" lets the zoo build the graphs first, as
// gibbon serve does in the background after it starts (zoo.WarmGradients).
func BenchmarkExplorerFirstRunAfterStart(b *testing.B) {
	cnn := modelFile{inference.ModelEntry{Name: "cnn-small", File: "cnn-small.onnx", Task: inference.TaskClassifier,
		Architecture: "small CNN", Input: mnistContract, Labels: digitLabels(), OutputsLogits: true}, smallCNN(b)}
	start := map[string]any{"type": "start", "attack": "pgd", "eps": 77, "steps": 10, "surrogates": []string{"cnn-small"},
		"watch": []map[string]any{{"model": "cnn-small"}}, "source": "sample", "sample": "digit-7-0.png", "seed": 1}
	for _, warm := range []bool{false, true} {
		name := map[bool]string{false: "cold", true: "warmed"}[warm]
		b.Run(name, func(b *testing.B) {
			var ms float64
			runs := 0
			for b.Loop() {
				b.StopTimer()
				f := newExplorerFixture(b, nil, cnn)
				if warm {
					if _, failed := f.reg.WarmGradients(context.Background()); len(failed) > 0 {
						b.Fatal(failed)
					}
				}
				c := dial(b, f)
				b.StartTimer()
				c.send(start)
				done, _ := c.until("done", time.Minute)
				ms += done.Timings["first_frame_ms"]
				runs++
			}
			b.ReportMetric(ms/float64(runs), "ms-to-first-frame")
		})
	}
}
