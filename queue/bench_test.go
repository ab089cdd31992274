package queue_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/benchnets"
	"gibbon/inference/engine"
	"gibbon/inference/onnx"
	"gibbon/inference/zoo"
	"gibbon/queue"
)

// The queue against the in-process path, on this machine: runs per second and
// time to first frame with 8 pages asking at once, for 1, 2 and 4 runs at a time
// (in-process slots, or queue workers), on the small CNN and on a
// MobileNetV2-shaped graph; and the queue's overhead per run, one run at a time.
//
//	go test -run '^$' -bench Queue -benchtime 24x ./queue
//
// Workers run in this process on the same zoo as the in-process path (one set of
// warm ORT sessions): the difference is the queue, not the models.

// benchClients is how many pages ask at once.
const benchClients = 8

type benchModel struct {
	name string
	job  func(testing.TB, *zoo.Zoo) engine.Job
}

var benchModels = []benchModel{
	{"cnn-small", func(t testing.TB, _ *zoo.Zoo) engine.Job {
		job := pgdJob(t, 10)
		job.Plan.Defences = job.Plan.Defences[:2]
		return job
	}},
	{"mobilenetv2", func(t testing.TB, _ *zoo.Zoo) engine.Job {
		plan := engine.Plan{Attack: "pgd", Eps: 8.0 / 255, Steps: 5, Seed: 3, Models: []string{"mobilenetv2-random"},
			Defences: []engine.Defence{{Model: "mobilenetv2-random"}}}
		return engine.Job{Plan: plan, Image: sampleImage(t, "digit-4-0.png"), Limits: engine.CLILimits, Timeout: time.Minute}
	}},
}

func BenchmarkQueue(b *testing.B) {
	z := loadZoo(b, mobileNetDir(b))
	for _, m := range benchModels {
		job := m.job(b, z)
		warm(b, z, job)
		for _, n := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("%s/in-process/slots=%d", m.name, n), func(b *testing.B) {
				slots := make(chan struct{}, n)
				measure(b, func(ctx context.Context, ev engine.Events) error {
					slots <- struct{}{}
					defer func() { <-slots }()
					return runHere(ctx, z, job, ev)
				})
			})
			b.Run(fmt.Sprintf("%s/queue/workers=%d", m.name, n), func(b *testing.B) {
				r := queueWith(b, z, n)
				measure(b, func(ctx context.Context, ev engine.Events) error {
					_, err := r.Run(ctx, job, ev)
					return err
				})
			})
		}
	}
}

// BenchmarkQueueOverhead runs one run at a time, alternating the in-process path
// and the queue with one worker (so that load from other processes touches
// both alike), and reports the mean wall time of each and their difference.
func BenchmarkQueueOverhead(b *testing.B) {
	z := loadZoo(b, mobileNetDir(b))
	for _, m := range benchModels {
		job := m.job(b, z)
		warm(b, z, job)
		b.Run(m.name, func(b *testing.B) {
			r := queueWith(b, z, 1)
			var local, queued time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if err := runHere(context.Background(), z, job, engine.Events{}); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := r.Run(context.Background(), job, engine.Events{}); err != nil {
					b.Fatal(err)
				}
				local, queued = local+t1.Sub(t0), queued+time.Since(t1)
			}
			b.ReportMetric(ms(local)/float64(b.N), "in-process-ms/run")
			b.ReportMetric(ms(queued)/float64(b.N), "queue-ms/run")
			b.ReportMetric(ms(queued-local)/float64(b.N), "overhead-ms/run")
		})
	}
}

// measure runs b.N runs from benchClients pages at once and reports runs per
// second and the time to first frame (from asking, waiting included).
func measure(b *testing.B, run func(context.Context, engine.Events) error) {
	var mu sync.Mutex
	var ttff []time.Duration
	next := make(chan struct{})
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			for range next {
				asked := time.Now()
				var once sync.Once
				err := run(context.Background(), engine.Events{Frame: func(*engine.Frame) error {
					once.Do(func() {
						mu.Lock()
						ttff = append(ttff, time.Since(asked))
						mu.Unlock()
					})
					return nil
				}})
				if err != nil {
					b.Error(err)
				}
			}
		})
	}
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	wall := time.Since(start)
	b.StopTimer()
	slices.Sort(ttff)
	b.ReportMetric(float64(b.N)/wall.Seconds(), "runs/s")
	b.ReportMetric(ms(quantile(ttff, 0.5)), "ttff-p50-ms")
	b.ReportMetric(ms(quantile(ttff, 0.99)), "ttff-p99-ms")
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// runHere is the in-process path: prepare and execute on the zoo.
func runHere(ctx context.Context, z *zoo.Zoo, job engine.Job, ev engine.Events) error {
	p, err := engine.Prepare(ctx, z, job.Plan, job.Image, job.Limits)
	if err != nil {
		return err
	}
	_, err = p.Execute(ctx, job.Timeout, ev)
	return err
}

// warm runs job once in process, so that gradient graphs exist before timing.
func warm(b *testing.B, z *zoo.Zoo, job engine.Job) {
	if err := runHere(context.Background(), z, job, engine.Events{}); err != nil {
		b.Fatal(err)
	}
}

// queueWith is a nats-server, n workers (concurrency 1) on z, and a runner.
func queueWith(b *testing.B, z *zoo.Zoo, n int) *queue.Runner {
	ns := startNATS(b, b.TempDir(), -1)
	web, err := queue.Connect(context.Background(), ns.ClientURL(), "web", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(web.Close)
	r, err := queue.NewRunner(context.Background(), web, z, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	for i := range n {
		conn, err := queue.Connect(context.Background(), ns.ClientURL(), "worker", nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(conn.Close)
		w, err := queue.NewWorker(context.Background(), conn, z, queue.WorkerConfig{Name: fmt.Sprintf("w%d", i), Concurrency: 1,
			AckWait: queue.DefaultAckWait, MaxDeliver: queue.DefaultMaxDeliver}, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.Run(ctx); close(done) }()
		b.Cleanup(func() { cancel(); <-done })
		<-w.Ready()
	}
	return r
}

// mobileNetDir writes a models directory with a MobileNetV2-shaped classifier
// (random weights, 224×224 RGB with ImageNet's mean and std, 1000 classes).
func mobileNetDir(b *testing.B) string {
	data, err := onnx.Encode(benchnets.MobileNetV2(1))
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mobilenetv2-random.onnx"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	labels := make([]string, 1000)
	for i := range labels {
		labels[i] = fmt.Sprintf("class %d", i)
	}
	sum := sha256.Sum256(data)
	man := inference.Manifest{Models: []inference.ModelEntry{{Name: "mobilenetv2-random", File: "mobilenetv2-random.onnx",
		SHA256: hex.EncodeToString(sum[:]), Task: inference.TaskClassifier, Architecture: "MobileNetV2 (random weights)",
		Input: inference.InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB", Range: [2]float64{0, 1},
			Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225}, Resize: "crop", CropPct: 0.875, Interp: "bilinear"},
		Labels: labels, OutputsLogits: true}}}
	out, _ := json.Marshal(man)
	if err := os.WriteFile(filepath.Join(dir, inference.ManifestFile), out, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}
