package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/inference/sweep"
)

// Names of the streams, subjects and buckets (see the package doc).
const (
	jobStreamPrefix = "GIBBON_JOBS_"
	jobSubjectStem  = "gibbon.jobs."
	runSubjectStem  = "gibbon.run."
	consumerName    = "workers"
	advertBucket    = "gibbon_workers"
	payloadBucket   = "gibbon_payloads"
	runBookBucket   = "gibbon_runbook"
	// maxDeliveriesAdvisory is JetStream's advisory for a job given up, by stream
	// and consumer.
	maxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."
)

func jobStream(set string) string     { return jobStreamPrefix + set }
func jobSubject(set string) string    { return jobSubjectStem + set }
func eventSubject(run string) string  { return runSubjectStem + run + ".events" }
func cancelSubject(run string) string { return runSubjectStem + run + ".cancel" }

// Answers to a worker's requests.
var (
	replyGo   = []byte("go")
	replyStop = []byte("stop")
)

// newRunID is a run's id in subjects: 32 hex digits.
func newRunID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// jobMsg is one job on a set's stream: an explorer run (Job), or a sweep,
// competition or transfer run (Sweep).
type jobMsg struct {
	Run   string
	Job   engine.Job
	Sweep *sweep.Job
	Needs []ModelRef
	// ImageBlob names the object holding the job's image (image) when the job is
	// too large for a message.
	ImageBlob string
}

// image is where the job's image file is.
func (jm *jobMsg) image() *[]byte {
	if jm.Sweep != nil {
		return &jm.Sweep.Image
	}
	return &jm.Job.Image.Data
}

// timeout caps the job once it starts (0: none).
func (jm *jobMsg) timeout() time.Duration {
	if jm.Sweep != nil {
		return jm.Sweep.Timeout
	}
	return jm.Job.Timeout
}

// describe is the job for the worker's log.
func (jm *jobMsg) describe() []any {
	if jm.Sweep != nil {
		return []any{"sweep", jm.Sweep.Settings.Kind, "models", len(jm.Needs)}
	}
	return []any{"attack", jm.Job.Plan.Attack, "models", len(jm.Needs)}
}

// eventKind says what a worker reports about a run.
type eventKind uint8

const (
	evAccept eventKind = iota + 1 // a request: is the run still wanted?
	evStart                       // a request: the prepared run's description
	evFrame                       // a publish: one recorded frame (not the final one)
	evBeat                        // a request: still working, still wanted?
	evDone                        // a request: the record, the final frame, the error
)

func (k eventKind) String() string {
	return [...]string{"?", "accept", "start", "frame", "beat", "done"}[min(int(k), 5)]
}

// event is one report from the worker holding a run. Attempt is the job's
// delivery count: events of an older delivery than the newest accepted one are
// ignored. An explorer run's carry Start, Frame and Record; a sweep's, Sweep.
type event struct {
	Kind    eventKind
	Worker  string
	Attempt int
	Start   *engine.Start
	Frame   *engine.Frame // with evDone: the final frame, if the run reached it
	Record  *engine.Record
	Sweep   *sweepEvent
	Err     *wireError
	// Blob names the object holding this event when it is too large for a message.
	Blob string
}

// sweepEvent is what a sweep's worker reports: with evStart the work to do
// (Total) and the true class; with evFrame an image sweep's Point, or the
// Partial result after Done images; with evDone the Outcome.
type sweepEvent struct {
	Total, Label int
	Point        *sweep.Point
	Done         int
	Partial      sweep.Result
	Outcome      *sweep.Outcome
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decode(data []byte, v any) error { return gob.NewDecoder(bytes.NewReader(data)).Decode(v) }

// wireError carries a run's error to the web node as a kind and a message, so
// that the server shows it as it would a local run's.
type wireError struct {
	Kind     string // invalid, invalid-request, image, missing, canceled, deadline, other
	Msg      string
	Image    int // the inference.Err*Image kind, by imageKinds index
	Problems []string
}

var imageKinds = []error{inference.ErrUnsupportedImage, inference.ErrImageTooLarge, inference.ErrBadImage, inference.ErrBlankImage}

func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	var pe *engine.InvalidError
	var ie *inference.ImageError
	var me *engine.MissingModelError
	switch {
	case errors.As(err, &pe):
		return &wireError{Kind: "invalid", Msg: pe.Msg}
	case errors.As(err, &ie):
		w := &wireError{Kind: "image", Msg: ie.Msg, Image: -1}
		for i, k := range imageKinds {
			if errors.Is(err, k) {
				w.Image = i
			}
		}
		return w
	case errors.As(err, &me):
		return &wireError{Kind: "missing", Msg: err.Error(), Problems: me.Problems}
	case errors.Is(err, inference.ErrInvalid):
		return &wireError{Kind: "invalid-request", Msg: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &wireError{Kind: "deadline", Msg: err.Error()}
	case errors.Is(err, context.Canceled):
		return &wireError{Kind: "canceled", Msg: err.Error()}
	}
	return &wireError{Kind: "other", Msg: err.Error()}
}

// err rebuilds the error: the engine's and inference's own types, context's
// errors, or one with the worker's message.
func (w *wireError) err() error {
	if w == nil {
		return nil
	}
	switch w.Kind {
	case "invalid":
		return &engine.InvalidError{Msg: w.Msg}
	case "image":
		var kind error
		if w.Image >= 0 && w.Image < len(imageKinds) {
			kind = imageKinds[w.Image]
		}
		return &inference.ImageError{Kind: kind, Msg: w.Msg}
	case "missing":
		return &engine.MissingModelError{Problems: w.Problems}
	case "invalid-request":
		return inference.Invalidf("%s", w.Msg)
	case "deadline":
		return context.DeadlineExceeded
	case "canceled":
		return context.Canceled
	}
	return fmt.Errorf("on the worker: %s", w.Msg)
}
