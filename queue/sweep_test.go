package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gibbon/inference/engine"
	"gibbon/inference/sweep"
	"gibbon/inference/zoo"
	"gibbon/queue"
)

// Sweeps, competitions and transfer runs on workers: the same executor as in
// this process, the same results, Stop and the queue position as for the
// explorer's runs.

// smallSweeps are one small run of each kind on the built-in models.
var smallSweeps = map[string]sweep.Settings{
	sweep.KindImage: {Kind: sweep.KindImage, Attack: "pgd", Models: []string{"mnist-cnn-small"}, Image: "digit-4-0.png", Label: -1,
		Defences: []string{"mnist-cnn-small", "mnist-mlp", "mnist-cnn-small+jpeg:75"}, Eps: "0:0.3:0.1", Steps: 5, Seed: 3},
	sweep.KindDataset: {Kind: sweep.KindDataset, Attack: "pgd", Models: []string{"mnist-cnn-small"}, N: 20, Batch: 10,
		Defences: []string{"mnist-cnn-small", "mnist-mlp+bits:1"}, Eps: "0:0.2:0.1", Steps: 3, Seed: 4},
	sweep.KindCompete: {Kind: sweep.KindCompete, Attacks: []string{"fgsm", "pgd"}, Models: []string{"mnist-cnn-small"}, N: 20, Batch: 10,
		Defences: []string{"mnist-cnn-small", "mnist-mlp+bits:1"}, Eps: "0.1,0.2", Steps: 3, Seed: 5},
	sweep.KindTransfer: {Kind: sweep.KindTransfer, Models: []string{"mnist-cnn-small", "net:mnist-attack-net"}, N: 20, Batch: 10,
		Defences: []string{"mnist-mlp", "mnist-cnn-robust"}, Eps: "0.2", Steps: 3, Seed: 6},
}

// sweepJob plans set on z as the server does: the job with the settings as
// planned and, for an image sweep, the sample's clean image as its PNG.
func sweepJob(t testing.TB, z *zoo.Zoo, set sweep.Settings) (*sweep.Plan, sweep.Job) {
	t.Helper()
	plan, err := set.Plan(context.Background(), sweep.FromZoo(z), sweep.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	job := sweep.Job{Settings: plan.Settings, Limits: sweep.CLILimits, Timeout: time.Minute}
	if set.Kind == sweep.KindImage {
		clean, err := engine.LoadImage(sampleImage(t, set.Image), plan.Contract)
		if err != nil {
			t.Fatal(err)
		}
		if job.Image, err = plan.CleanPNG(engine.NewGrid(plan.Contract).Tensor(clean.Levels)); err != nil {
			t.Fatal(err)
		}
	}
	return plan, job
}

// sweepRecorder keeps what a sweep reports.
type sweepRecorder struct {
	mu           sync.Mutex
	starts       int
	total, label int
	points       []sweep.Point
	done         []int
	partials     []string // JSON
	positions    []int
	progressed   chan struct{}
	once         sync.Once
}

func newSweepRecorder() *sweepRecorder { return &sweepRecorder{progressed: make(chan struct{})} }

func (r *sweepRecorder) events() sweep.Events {
	return sweep.Events{
		Queued: func(pos, _, _ int) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.positions = append(r.positions, pos)
		},
		Started: func(total, label int) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.starts++
			r.total, r.label = total, label
			return nil
		},
		Point: func(p sweep.Point) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.points = append(r.points, p)
			return nil
		},
		Progress: func(done int, partial any) error {
			data, err := json.Marshal(partial)
			if err != nil {
				return err
			}
			r.mu.Lock()
			r.done = append(r.done, done)
			r.partials = append(r.partials, string(data))
			r.mu.Unlock()
			r.once.Do(func() { close(r.progressed) })
			return nil
		},
	}
}

func (r *sweepRecorder) lastPosition() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.positions) == 0 {
		return 0
	}
	return r.positions[len(r.positions)-1]
}

// A sweep, competition or transfer run on a worker gives the outcome the same
// job gives in this process — the result, its CSV and the gallery entry, all but
// the wall times — and reports its start once, an image sweep's points in order
// with their images, and a data set run's progress.
func TestSweepsOnAWorkerGiveTheInProcessOutcome(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t, t.TempDir(), -1)
	z := loadZoo(t, "")
	r := startRunner(t, ns.ClientURL(), z)
	w := startWorker(t, connect(t, ns.ClientURL(), "w1"), z, queue.WorkerConfig{Name: "w1"})

	for _, kind := range []string{sweep.KindImage, sweep.KindDataset, sweep.KindCompete, sweep.KindTransfer} {
		t.Run(kind, func(t *testing.T) {
			plan, job := sweepJob(t, z, smallSweeps[kind])
			remote, local := newSweepRecorder(), newSweepRecorder()
			got, err := r.RunSweep(ctx, plan, job, remote.events())
			if err != nil {
				t.Fatal(err)
			}
			// In this process, as the server's runner does it: a plan of its own.
			plan, _ = sweepJob(t, z, smallSweeps[kind])
			in, err := plan.LoadInput(ctx, job, &sweep.Datasets{})
			if err != nil {
				t.Fatal(err)
			}
			want, err := sweep.Execute(ctx, plan, in, local.events())
			if err != nil {
				t.Fatal(err)
			}
			sameOutcome(t, got, want)
			if remote.starts != 1 || remote.total != local.total || remote.label != local.label {
				t.Errorf("started %d times with %d, %d; in this process %d, %d", remote.starts, remote.total, remote.label, local.total, local.label)
			}
			if kind == sweep.KindImage && len(local.points) != 4 || kind != sweep.KindImage && len(local.done) != 2 {
				t.Fatalf("in this process the run made %d points and %d progress reports", len(local.points), len(local.done))
			}
			if len(remote.points) != len(local.points) {
				t.Fatalf("%d points arrived, the run made %d", len(remote.points), len(local.points))
			}
			for k, p := range remote.points {
				if p.Index != k || p.Adv == nil || !slices.Equal(p.Adv.Data, local.points[k].Adv.Data) || !reflect.DeepEqual(p.Defences, local.points[k].Defences) {
					t.Errorf("point %d differs from the one made in this process", k)
				}
			}
			if !slices.Equal(remote.done, local.done) || len(remote.partials) != len(local.partials) {
				t.Fatalf("progress after %v images; in this process %v", remote.done, local.done)
			}
			for k := range remote.partials {
				if withoutTimes(t, []byte(remote.partials[k])) != withoutTimes(t, []byte(local.partials[k])) {
					t.Errorf("the partial result after %d images differs", remote.done[k])
				}
			}
		})
	}
	if w.Jobs() != 4 {
		t.Errorf("the worker received %d jobs, want 4", w.Jobs())
	}
}

// sameOutcome compares two outcomes but for their wall times.
func sameOutcome(t *testing.T, got, want *sweep.Outcome) {
	t.Helper()
	gj, _ := json.Marshal(got.Result)
	wj, _ := json.Marshal(want.Result)
	if withoutTimes(t, gj) != withoutTimes(t, wj) {
		t.Errorf("the worker's result differs from the one made in this process:\n%s\n%s", gj, wj)
	}
	if csv(t, got) != csv(t, want) {
		t.Errorf("the CSV differs:\n%s\n%s", csv(t, got), csv(t, want))
	}
	g, w := got.Entry, want.Entry
	if g == nil || w == nil {
		t.Fatalf("entries: %v (%s), %v (%s)", g, got.NoSave, w, want.NoSave)
	}
	if withoutTimes(t, g.Payload) != withoutTimes(t, w.Payload) {
		t.Error("the entry's payload differs")
	}
	gc, wc := *g, *w
	gc.Payload, wc.Payload, gc.Timings, wc.Timings = nil, nil, nil, nil
	if !reflect.DeepEqual(gc, wc) {
		t.Errorf("the entry differs:\n%+v\n%+v", gc, wc)
	}
}

func csv(t *testing.T, o *sweep.Outcome) string {
	t.Helper()
	var b bytes.Buffer
	if err := o.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// withoutTimes is a result's JSON less its wall-clock fields.
func withoutTimes(t *testing.T, data []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	var strip func(any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			delete(x, "wall_seconds")
			delete(x, "images_per_second")
			for _, e := range x {
				strip(e)
			}
		case []any:
			for _, e := range x {
				strip(e)
			}
		}
	}
	strip(v)
	out, _ := json.Marshal(v)
	return string(out)
}

// Stop (the run's context ending) cancels a sweep on its worker within a batch:
// the worker says so and is free at once for the sweep that waited behind it,
// which heard its place in line from the stream meanwhile.
func TestStopCancelsASweepOnItsWorker(t *testing.T) {
	ns := startNATS(t, t.TempDir(), -1)
	z := loadZoo(t, "")
	r := startRunner(t, ns.ClientURL(), z)
	var workerLog syncBuffer
	w := startWorkerLog(t, connect(t, ns.ClientURL(), "w1"), z, queue.WorkerConfig{Name: "w1", Concurrency: 1,
		AckWait: queue.DefaultAckWait, MaxDeliver: queue.DefaultMaxDeliver}, testLogTo(t, "worker w1", &workerLog))

	// Minutes of work in a thousand short batches: it ends in time only if Stop
	// reaches the worker.
	long := smallSweeps[sweep.KindDataset]
	long.N, long.Batch, long.Eps, long.Steps = 1000, 1, "0:0.3:0.01", 100
	plan, job := sweepJob(t, z, long)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	running := newSweepRecorder()
	longDone := make(chan error, 1)
	go func() { _, err := r.RunSweep(ctx, plan, job, running.events()); longDone <- err }()
	select {
	case <-running.progressed:
	case <-time.After(60 * time.Second):
		t.Fatal("no progress from the long sweep in 60 s")
	}

	waiting := newSweepRecorder()
	waitDone := make(chan error, 1)
	plan2, job2 := sweepJob(t, z, smallSweeps[sweep.KindImage])
	go func() { _, err := r.RunSweep(context.Background(), plan2, job2, waiting.events()); waitDone <- err }()
	waitFor(t, 10*time.Second, "the waiting sweep's position", func() bool { return waiting.lastPosition() == 1 })

	cancel()
	if err := <-longDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("a stopped sweep ended with %v", err)
	}
	select {
	case err := <-waitDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the sweep waiting behind the stopped one did not finish in 60 s: the worker is still busy")
	}
	if log := workerLog.String(); !strings.Contains(log[:max(0, strings.Index(log, "sweep=image"))], "run stopped") {
		t.Errorf("the worker does not say it stopped the sweep before it took the next:\n%s", log)
	}
	if w.Jobs() != 2 {
		t.Errorf("the worker received %d jobs, want 2", w.Jobs())
	}
}
