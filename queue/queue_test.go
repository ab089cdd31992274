package queue_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gibbon/inference/engine"
	"gibbon/inference/sweep"
	"gibbon/inference/zoo"
	"gibbon/queue"
)

// A run on a worker gives the record the same plan gives in this process (the
// CPU provider is deterministic), with its start once and its frames in order,
// the final one last.
func TestRunOnAWorkerGivesTheInProcessRecord(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t, t.TempDir(), -1)
	z := loadZoo(t, "")
	r := startRunner(t, ns.ClientURL(), z)
	startWorker(t, connect(t, ns.ClientURL(), "w1"), z, queue.WorkerConfig{Name: "w1"})

	job := pgdJob(t, 20)
	rc := newRecorder()
	rec, err := r.Run(ctx, job, rc.events())
	if err != nil {
		t.Fatal(err)
	}
	p, err := engine.Prepare(ctx, z, job.Plan, job.Image, job.Limits)
	if err != nil {
		t.Fatal(err)
	}
	var local []*engine.Frame
	want, err := p.Execute(ctx, 0, engine.Events{Frame: func(f *engine.Frame) error { local = append(local, f); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	a, err := rec.Entry()
	if err != nil {
		t.Fatal(err)
	}
	b, err := want.Entry()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Adversarial, b.Adversarial) || !reflect.DeepEqual(a.Steps, b.Steps) || !reflect.DeepEqual(a.Predictions, b.Predictions) {
		t.Fatal("the worker's record differs from the one made in this process")
	}
	if rc.starts != 1 {
		t.Errorf("the start was reported %d times", rc.starts)
	}
	if len(rc.frames) != len(local) {
		t.Errorf("%d frames arrived, the run records %d", len(rc.frames), len(local))
	}
	for i := 1; i < len(rc.frames); i++ {
		if rc.frames[i].Seq <= rc.frames[i-1].Seq {
			t.Fatalf("frame %d came after frame %d", rc.frames[i].Seq, rc.frames[i-1].Seq)
		}
	}
	if last := rc.frames[len(rc.frames)-1]; !last.Final || !bytes.Equal(last.Adv, rec.Adv) {
		t.Error("the last frame is not the final one with the result")
	}
}

// A job or an event larger than a NATS message travels through the object
// store (a server taking 8 kB messages: a 100 kB upload, the run's record), and
// nothing is left there afterwards.
func TestLargeJobsAndRecordsTravelThroughTheObjectStore(t *testing.T) {
	ctx := context.Background()
	ns := startNATSWith(t, &natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), MaxPayload: 8 << 10})
	z := loadZoo(t, "")
	r := startRunner(t, ns.ClientURL(), z)
	startWorker(t, connect(t, ns.ClientURL(), "w1"), z, queue.WorkerConfig{Name: "w1"})

	job := pgdJob(t, 40)
	job.Image = engine.Image{Ref: engine.ImageRef{Source: "upload", Name: "noise.png"}, Data: noisePNG(t, 200, 200)}
	if len(job.Image.Data) < 100<<10 {
		t.Fatalf("the upload is only %d bytes", len(job.Image.Data))
	}
	rec, err := r.Run(ctx, job, engine.Events{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := engine.Prepare(ctx, z, job.Plan, job.Image, job.Limits)
	if err != nil {
		t.Fatal(err)
	}
	want, err := p.Execute(ctx, 0, engine.Events{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Adv, want.Adv) || rec.Plan.Image.SHA256 != want.Plan.Image.SHA256 {
		t.Fatal("the run on the worker differs from the one in this process")
	}
	var size bytes.Buffer
	if err := gob.NewEncoder(&size).Encode(rec); err != nil || size.Len() < 8<<10 {
		t.Fatalf("the record is %d bytes (%v): it fits in a message, the test proves nothing", size.Len(), err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	store, err := js.ObjectStore(ctx, "gibbon_payloads")
	if err != nil {
		t.Fatal(err)
	}
	if left, err := store.List(ctx); !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Errorf("payloads left in the store: %d (%v)", len(left), err)
	}
}

// A run goes only to a worker that has all its models; a run whose model no
// worker has fails at once, naming it.
func TestARunGoesOnlyToAWorkerWithItsModels(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t, t.TempDir(), -1)
	extra := extraModelsDir(t)
	both := loadZoo(t, extra)
	r := startRunner(t, ns.ClientURL(), both)
	plain := startWorker(t, connect(t, ns.ClientURL(), "plain"), loadZoo(t, ""), queue.WorkerConfig{Name: "plain"})
	full := startWorker(t, connect(t, ns.ClientURL(), "full"), both, queue.WorkerConfig{Name: "full"})
	if plain.Set() == full.Set() {
		t.Fatal("workers with different models share a model set")
	}

	job := pgdJob(t, 5)
	job.Plan.Models = []string{extraModel}
	for range 3 {
		if _, err := r.Run(ctx, job, engine.Events{}); err != nil {
			t.Fatal(err)
		}
	}
	if plain.Jobs() != 0 || full.Jobs() != 3 {
		t.Fatalf("the worker without %s received %d jobs, the one with it %d (want 0 and 3)", extraModel, plain.Jobs(), full.Jobs())
	}

	job.Plan.Models = []string{"mnist-nobody-has"}
	start := time.Now()
	_, err := r.Run(ctx, job, engine.Events{})
	if err == nil || !strings.Contains(err.Error(), "none of the 2 workers has model mnist-nobody-has") {
		t.Fatalf("a run no worker can take: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %s", d)
	}
}

// Stop (the run's context ending) cancels the run on its worker within a step:
// the worker sends back the record of what it did, marked stopped.
func TestStopCancelsTheRunOnItsWorker(t *testing.T) {
	ns := startNATS(t, t.TempDir(), -1)
	z := loadZoo(t, "")
	r := startRunner(t, ns.ClientURL(), z)
	w := startWorker(t, connect(t, ns.ClientURL(), "w1"), z, queue.WorkerConfig{Name: "w1"})

	ctx, cancel := context.WithCancel(context.Background())
	rc := newRecorder()
	go func() {
		<-rc.firstSeen
		cancel()
	}()
	rec, err := r.Run(ctx, pgdJob(t, 100000), rc.events())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a stopped run ended with %v", err)
	}
	if rec == nil || !rec.Stopped || rec.StepsRun >= 100000 {
		t.Fatalf("the stopped run's record: %+v", rec)
	}
	// The worker is free again: the next run starts at once.
	if _, err := r.Run(context.Background(), pgdJob(t, 3), engine.Events{}); err != nil {
		t.Fatal(err)
	}
	if w.Jobs() != 2 {
		t.Errorf("the worker received %d jobs, want 2", w.Jobs())
	}
}

// Runs waiting for a busy worker hear their place in line from the stream; a
// page that leaves while waiting takes its job off the queue, so no worker
// ever receives it.
func TestWaitingRunsHearTheirPositionAndLeaveTheQueue(t *testing.T) {
	ns := startNATS(t, t.TempDir(), -1)
	z := loadZoo(t, "")
	r := startRunner(t, ns.ClientURL(), z)
	w := startWorker(t, connect(t, ns.ClientURL(), "w1"), z, queue.WorkerConfig{Name: "w1"})

	long, stopLong := context.WithCancel(context.Background())
	defer stopLong()
	first := newRecorder()
	firstDone := make(chan error, 1)
	go func() { _, err := r.Run(long, pgdJob(t, 100000), first.events()); firstDone <- err }()
	<-first.firstSeen

	waiting := make([]*recorder, 2)
	cancels := make([]context.CancelFunc, 2)
	ended := make(chan error, 2)
	for i := range waiting {
		waiting[i] = newRecorder()
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		go func() { _, err := r.Run(ctx, pgdJob(t, 3), waiting[i].events()); ended <- err }()
		waitFor(t, 10*time.Second, "a position", func() bool { return waiting[i].lastPosition() == i+1 })
	}
	// The second in line leaves; the first moves up once the long run stops.
	cancels[1]()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("a page that left: %v", err)
	}
	stopLong()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the long run: %v", err)
	}
	if err := <-ended; err != nil {
		t.Fatalf("the first in line: %v", err)
	}
	time.Sleep(time.Second) // a job left on the queue would reach the idle worker now
	if w.Jobs() != 2 {
		t.Errorf("the worker received %d jobs, want 2 (the one whose page left was taken off the queue)", w.Jobs())
	}
	cancels[0]()
}

// A job (an explorer run or a sweep) whose workers keep dying — they take it
// and go silent — is given up after its deliveries, and the page hears so; the job leaves the stream, and
// the worker still pulling never receives it.
func TestAJobWhoseWorkersKeepDyingIsGivenUp(t *testing.T) {
	ctx := context.Background()
	z := loadZoo(t, "")
	t.Run("attack", func(t *testing.T) {
		givenUp(t, z, func(r *queue.Runner) error { _, err := r.Run(ctx, pgdJob(t, 5), engine.Events{}); return err })
	})
	t.Run("sweep", func(t *testing.T) {
		plan, job := sweepJob(t, z, smallSweeps[sweep.KindDataset])
		givenUp(t, z, func(r *queue.Runner) error { _, err := r.RunSweep(ctx, plan, job, sweep.Events{}); return err })
	})
}

// givenUp runs a job (run) whose workers keep dying.
func givenUp(t *testing.T, z *zoo.Zoo, run func(*queue.Runner) error) {
	ctx := context.Background()
	ns := startNATS(t, t.TempDir(), -1)
	r := startRunner(t, ns.ClientURL(), z)
	// The dying worker pulls with the raw client and never answers; its advert
	// stays, as a dead worker's does until it expires.
	cfg := queue.WorkerConfig{Name: "dying", Concurrency: 1, AckWait: time.Second, MaxDeliver: 2}
	dyingConn := connect(t, ns.ClientURL(), "dying")
	dying, err := queue.NewWorker(ctx, dyingConn, z, cfg, testLog(t, "dying"))
	if err != nil {
		t.Fatal(err)
	}
	advertise(t, ns.ClientURL(), queue.Advert{Worker: "dying", Set: dying.Set(), Concurrency: 1, Models: dying.Models()})
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cons, err := js.Consumer(ctx, "GIBBON_JOBS_"+dying.Set(), "workers")
	if err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- run(r) }()
	for i := range 2 {
		if _, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second)); err != nil {
			t.Fatalf("delivery %d: %v", i+1, err)
		}
	}
	last := time.Now()
	cfg.Name = "alive"
	alive := startWorker(t, connect(t, ns.ClientURL(), "alive"), z, cfg)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "given up") || !strings.Contains(err.Error(), "nothing was saved") {
			t.Fatalf("the page heard: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the page heard nothing 20 s after the job's last delivery")
	}
	t.Logf("given up %s after the last delivery", time.Since(last).Round(time.Millisecond))
	s, _ := js.Stream(ctx, "GIBBON_JOBS_"+dying.Set())
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("the given-up job is still on the stream: %v %+v", err, info)
	}
	if alive.Jobs() != 0 {
		t.Errorf("the given-up job reached a worker %d times", alive.Jobs())
	}
}

// A NATS URL nobody answers fails at once in one line, without its password;
// a server without JetStream says so.
func TestConnectFailsInOneLine(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = queue.Connect(context.Background(), "nats://gibbon:secret@"+closed, "test", nil)
	if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("connecting to nothing: %v", err)
	}
	if d := time.Since(start); d > queue.ConnectTimeout+time.Second {
		t.Errorf("the failure took %s", d)
	}
	// Without JetStream.
	plain := startNATS(t, "", -1)
	_, err = queue.Connect(context.Background(), plain.ClientURL(), "test", nil)
	if err == nil || !strings.Contains(err.Error(), "has no JetStream") {
		t.Fatalf("a server without JetStream: %v", err)
	}
}

// The shared run book's store: create once, read, and compare-and-set updates.
func TestRunStoreIsCompareAndSet(t *testing.T) {
	ctx := context.Background()
	ns := startNATS(t, t.TempDir(), -1)
	s, err := queue.NewRunStore(ctx, connect(t, ns.ClientURL(), "web"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := s.Get(ctx, "k1"); v != nil || err != nil {
		t.Fatalf("a missing key: %q, %v", v, err)
	}
	if err := s.Create(ctx, "k1", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "k1", []byte("b")); err == nil {
		t.Fatal("a key was created twice")
	}
	v, rev, err := s.Get(ctx, "k1")
	if err != nil || string(v) != "a" {
		t.Fatalf("read %q, %v", v, err)
	}
	if ok, err := s.Update(ctx, "k1", []byte("c"), rev); !ok || err != nil {
		t.Fatalf("an update at the read revision: %v, %v", ok, err)
	}
	if ok, err := s.Update(ctx, "k1", []byte("d"), rev); ok || err != nil {
		t.Fatalf("an update at a stale revision: %v, %v", ok, err)
	}
	if v, _, _ := s.Get(ctx, "k1"); string(v) != "c" {
		t.Fatalf("after the stale update the value is %q", v)
	}
}
