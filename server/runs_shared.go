package server

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"gibbon/gallery"
)

// RunStore keeps a shared run book's runs, encoded, under their keys, for an
// hour after their last write: a store every web node reaches (queue.RunStore,
// a JetStream KV bucket), so that a page's Save may land on another node than
// its websocket.
type RunStore interface {
	// Create adds key; it fails when key exists.
	Create(ctx context.Context, key string, value []byte) error
	// Get returns key's value and revision; a nil value when there is none.
	Get(ctx context.Context, key string) (value []byte, revision uint64, err error)
	// Update replaces key's value if its revision is still revision; false when
	// another write came first.
	Update(ctx context.Context, key string, value []byte, revision uint64) (bool, error)
}

// runStoreTimeout bounds one run book operation on the store.
const runStoreTimeout = 5 * time.Second

// errRunBookDown answers a save while the shared run book cannot be reached.
var errRunBookDown = userError{http.StatusServiceUnavailable, "The run book shared by the web nodes cannot be reached right now: try saving again in a moment."}

// sharedRunBook is the run book on a RunStore. Changes are compare-and-set, so
// two saves of one run on two nodes cannot both claim it.
type sharedRunBook struct {
	store RunStore
	log   *slog.Logger
}

func (b sharedRunBook) open(owner string) string {
	key := newRunKey()
	ctx, cancel := context.WithTimeout(context.Background(), runStoreTimeout)
	defer cancel()
	data, err := encodeRun(&bookedRun{Owner: owner})
	if err == nil {
		err = b.store.Create(ctx, key, data)
	}
	if err != nil {
		b.log.Warn("run book: a run could not be booked (it cannot be saved)", "err", err)
	}
	return key
}

func (b sharedRunBook) close(key string, e *gallery.Entry, why string) {
	end := time.Now()
	err := b.change(key, func(r *bookedRun) error {
		r.Done, r.Entry, r.Why, r.Ended = true, e, why, end
		return nil
	})
	if err != nil && e != nil {
		// Too large for the store, most likely: book the run without its entry,
		// so that the page hears why it cannot be saved.
		b.log.Warn("run book: a finished run could not be kept", "err", err)
		err = b.change(key, func(r *bookedRun) error {
			r.Done, r.Why, r.Ended = true, fmt.Sprintf("the run book shared by the web nodes could not keep it (%v).", err), end
			return nil
		})
	}
	if err != nil {
		b.log.Warn("run book: a run's end could not be booked", "err", err)
	}
}

func (b sharedRunBook) take(key, owner string) (*gallery.Entry, error) {
	var e *gallery.Entry
	err := b.change(key, func(r *bookedRun) error {
		if err := r.saveable(owner); err != nil {
			return err
		}
		r.Saving, e = true, r.Entry
		return nil
	})
	return e, err
}

func (b sharedRunBook) release(key string) {
	b.change(key, func(r *bookedRun) error {
		r.Saving = false
		return nil
	})
}

func (b sharedRunBook) markSaved(key string, res *saveResponse) {
	err := b.change(key, func(r *bookedRun) error {
		r.Saved, r.Saving = res, false
		return nil
	})
	if err != nil {
		b.log.Warn("run book: a save could not be booked", "err", err)
	}
}

// change applies f to key's run and writes it back, again when another write
// came between. A run the store does not have is not found; f's error ends the
// change.
func (b sharedRunBook) change(key string, f func(*bookedRun) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), runStoreTimeout)
	defer cancel()
	for range 8 {
		data, rev, err := b.store.Get(ctx, key)
		if err != nil {
			b.log.Warn("run book: read failed", "err", err)
			return errRunBookDown
		}
		if data == nil {
			return (*bookedRun)(nil).saveable("") // no such run (or it expired)
		}
		r := new(bookedRun)
		if err := gob.NewDecoder(bytes.NewReader(data)).Decode(r); err != nil {
			return fmt.Errorf("run book: %w", err)
		}
		if err := f(r); err != nil {
			return err
		}
		if data, err = encodeRun(r); err != nil {
			return err
		}
		ok, err := b.store.Update(ctx, key, data, rev)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
	return errRunBookDown
}

func encodeRun(r *bookedRun) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
