package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// runQueue bounds how many attacks run at once. Runs beyond the slots wait in
// line (first come, first served) and hear their position as it changes; when
// the line is full, a run is refused at once with a busy message.
type runQueue struct {
	mu      sync.Mutex
	slots   int
	maxWait int
	running int
	waiting []*ticket
}

type ticket struct {
	granted chan struct{} // closed when the run may start
	moved   chan struct{} // signalled when the position changed
}

// busyError is the answer when the line is full.
type busyError struct{ running, waiting int }

func (e busyError) Error() string {
	return fmt.Sprintf("The explorer is busy: %d attack(s) running and %d waiting, the most it takes. Try again in a minute.", e.running, e.waiting)
}

func newRunQueue(slots, maxWait int) *runQueue {
	return &runQueue{slots: max(1, slots), maxWait: max(0, maxWait)}
}

// acquire waits for a slot. onWait hears the 1-based position in line whenever it
// changes (never when a slot is free at once). The release function frees the slot
// for the next in line; it may be called more than once.
func (q *runQueue) acquire(ctx context.Context, onWait func(position int)) (release func(), err error) {
	q.mu.Lock()
	if q.running < q.slots && len(q.waiting) == 0 {
		q.running++
		q.mu.Unlock()
		return q.releaser(), nil
	}
	if len(q.waiting) >= q.maxWait {
		err := busyError{q.running, len(q.waiting)}
		q.mu.Unlock()
		return nil, err
	}
	t := &ticket{granted: make(chan struct{}), moved: make(chan struct{}, 1)}
	q.waiting = append(q.waiting, t)
	pos := len(q.waiting)
	q.mu.Unlock()
	onWait(pos)
	for {
		select {
		case <-t.granted:
			return q.releaser(), nil
		case <-t.moved:
			q.mu.Lock()
			i := slices.Index(q.waiting, t)
			q.mu.Unlock()
			if i >= 0 && i+1 != pos {
				pos = i + 1
				onWait(pos)
			}
		case <-ctx.Done():
			q.mu.Lock()
			select {
			case <-t.granted: // granted meanwhile: pass the slot on
				q.mu.Unlock()
				q.releaser()()
				return nil, ctx.Err()
			default:
			}
			if i := slices.Index(q.waiting, t); i >= 0 {
				q.waiting = slices.Delete(q.waiting, i, i+1)
				q.notifyMovedLocked(i)
			}
			q.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

func (q *runQueue) releaser() func() {
	var once sync.Once
	return func() { once.Do(q.release) }
}

// release hands the slot to the first in line, or frees it.
func (q *runQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) == 0 {
		q.running--
		return
	}
	t := q.waiting[0]
	q.waiting = q.waiting[1:]
	close(t.granted)
	q.notifyMovedLocked(0)
}

// notifyMovedLocked tells everyone from index i on that their position changed.
func (q *runQueue) notifyMovedLocked(from int) {
	for _, t := range q.waiting[from:] {
		select {
		case t.moved <- struct{}{}:
		default:
		}
	}
}

// stats are the running and waiting counts.
func (q *runQueue) stats() (running, waiting int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running, len(q.waiting)
}
