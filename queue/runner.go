package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gibbon/inference/engine"
	"gibbon/inference/sweep"
)

// Runner is a web node's side of the queue: it runs the explorer's jobs
// (server.Runner) and sweeps, competitions and transfer runs
// (server.SweepRunner) on workers, and relays what they report.
type Runner struct {
	conn     *Conn
	models   ModelIndex
	log      *slog.Logger
	ads      jetstream.KeyValue
	payloads jetstream.ObjectStore
	advisory *nats.Subscription

	mu     sync.Mutex
	relays map[*relay]struct{}
	bySeq  map[jobRef]*relay
	// adverts is the last listing of the workers bucket, and when it was taken.
	adverts   []Advert
	advertsAt time.Time
	// sets caches each set's queue state briefly: many queued pages poll it.
	sets map[string]*setState
}

// jobRef is a job's place in JetStream: its stream and sequence number.
type jobRef struct {
	stream string
	seq    uint64
}

// NewRunner prepares the web node's side: the buckets, and the advisory that
// says a job was given up. models are the web node's zoo: the checksums a job
// asks for.
func NewRunner(ctx context.Context, conn *Conn, models ModelIndex, log *slog.Logger) (*Runner, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{conn: conn, models: models, log: log, relays: map[*relay]struct{}{}, bySeq: map[jobRef]*relay{}, sets: map[string]*setState{}}
	var err error
	if r.ads, err = conn.adverts(ctx); err != nil {
		return nil, err
	}
	if r.payloads, err = conn.payloads(ctx); err != nil {
		return nil, err
	}
	if r.advisory, err = conn.nc.Subscribe(maxDeliveriesAdvisory+"*."+consumerName, r.onGivenUp); err != nil {
		return nil, fmt.Errorf("NATS at %s: %w", conn.url, err)
	}
	conn.whenLost(r.onLost)
	return r, nil
}

// Close stops listening; runs still going end with the connection.
func (r *Runner) Close() { r.advisory.Unsubscribe() }

// Run puts an explorer job on the queue of a model set whose workers have all
// its models, reports its position while it waits, then relays the worker's
// start, frames and record. It returns when the record arrives, the run fails,
// or ctx ends (then the job is taken off the queue, or cancelled on its worker).
func (r *Runner) Run(ctx context.Context, job engine.Job, ev engine.Events) (*engine.Record, error) {
	f := newAttackFollower(ev)
	err := r.run(ctx, jobMsg{Job: job, Needs: Needs(job.Plan, r.models)}, f)
	return f.rec, err
}

// RunSweep runs a sweep, competition or transfer run (server.SweepRunner) as Run
// runs an explorer job: plan is job planned on the web node's zoo, whose models
// (by checksum) pick the set; the worker plans job again and relays its start,
// points, partial results and outcome.
func (r *Runner) RunSweep(ctx context.Context, plan *sweep.Plan, job sweep.Job, ev sweep.Events) (*sweep.Outcome, error) {
	f := newSweepFollower(ev)
	err := r.run(ctx, jobMsg{Sweep: &job, Needs: SweepNeeds(plan, r.models)}, f)
	return f.outcome, err
}

// run queues jm on a set that has its models and follows it to its end.
func (r *Runner) run(ctx context.Context, jm jobMsg, f follower) error {
	if !r.conn.Connected() {
		return errQueueDown
	}
	set, err := r.pick(ctx, jm.Needs)
	if err != nil {
		return err
	}
	rl := newRelay(r, set)
	sub, err := r.conn.nc.Subscribe(eventSubject(rl.id), rl.handle)
	if err != nil {
		return errQueueDown
	}
	defer sub.Unsubscribe()
	r.track(rl, true)
	defer r.track(rl, false)
	defer rl.cleanup()
	if err := rl.submit(ctx, jm); err != nil {
		return err
	}
	return rl.follow(ctx, f)
}

var errQueueDown = errors.New("the job queue (NATS) is not reachable right now: try again in a moment")

// errConnectionLost ends the runs in flight when the web node's connection drops.
var errConnectionLost = errors.New("the connection to the job queue (NATS) was lost while the run was going: start it again in a moment")

func (r *Runner) track(rl *relay, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.relays[rl] = struct{}{}
		return
	}
	delete(r.relays, rl)
	delete(r.bySeq, rl.ref)
}

// placed records where a relay's job went, for the give-up advisory.
func (r *Runner) placed(rl *relay) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bySeq[rl.ref] = rl
}

func (r *Runner) onLost(error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for rl := range r.relays {
		rl.failWith(errConnectionLost)
	}
}

// onGivenUp hears JetStream give a job up after its deliveries.
func (r *Runner) onGivenUp(m *nats.Msg) {
	var a struct {
		Stream     string `json:"stream"`
		Seq        uint64 `json:"stream_seq"`
		Deliveries int    `json:"deliveries"`
	}
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return
	}
	r.mu.Lock()
	rl := r.bySeq[jobRef{a.Stream, a.Seq}]
	r.mu.Unlock()
	if rl != nil {
		rl.failWith(givenUpError{a.Deliveries})
	}
}

// givenUpError ends a run whose workers kept dying.
type givenUpError struct{ deliveries int }

func (e givenUpError) Error() string {
	return fmt.Sprintf("the run was given up: the worker running it stopped answering %d times (it may have crashed or run out of memory); nothing was saved", e.deliveries)
}

// liveAdverts lists the workers bucket, at most once a second unless fresh.
func (r *Runner) liveAdverts(ctx context.Context, fresh bool) ([]Advert, error) {
	r.mu.Lock()
	if !fresh && time.Since(r.advertsAt) < time.Second {
		defer r.mu.Unlock()
		return r.adverts, nil
	}
	r.mu.Unlock()
	ads, err := listAdverts(ctx, r.ads)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.adverts, r.advertsAt = ads, time.Now()
	r.mu.Unlock()
	return ads, nil
}

// listAdverts reads every advert in the bucket (expired ones are gone).
func listAdverts(ctx context.Context, kv jetstream.KeyValue) ([]Advert, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []Advert
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return out, nil
			}
			var a Advert
			if json.Unmarshal(e.Value(), &a) == nil {
				out = append(out, a)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// pick chooses the set for a job: among those whose live workers have every
// model of need, the one with the fewest jobs per worker slot.
func (r *Runner) pick(ctx context.Context, need []ModelRef) (string, error) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ads, err := r.liveAdverts(lctx, false)
	if err != nil {
		return "", cmp.Or(ctx.Err(), errQueueDown)
	}
	sets, err := candidates(ads, need)
	if err != nil { // a worker may have started since the listing: look again
		if ads, err = r.liveAdverts(lctx, true); err != nil {
			return "", cmp.Or(ctx.Err(), errQueueDown)
		}
		if sets, err = candidates(ads, need); err != nil {
			return "", err
		}
	}
	if len(sets) == 1 {
		return sets[0].id, nil
	}
	best, bestLoad := sets[0].id, -1.0
	for _, s := range sets {
		st, err := r.setInfo(lctx, s.id)
		if err != nil {
			continue
		}
		load := float64(st.pending+st.inFlight) / float64(s.capacity)
		if bestLoad < 0 || load < bestLoad {
			best, bestLoad = s.id, load
		}
	}
	return best, nil
}

// setAlive reports whether some live worker still serves set.
func (r *Runner) setAlive(ctx context.Context, set string) (bool, error) {
	ads, err := r.liveAdverts(ctx, false)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(ads, func(a Advert) bool { return a.Set == set }), nil
}

// setState is a set's queue as JetStream reports it.
type setState struct {
	at                time.Time
	delivered         uint64   // the last stream sequence handed to a worker
	first             uint64   // the stream's first sequence still stored
	deleted           []uint64 // gaps (jobs taken off the queue)
	pending, inFlight int
	ackWait           time.Duration
	maxDeliver        int
}

// setInfo is set's queue state, at most half a second old.
func (r *Runner) setInfo(ctx context.Context, set string) (*setState, error) {
	r.mu.Lock()
	if st := r.sets[set]; st != nil && time.Since(st.at) < pollEvery {
		r.mu.Unlock()
		return st, nil
	}
	r.mu.Unlock()
	cons, err := r.conn.js.Consumer(ctx, jobStream(set), consumerName)
	if err != nil {
		return nil, err
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	stream, err := r.conn.js.Stream(ctx, jobStream(set))
	if err != nil {
		return nil, err
	}
	si, err := stream.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return nil, err
	}
	st := &setState{at: time.Now(), delivered: ci.Delivered.Stream, first: si.State.FirstSeq, deleted: si.State.Deleted,
		pending: int(ci.NumPending), inFlight: ci.NumAckPending, ackWait: ci.Config.AckWait, maxDeliver: ci.Config.MaxDeliver}
	r.mu.Lock()
	r.sets[set] = st
	r.mu.Unlock()
	return st, nil
}

// position is how many jobs wait ahead of the job at seq, plus one; 0 once it
// was handed to a worker.
func (st *setState) position(seq uint64) int {
	low := max(st.delivered, st.first-min(st.first, 1)) // jobs before first are gone
	if seq <= st.delivered {
		return 0
	}
	n := int(seq - low)
	for _, d := range st.deleted {
		if d > low && d < seq {
			n--
		}
	}
	return max(n, 1)
}
