package queue

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Timing of adverts: a worker re-writes its own every advertEvery; the bucket
// drops one not re-written for advertTTL (a worker gone).
const (
	advertEvery = 5 * time.Second
	advertTTL   = 15 * time.Second
)

// payloadTTL drops large payloads nobody fetched (their run died with its node).
const payloadTTL = time.Hour

// Bounds of a set's job stream: waiting jobs (more are refused as busy), and how
// long one may wait (longer than any page waits).
const (
	maxWaitingJobs = 1000
	jobMaxAge      = time.Hour
)

// adverts opens (or makes) the bucket of worker adverts.
func (c *Conn) adverts(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: advertBucket,
		Description: "Gibbon workers: model set, models, provider; each re-written every 5 s", TTL: advertTTL, History: 1})
	if err != nil {
		return nil, fmt.Errorf("NATS at %s: the workers bucket: %w", c.url, err)
	}
	return kv, nil
}

// payloads opens (or makes) the object store for jobs and events too large for
// a message.
func (c *Conn) payloads(ctx context.Context) (jetstream.ObjectStore, error) {
	os, err := c.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: payloadBucket,
		Description: "Gibbon: images and records too large for one message", TTL: payloadTTL})
	if err != nil {
		return nil, fmt.Errorf("NATS at %s: the payload store: %w", c.url, err)
	}
	return os, nil
}

// jobStreamConfig is a model set's work queue.
func jobStreamConfig(set string) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: jobStream(set), Subjects: []string{jobSubject(set)},
		Description: "Gibbon jobs for the workers of model set " + set,
		Retention:   jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew,
		MaxMsgs: maxWaitingJobs, MaxAge: jobMaxAge, Storage: jetstream.FileStorage}
}

// jobConsumerConfig is the pull consumer every worker of a set shares.
func jobConsumerConfig(set string, ackWait time.Duration, maxDeliver int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{Durable: consumerName, Description: "Gibbon workers of model set " + set,
		FilterSubject: jobSubject(set), AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait,
		MaxDeliver: maxDeliver, MaxAckPending: maxWaitingJobs}
}

// putBlob stores data under name in chunks no larger than a message.
func (c *Conn) putBlob(ctx context.Context, store jetstream.ObjectStore, name string, data []byte) error {
	chunk := uint32(min(128*1024, c.maxMessage()))
	_, err := store.Put(ctx, jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunk}}, bytes.NewReader(data))
	return err
}
