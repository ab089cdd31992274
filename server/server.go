// Package server is Gibbon's web app: Echo, middleware, one routes.go listing
// every endpoint, one file per resource, and one error handler mapping domain
// errors to status codes. It adapts the domain packages (inference, gallery) to
// HTTP and HTML; they know nothing of either.
//
// Adding a resource: write server/<resource>.go with handlers as Server methods
// (their dependencies go in Deps/Server), list the endpoints in routes.go, add
// the page's menu entry in navItems (it shows once the page is routed), and put
// its view in views/ and any script in static/.
package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"gibbon/inference/zoo"
	"gibbon/static"
	"gibbon/views"
)

// Config is the server's part of `gibbon serve`'s configuration.
type Config struct {
	// MaxUploadBytes is the largest file accepted, enforced while reading.
	MaxUploadBytes int64
	// MaxPixels is the largest image accepted (width × height), MaxImageSide the
	// longest side, and MaxDecodeBytes the most memory decoding one may take; all
	// are checked from the header before decoding.
	MaxPixels      int64
	MaxImageSide   int
	MaxDecodeBytes int64
	// UploadRate is how many uploads (any POST) a client may send per second, on
	// average; UploadBurst is how many at once.
	UploadRate  float64
	UploadBurst int
	// MaxSockets caps the websockets open at once, from every address together;
	// 0 means three quarters of the process's file-descriptor limit, read at start.
	MaxSockets int
	// ShutdownGrace is how long running requests may finish after a shutdown
	// begins; then their work is cancelled. ShutdownTimeout bounds the wait for
	// cancelled work to stop.
	ShutdownGrace   time.Duration
	ShutdownTimeout time.Duration
}

// DefaultConfig is what `gibbon serve` uses without flags.
func DefaultConfig() Config {
	return Config{
		MaxUploadBytes:  10_000_000,
		MaxPixels:       40_000_000,
		MaxImageSide:    16_384,
		MaxDecodeBytes:  160 << 20, // a 40 MP image at 4 bytes a pixel, the decoders' 8-bit layout
		UploadRate:      5,
		UploadBurst:     20,
		ShutdownGrace:   2 * time.Second,
		ShutdownTimeout: 10 * time.Second,
	}
}

// Check reports a configuration that cannot work.
func (c Config) Check() error {
	switch {
	case c.MaxUploadBytes < 1:
		return fmt.Errorf("the upload limit must be at least 1 byte, not %d", c.MaxUploadBytes)
	case c.MaxPixels < 1:
		return fmt.Errorf("the pixel limit must be at least 1, not %d", c.MaxPixels)
	case c.MaxImageSide < 1:
		return fmt.Errorf("the image side limit must be at least 1 pixel, not %d", c.MaxImageSide)
	case c.MaxDecodeBytes < 1<<20:
		return fmt.Errorf("the decode memory limit must be at least 1 MiB, not %d bytes", c.MaxDecodeBytes)
	case c.MaxSockets < 0:
		return fmt.Errorf("the websocket limit cannot be negative (%d)", c.MaxSockets)
	case c.UploadRate <= 0:
		return fmt.Errorf("the upload rate must be above 0 per second, not %g", c.UploadRate)
	case c.UploadBurst < 1:
		return fmt.Errorf("the upload burst must be at least 1, not %d", c.UploadBurst)
	case c.ShutdownGrace < 0 || c.ShutdownTimeout < 0:
		return errors.New("shutdown durations cannot be negative")
	}
	return nil
}

// Deps are the server's dependencies, made by the caller and owned by it.
type Deps struct {
	Config Config
	Log    *slog.Logger
	// Models are the served models: the process's one zoo.
	Models *zoo.Zoo
	// Samples are folders of sample images named digit-<label>-<k>.png; the first
	// folder holding a name wins.
	Samples []fs.FS
	// Gallery stores saved runs; without one the gallery pages are not routed.
	Gallery GalleryStore
	// Attack is the live attack explorer's (attack_config.go); without Nets it is
	// not routed.
	Attack AttackDeps
	// RunStore, when given, holds the run book (finished runs awaiting Save) that
	// web nodes share (runs_shared.go); nil keeps it in this process.
	RunStore RunStore
	// SweepRunner executes sweeps and matrices (sweep_runner.go); nil runs them in
	// this process.
	SweepRunner SweepRunner
	// Pull lists the model catalog on /models and, when allowed, pulls from it
	// into the running zoo (models_pull.go).
	Pull PullDeps
}

// Server is the web app. Its handlers are methods, so each resource file can
// reach every dependency.
type Server struct {
	cfg     Config
	log     *slog.Logger
	models  *zoo.Zoo
	gallery GalleryStore
	samples *sampleSet
	assets  *static.Assets
	echo    *echo.Echo
	nav     []views.NavItem

	// work is the parent of every request's context; cancelling it stops all
	// in-flight work at shutdown.
	work       context.Context
	cancelWork context.CancelFunc
	active     tracker
	// slots bound how many images are decoded and classified at once (CPU);
	// images holds the decode memory budget (limits.go).
	slots  chan struct{}
	images *imageWork
	// downloads bounds the gallery files made per request (gallery_files.go).
	downloads *gate
	// sockets counts open websockets, per address and in all (wscaps.go).
	sockets *socketCaps
	// rates is the upload allowance per client address; endpoints holds the
	// method and path of every route (the write guard passes others to their
	// 404 or 405).
	rates     *addressRates
	endpoints map[string]bool
	// classifying counts requests inside the model loop (tests watch it).
	classifying atomic.Int64
	// explorer is the live attack explorer, or nil (attack.go).
	explorer *explorer
	// sweeps runs ε sweeps and matrices (sweep.go), or is nil without the explorer.
	sweeps *sweeper
	// runs keeps finished runs' entries until their page saves them (runs.go).
	runs runBooker
	// runner executes the explorer's runs (runner.go).
	runner Runner
	// pulls runs the models page's pulls from the catalog (models_pull.go).
	pulls *puller
}

// New builds the server and its routes; it does not listen.
func New(d Deps) (*Server, error) {
	if err := d.Config.Check(); err != nil {
		return nil, err
	}
	if d.Models == nil {
		return nil, errors.New("server: no model zoo")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	assets, err := static.New()
	if err != nil {
		return nil, err
	}
	samples, err := loadSamples(d.Samples)
	if err != nil {
		return nil, err
	}
	work, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: d.Config, log: d.Log, models: d.Models, gallery: d.Gallery, samples: samples, assets: assets,
		work: work, cancelWork: cancel,
		slots: make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		runs:  newRunBook(),
		pulls: newPuller(d.Pull),
	}
	if d.RunStore != nil {
		s.runs = sharedRunBook{store: d.RunStore, log: d.Log}
	}
	s.images = newImageWork(d.Config, s.slots)
	s.rates = newAddressRates(d.Config.UploadRate, d.Config.UploadBurst)
	s.downloads = newGate(maxGenerating, maxGeneratingWait)
	if d.Attack.Enabled {
		s.explorer = newExplorer(d.Attack)
		s.runner = d.Attack.Runner
		if s.runner == nil {
			s.runner = localRunner{s}
		}
		s.sweeps = newSweeper(defaultSweepLimits(), d.SweepRunner)
		total := d.Config.MaxSockets
		if total == 0 {
			total = socketsForFDLimit(fdLimit())
		}
		s.sockets = newSocketCaps(s.explorer.cfg.MaxSocketsPerClient, total)
	}
	s.echo = echo.New()
	s.echo.HideBanner, s.echo.HidePort = true, true
	s.echo.HTTPErrorHandler = s.handleError
	// Clients are identified (for rate limits) by the connection's address;
	// X-Forwarded-For is not trusted, since nothing says a proxy is in front.
	s.echo.IPExtractor = echo.ExtractIPDirect()
	s.routes()
	s.nav = s.routedNav()
	return s, nil
}

// Handler is the app as an http.Handler (for tests and custom servers).
func (s *Server) Handler() http.Handler { return s.echo }

// ListenAndServe listens on addr and serves until ctx ends, then shuts down.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down: it stops accepting, lets
// running requests finish for ShutdownGrace, cancels the work of those still
// running, and waits (up to ShutdownTimeout) for them to return.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving", "url", "http://"+ln.Addr().String(), "classifiers", len(s.models.Classifiers()),
		"problems", len(s.models.Problems()), "samples", len(s.samples.list))
	select {
	case err := <-errc:
		s.cancelWork()
		s.active.close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return s.shutdown(srv, errc)
}

func (s *Server) shutdown(srv *http.Server, errc <-chan error) error {
	s.log.Info("shutting down", "grace", s.cfg.ShutdownGrace)
	idle := s.active.close() // from now on, new requests get 503
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	_ = srv.Shutdown(grace) // stops listening; waits for running requests, up to the grace
	if n := s.active.count(); n > 0 {
		s.log.Info("cancelling in-flight work", "requests", n)
	}
	s.cancelWork()
	var err error
	select {
	case <-idle:
	case <-time.After(s.cfg.ShutdownTimeout):
		err = fmt.Errorf("shutdown: %d request(s) still running %v after their work was cancelled", s.active.count(), s.cfg.ShutdownTimeout)
	}
	// Let the last responses flush, then close whatever is left (hijacked connections too).
	flush, cancelFlush := context.WithTimeout(context.Background(), time.Second)
	defer cancelFlush()
	_ = srv.Shutdown(flush)
	_ = srv.Close()
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err == nil {
		s.log.Info("stopped")
	}
	return err
}

// tracker counts running requests and refuses new ones once closed.
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{}
}

func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// close refuses new requests and returns a channel closed when none is running.
func (t *tracker) close() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := make(chan struct{})
	if t.closed {
		if t.idle != nil {
			return t.idle
		}
		close(ch)
		return ch
	}
	t.closed = true
	if t.n == 0 {
		close(ch)
	} else {
		t.idle = ch
	}
	return ch
}

func (t *tracker) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}
