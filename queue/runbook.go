package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RunBookTTL is how long a booked run stays after its last write: the server's
// run book keeps a finished run an hour for its page to save it.
const RunBookTTL = time.Hour

// RunStore is the web nodes' shared run book (server.RunStore) in the
// gibbon_runbook KV bucket: a run's value expires RunBookTTL after its last write.
type RunStore struct {
	kv jetstream.KeyValue
}

// NewRunStore opens (or makes) the bucket. A value is at most one NATS message.
func NewRunStore(ctx context.Context, conn *Conn) (*RunStore, error) {
	kv, err := conn.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: runBookBucket,
		Description: "Gibbon: finished runs awaiting their page's Save, by key", TTL: RunBookTTL, History: 1,
		MaxValueSize: int32(conn.nc.MaxPayload())})
	if err != nil {
		return nil, fmt.Errorf("NATS at %s: the run book bucket: %w", conn.url, err)
	}
	return &RunStore{kv: kv}, nil
}

// Create adds key; it fails when key exists.
func (s *RunStore) Create(ctx context.Context, key string, value []byte) error {
	_, err := s.kv.Create(ctx, key, value)
	return err
}

// Get returns key's value and revision; nil when there is none (or it expired).
func (s *RunStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return e.Value(), e.Revision(), nil
}

// Update replaces key's value if its revision is still rev; false when another
// write came first.
func (s *RunStore) Update(ctx context.Context, key string, value []byte, rev uint64) (bool, error) {
	_, err := s.kv.Update(ctx, key, value, rev)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return false, nil
	}
	return false, err
}
