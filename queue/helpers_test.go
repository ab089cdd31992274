package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
	"gibbon/models"
	"gibbon/queue"
)

// startNATS runs a nats-server with JetStream in this process, its store in dir
// ("": no JetStream), on port (-1: any free one). The test stops it, unless it
// did already.
func startNATS(t testing.TB, dir string, port int) *natsserver.Server {
	t.Helper()
	return startNATSWith(t, &natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: dir != "", StoreDir: dir})
}

func startNATSWith(t testing.TB, opts *natsserver.Options) *natsserver.Server {
	t.Helper()
	opts.NoLog, opts.NoSigs = true, true
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		t.Fatal("nats-server did not start in 20 s")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// testLog keeps a component's log for the failure message.
func testLog(t testing.TB, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t, name}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testLogTo is testLog that also writes to w, for a test to read.
func testLogTo(t testing.TB, name string, w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(tlogWriter{t, name}, w), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tlogWriter struct {
	t    testing.TB
	name string
}

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, p)
	return len(p), nil
}

func connect(t testing.TB, url, name string) *queue.Conn {
	t.Helper()
	c, err := queue.Connect(context.Background(), url, name, testLog(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// startRunner is a web node's side of the queue at url, with the zoo z, until
// the test ends.
func startRunner(t testing.TB, url string, z *zoo.Zoo) *queue.Runner {
	t.Helper()
	r, err := queue.NewRunner(context.Background(), connect(t, url, "web"), z, testLog(t, "web"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// loadZoo is the built-in models and, when dir is not empty, dir's.
func loadZoo(t testing.TB, dir string) *zoo.Zoo {
	t.Helper()
	sources := []inference.ModelSource{{Name: "built-in", FS: models.FS()}}
	if dir != "" {
		sources = append(sources, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	}
	z, err := zoo.Load(context.Background(), testrt.Open(t), sources...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(z.Close)
	if len(z.Problems()) > 0 {
		t.Fatalf("models not loaded: %v", z.Problems())
	}
	return z
}

// extraModel is a model only some workers have: mnist-resnet-small's file under
// another name.
const extraModel = "mnist-resnet-copy"

// extraModelsDir writes a models directory holding extraModel.
func extraModelsDir(t testing.TB) string {
	t.Helper()
	raw, err := fs.ReadFile(models.FS(), inference.ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	man, err := inference.ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, e := range man.Models {
		if e.Name != "mnist-resnet-small" {
			continue
		}
		data, err := fs.ReadFile(models.FS(), e.File)
		if err != nil {
			t.Fatal(err)
		}
		e.Name, e.File = extraModel, extraModel+".onnx"
		if err := os.WriteFile(filepath.Join(dir, e.File), data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(inference.Manifest{Models: []inference.ModelEntry{e}})
		if err := os.WriteFile(filepath.Join(dir, inference.ManifestFile), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startWorker runs a worker until the test ends.
func startWorker(t testing.TB, conn *queue.Conn, z *zoo.Zoo, cfg queue.WorkerConfig) *queue.Worker {
	t.Helper()
	return startWorkerLog(t, conn, z, cfg, testLog(t, "worker "+cfg.Name))
}

// startWorkerLog runs a worker that logs to log until the test ends.
func startWorkerLog(t testing.TB, conn *queue.Conn, z *zoo.Zoo, cfg queue.WorkerConfig, log *slog.Logger) *queue.Worker {
	t.Helper()
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = queue.DefaultAckWait
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = queue.DefaultMaxDeliver
	}
	w, err := queue.NewWorker(context.Background(), conn, z, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	select {
	case <-w.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not advertise itself in 20 s")
	}
	return w
}

// waitFor polls cond every 20 ms for up to d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sampleImage(t testing.TB, name string) engine.Image {
	t.Helper()
	data, err := fs.ReadFile(models.FS(), "samples/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Image{Ref: engine.ImageRef{Source: "sample", Name: name}, Data: data}
}

// pgdJob is a PGD run on mnist-cnn-small watched by four defences.
func pgdJob(t testing.TB, steps int) engine.Job {
	plan := engine.Plan{Attack: "pgd", Eps: 0.2, Steps: steps, Seed: 7, Models: []string{"mnist-cnn-small"},
		Defences: []engine.Defence{{Model: "mnist-cnn-small"}, {Model: "mnist-mlp"}, {Model: "mnist-mlp", Transform: "jpeg", Param: 75},
			{Model: "mnist-cnn-robust", Transform: "resize-pad", Param: 90}}}
	return engine.Job{Plan: plan, Image: sampleImage(t, "digit-4-0.png"), Limits: engine.CLILimits, Timeout: time.Minute}
}

// recorder keeps what a run reports.
type recorder struct {
	mu        sync.Mutex
	starts    int
	frames    []*engine.Frame
	positions []int
	firstSeen chan struct{}
	once      sync.Once
}

func newRecorder() *recorder { return &recorder{firstSeen: make(chan struct{})} }

func (r *recorder) events() engine.Events {
	return engine.Events{
		Queued: func(pos, running, waiting int) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.positions = append(r.positions, pos)
		},
		Started: func(*engine.Start) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.starts++
			return nil
		},
		Frame: func(f *engine.Frame) error {
			r.mu.Lock()
			r.frames = append(r.frames, f)
			r.mu.Unlock()
			r.once.Do(func() { close(r.firstSeen) })
			return nil
		},
	}
}

func (r *recorder) lastPosition() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.positions) == 0 {
		return 0
	}
	return r.positions[len(r.positions)-1]
}

// advertise writes a worker's advert by hand, as a worker that then died left it.
func advertise(t testing.TB, url string, a queue.Advert) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), "gibbon_workers")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(a)
	if _, err := kv.Put(context.Background(), a.Worker, data); err != nil {
		t.Fatal(err)
	}
}

// noisePNG is a w×h RGB image of noise: it does not compress.
func noisePNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
		if i%4 == 3 {
			img.Pix[i] = 255
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
