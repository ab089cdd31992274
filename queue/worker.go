package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gibbon/inference/sweep"
	"gibbon/inference/zoo"
)

// Defaults of a worker's job consumer: how long a job may go unheard of before
// JetStream hands it to another worker (the worker says "in progress" every
// third of it), and how many deliveries a job gets before it is given up.
const (
	DefaultAckWait    = 30 * time.Second
	DefaultMaxDeliver = 3
)

// WorkerConfig is a worker's settings.
type WorkerConfig struct {
	// Name is unique among workers (its advert's key); empty: host-pid.
	Name string
	// Concurrency is how many jobs run at once.
	Concurrency int
	// AckWait and MaxDeliver configure the set's consumer (every worker of a set
	// should give the same).
	AckWait    time.Duration
	MaxDeliver int
	// Provider says where the models run ("cpu", "cuda"), for adverts.
	Provider string
	Version  string
}

// Worker takes jobs for its model set from JetStream and runs them on its zoo:
// explorer runs with the engine, sweeps and matrices with sweep.Execute.
type Worker struct {
	cfg      WorkerConfig
	conn     *Conn
	zoo      *zoo.Zoo
	log      *slog.Logger
	advert   Advert
	ads      jetstream.KeyValue
	payloads jetstream.ObjectStore

	ready    chan struct{}  // closed once advertised
	datasets sweep.Datasets // for sweeps and matrices (worker_sweep.go)

	mu      sync.Mutex
	cons    jetstream.Consumer
	running map[string]context.CancelCauseFunc // by run id
	jobs    atomic.Int64
}

// NewWorker checks cfg, makes the set's stream and consumer and the buckets.
// The worker serves every model z loaded.
func NewWorker(ctx context.Context, conn *Conn, z *zoo.Zoo, cfg WorkerConfig, log *slog.Logger) (*Worker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("a worker runs at least 1 job at once, not %d", cfg.Concurrency)
	case cfg.AckWait < time.Second:
		return nil, fmt.Errorf("the ack wait must be at least 1s, not %s", cfg.AckWait)
	case cfg.MaxDeliver < 1:
		return nil, fmt.Errorf("a job is delivered at least once, not %d times", cfg.MaxDeliver)
	}
	host, _ := os.Hostname()
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	cfg.Name = keySafe(cfg.Name)
	var models []ModelRef
	for _, m := range z.All() {
		models = append(models, ModelRef{Name: m.Name, SHA256: strings.ToLower(m.SHA256), Provider: m.Provider()})
	}
	if len(models) == 0 {
		return nil, errors.New("the worker has no model it could load: see the problems above")
	}
	w := &Worker{cfg: cfg, conn: conn, zoo: z, log: log, running: map[string]context.CancelCauseFunc{}, ready: make(chan struct{}),
		advert: Advert{Worker: cfg.Name, Host: host, Set: setID(models), Provider: cfg.Provider,
			Concurrency: cfg.Concurrency, Models: models, Version: cfg.Version}}
	var err error
	if w.ads, err = conn.adverts(ctx); err != nil {
		return nil, err
	}
	if w.payloads, err = conn.payloads(ctx); err != nil {
		return nil, err
	}
	if err := w.ensureQueue(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// keySafe keeps the characters a KV key may hold.
func keySafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, s)
}

// Set is the worker's model set id.
func (w *Worker) Set() string { return w.advert.Set }

// Name is the worker's name.
func (w *Worker) Name() string { return w.cfg.Name }

// Models are the models the worker serves.
func (w *Worker) Models() []ModelRef { return slices.Clone(w.advert.Models) }

// Ready is closed once the worker has advertised itself: web nodes send it jobs.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Jobs counts the jobs this worker has received.
func (w *Worker) Jobs() int64 { return w.jobs.Load() }

// ensureQueue makes (or updates) the set's stream and its workers' consumer.
func (w *Worker) ensureQueue(ctx context.Context) error {
	s, err := w.conn.js.CreateOrUpdateStream(ctx, jobStreamConfig(w.advert.Set))
	if err != nil {
		return fmt.Errorf("NATS at %s: the job stream: %w", w.conn.url, err)
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jobConsumerConfig(w.advert.Set, w.cfg.AckWait, w.cfg.MaxDeliver))
	if err != nil {
		return fmt.Errorf("NATS at %s: the job consumer: %w", w.conn.url, err)
	}
	w.mu.Lock()
	w.cons = c
	w.mu.Unlock()
	return nil
}

// Run advertises the worker and runs jobs, Concurrency at once, until ctx ends.
// Jobs still running then are cancelled and handed back (another worker takes
// them at once), and the advert is deleted.
func (w *Worker) Run(ctx context.Context) error {
	w.conn.whenLost(w.onLost)
	if err := w.advertise(ctx); err != nil {
		return fmt.Errorf("NATS at %s: advertise the worker: %w", w.conn.url, err)
	}
	w.log.Info("worker ready", "worker", w.cfg.Name, "set", w.advert.Set, "models", len(w.advert.Models),
		"provider", w.cfg.Provider, "concurrency", w.cfg.Concurrency, "nats", w.conn.url)
	var wg sync.WaitGroup
	wg.Go(func() { w.keepAdvertising(ctx) })
	for range w.cfg.Concurrency {
		wg.Go(func() { w.takeJobs(ctx) })
	}
	close(w.ready)
	wg.Wait()
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	w.ads.Delete(dctx, w.cfg.Name) // gone now, not when the advert expires
	return nil
}

func (w *Worker) advertise(ctx context.Context) error {
	data, err := json.Marshal(w.advert)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	_, err = w.ads.Put(actx, w.cfg.Name, data)
	return err
}

func (w *Worker) keepAdvertising(ctx context.Context) {
	t := time.NewTicker(advertEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := w.advertise(ctx)
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrBucketNotFound) {
				// A NATS server that lost its store: make the bucket again.
				if w.ads, err = w.conn.adverts(ctx); err == nil {
					err = w.advertise(ctx)
				}
			}
			if err != nil && ctx.Err() == nil {
				w.log.Debug("queue: advert not written", "err", err)
			}
		}
	}
}

// takeJobs pulls one job at a time and runs it, until ctx ends.
func (w *Worker) takeJobs(ctx context.Context) {
	for ctx.Err() == nil {
		w.mu.Lock()
		cons := w.cons
		w.mu.Unlock()
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		switch {
		case err == nil:
			w.runJob(ctx, msg)
		case ctx.Err() != nil:
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
			// no job in 5 s: ask again
		case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
			// A NATS server that lost its store: make the queue again.
			if err := w.ensureQueue(ctx); err != nil {
				w.log.Warn("queue: the job queue cannot be made", "err", err)
				sleep(ctx, time.Second)
			}
		default:
			w.log.Debug("queue: waiting for a job", "err", err)
			sleep(ctx, reconnectWait)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// errLostConnection cancels a worker's runs when its NATS connection drops: it
// could report nothing, and JetStream redelivers the jobs it did not ack.
var errLostConnection = errors.New("the worker lost its connection to NATS")

func (w *Worker) onLost(error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, cancel := range w.running {
		cancel(errLostConnection)
	}
}

func (w *Worker) register(run string, cancel context.CancelCauseFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running[run] = cancel
}

func (w *Worker) unregister(run string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.running, run)
}

// lacks is the first model of need the worker does not have with that checksum.
func (w *Worker) lacks(need []ModelRef) string { return w.advert.missing(need) }
