package server

import (
	"context"
	"errors"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"gibbon/inference"
)

// How much of the machine one request may take. Images are decoded whole (the
// standard decoders have no other way), so the memory a decode takes is known
// from the header before it starts; it is reserved from one budget shared by every
// upload path (classify, the explorer, sweeps), and refused when it could never
// fit. CPU is the server's slots (one per core); large images use all but one of
// them, so a small request never waits behind large ones. The order is fixed —
// a large image's turn, a CPU slot, then the memory — so only decodes holding a
// slot wait for memory, and the memory's line is never longer than the slots.

// heavyPixels is where an image starts to count as large: decoding and scaling
// it takes a noticeable fraction of a second.
const heavyPixels = 4_000_000

// errImagesBusy answers an upload when the line for decode memory is full (it
// cannot be, with the order above; a clear answer if that ever changes).
var errImagesBusy = userError{http.StatusServiceUnavailable,
	"The server is busy decoding other large images. Try again in a few seconds."}

// imageWork is the budget every image decode takes from.
type imageWork struct {
	limits inference.DecodeLimits
	heavy  chan struct{} // large images decoding at once
	slots  chan struct{} // the server's CPU slots
	memory *gate         // bytes of decoder and picture memory in use
}

func newImageWork(cfg Config, slots chan struct{}) *imageWork {
	return &imageWork{
		limits: inference.DecodeLimits{MaxPixels: cfg.MaxPixels, MaxSide: cfg.MaxImageSide, MaxBytes: cfg.MaxDecodeBytes},
		heavy:  make(chan struct{}, max(1, cap(slots)-1)),
		slots:  slots,
		// Room for the largest image with its picture, and small ones beside it.
		memory: newGate(cfg.MaxDecodeBytes+cfg.MaxDecodeBytes/4+
			inference.PictureBytes(inference.DefaultWorkingSide, inference.DefaultWorkingSide, 0), cap(slots)),
	}
}

// loadPicture decodes data and scales it to the working size, within the limits
// and the budget; it says what the header held (format and size).
func (s *Server) loadPicture(ctx context.Context, data []byte) (*inference.Picture, inference.ImageHeader, error) {
	w := s.images
	hdr, err := inference.ReadImageHeader(data)
	if err != nil {
		return nil, hdr, err
	}
	if err := w.limits.Check(hdr); err != nil {
		return nil, hdr, err
	}
	heavy := int64(hdr.Width)*int64(hdr.Height) > heavyPixels
	if heavy {
		if err := take(ctx, w.heavy); err != nil {
			return nil, hdr, err
		}
		defer func() { <-w.heavy }()
	}
	if err := take(ctx, w.slots); err != nil {
		return nil, hdr, err
	}
	defer func() { <-w.slots }()
	release, err := w.memory.acquire(ctx, hdr.DecodeBytes+inference.PictureBytes(hdr.Width, hdr.Height, inference.DefaultWorkingSide))
	if errors.Is(err, errGateFull) {
		return nil, hdr, errImagesBusy
	} else if err != nil {
		return nil, hdr, err
	}
	defer release()
	if heavy {
		// Collect the decoded image, and hand its pages back to the system,
		// before its memory is given back to the budget: otherwise the collector
		// lets the heap grow to twice what is live, and the next large image is
		// decoded in fresh pages beside this one's (gibbon serve measured 311 MB
		// resident above idle for four 160 MB decodes in turn; 168 MB with this).
		defer debug.FreeOSMemory()
	}
	dec, err := w.limits.Decode(data)
	if err != nil {
		return nil, hdr, err
	}
	return inference.NewPicture(dec.Image, inference.DefaultWorkingSide), hdr, nil
}

// take waits for a token of sem, or for ctx to end.
func take(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gate admits work while its capacity lasts; the rest waits in a bounded line.
// Whatever fits goes at once, so small work is not held up behind large work
// that waits for room; large work goes as soon as the room is free.
type gate struct {
	mu       sync.Mutex
	capacity int64
	used     int64
	maxWait  int
	waiting  []*gateWaiter
}

type gateWaiter struct {
	n     int64
	ready chan struct{} // closed when admitted
}

// errGateFull is acquire's answer when the line is full.
var errGateFull = errors.New("the line is full")

func newGate(capacity int64, maxWait int) *gate {
	return &gate{capacity: max(1, capacity), maxWait: max(0, maxWait)}
}

// acquire takes n of the capacity (at most all of it), waiting in line for room
// until ctx ends. release gives it back; it may be called more than once.
func (g *gate) acquire(ctx context.Context, n int64) (release func(), err error) {
	n = min(max(n, 1), g.capacity)
	g.mu.Lock()
	if g.used+n <= g.capacity {
		g.used += n
		g.mu.Unlock()
		return g.releaser(n), nil
	}
	if len(g.waiting) >= g.maxWait {
		g.mu.Unlock()
		return nil, errGateFull
	}
	w := &gateWaiter{n: n, ready: make(chan struct{})}
	g.waiting = append(g.waiting, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return g.releaser(n), nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	select {
	case <-w.ready: // admitted meanwhile: give the room back
		g.mu.Unlock()
		g.release(n)
		return nil, ctx.Err()
	default:
	}
	if i := slices.Index(g.waiting, w); i >= 0 {
		g.waiting = slices.Delete(g.waiting, i, i+1)
	}
	g.mu.Unlock()
	return nil, ctx.Err()
}

func (g *gate) releaser(n int64) func() {
	var once sync.Once
	return func() { once.Do(func() { g.release(n) }) }
}

// release gives n back and admits, in order, every waiter that now fits.
func (g *gate) release(n int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.used -= n
	kept := g.waiting[:0]
	for _, w := range g.waiting {
		if g.used+w.n <= g.capacity {
			g.used += w.n
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	clear(g.waiting[len(kept):])
	g.waiting = kept
}

// inUse is the capacity taken now (tests watch it).
func (g *gate) inUse() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.used
}

// addressRates is a token bucket per client address, for uploads (writes). A
// request is looked at before its body is read (allowed) and counted only once it
// has passed the CSRF check (take), so refused forgeries use no one's allowance.
type addressRates struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*addressBucket
	swept   time.Time
}

type addressBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// rateIdle is how long an address's bucket is kept unused (by then it is full).
const rateIdle = 5 * time.Minute

func newAddressRates(perSecond float64, burst int) *addressRates {
	return &addressRates{limit: rate.Limit(perSecond), burst: burst, buckets: map[string]*addressBucket{}}
}

func (a *addressRates) bucket(addr string, now time.Time) *rate.Limiter {
	if now.Sub(a.swept) > time.Minute {
		for k, b := range a.buckets {
			if now.Sub(b.seen) > rateIdle {
				delete(a.buckets, k)
			}
		}
		a.swept = now
	}
	b, ok := a.buckets[addr]
	if !ok {
		b = &addressBucket{lim: rate.NewLimiter(a.limit, a.burst)}
		a.buckets[addr] = b
	}
	b.seen = now
	return b.lim
}

// allowed says whether addr has an upload left, without using it.
func (a *addressRates) allowed(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	return a.bucket(addr, now).TokensAt(now) >= 1
}

// take uses one of addr's uploads, if it has one left.
func (a *addressRates) take(addr string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	return a.bucket(addr, now).AllowN(now, 1)
}
