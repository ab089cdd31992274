package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/inference/zoo"
	"gibbon/models"
	"gibbon/models/imagenet"
	"gibbon/queue"
	"gibbon/server"
)

// serveConfig is everything `gibbon serve` runs with. Each field comes from its
// flag, else from its GIBBON_* variable (GIBBON_ + the flag name in capitals,
// dashes as underscores), else from the default.
type serveConfig struct {
	Addr      string // host:port to listen on
	DataDir   string // state (the gallery's SQLite file, unless DB names another gallery)
	DB        string // the gallery: a postgres:// URL that web nodes share, or a file; empty: DataDir's
	ModelsDir string // optional user models: manifest.json, .onnx files, samples/
	ORTLib    string // ONNX Runtime library; empty: the cache
	EP        string // execution provider
	LogFormat string // text or json
	NATS      string // runs go to workers over this NATS server; empty: in this process
	// AllowPull lets visitors of /models pull catalog models into ModelsDir (or the
	// default models directory), served at once; off by default.
	AllowPull bool
	Server    server.Config
	Attack    server.AttackConfig // the live explorer's limits
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServeConfig(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stderr)
}

// parseServeConfig reads flags over environment variables over defaults.
func parseServeConfig(args []string, getenv func(string) string, stderr io.Writer) (serveConfig, error) {
	cfg := serveConfig{Server: server.DefaultConfig(), Attack: server.DefaultAttackConfig()}
	fs := newFlagSet("serve", stderr,
		"Usage: gibbon serve [flags]",
		"Serves the Gibbon web app with the built-in models (and --models DIR's).",
		"Every flag can also be set as GIBBON_<FLAG>, e.g. GIBBON_ADDR=:8080 or GIBBON_MAX_UPLOAD=20MB;",
		"a flag on the command line wins over the variable.")
	fs.StringVar(&cfg.Addr, "addr", "localhost:8080", "address to listen on, host:port")
	fs.StringVar(&cfg.DataDir, "data", "./data", "directory for Gibbon's state (created if missing)")
	fs.StringVar(&cfg.DB, "db", "", "the gallery: a postgres://user:password@host/database URL that several web nodes share, or a file path (default: "+gallery.FileName+" in --data)")
	fs.StringVar(&cfg.ModelsDir, "models", "", "directory of your own models: a manifest.json, the .onnx files it names, optionally samples/digit-<label>-<k>.png")
	fs.StringVar(&cfg.ORTLib, "ort-lib", "", "`PATH` of an ONNX Runtime "+inference.ORTVersion+" library (default: the one 'gibbon runtime install' put in the cache); a GPU (CUDA) build of that version runs --ep cuda")
	fs.StringVar(&cfg.EP, "ep", "cpu", "execution provider: auto (CUDA, else WebGPU, else CPU), cpu, webgpu or cuda; one that does not start falls back with a warning")
	fs.Var(byteSize{&cfg.Server.MaxUploadBytes}, "max-upload", "largest upload, e.g. 10MB, 512kB or 8MiB")
	fs.Var(pixelCount{&cfg.Server.MaxPixels}, "max-pixels", "largest image, width × height, e.g. 40MP")
	fs.Float64Var(&cfg.Server.UploadRate, "upload-rate", cfg.Server.UploadRate, "uploads per second per client, on average")
	fs.IntVar(&cfg.Server.UploadBurst, "upload-burst", cfg.Server.UploadBurst, "uploads a client may send in a burst")
	fs.DurationVar(&cfg.Server.ShutdownGrace, "shutdown-grace", cfg.Server.ShutdownGrace, "at shutdown, how long running requests may finish before their work is cancelled")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&cfg.NATS, "nats", "", "`URL` of a NATS server with JetStream (nats://user:password@host:4222): runs go to gibbon workers there and the run book is shared, for several web nodes; give --db postgres://… too (default: runs in this process)")
	fs.BoolVar(&cfg.AllowPull, "allow-pull", false, "let anyone who can open /models pull catalog models (downloads of up to hundreds of MB) into --models DIR, or the default models directory, and serve them without a restart; off: the catalog is listed with the command that pulls each model")
	a := &cfg.Attack
	fs.IntVar(&a.MaxRuns, "explorer-runs", a.MaxRuns, "attack explorer: runs at once (each takes a core)")
	fs.IntVar(&a.MaxQueue, "explorer-queue", a.MaxQueue, "attack explorer: runs that may wait in line beyond those (0: none; more are refused as busy)")
	fs.IntVar(&a.MaxSteps, "explorer-max-steps", a.MaxSteps, "attack explorer: most steps (or queries) of one run")
	fs.DurationVar(&a.RunTimeout, "explorer-time-limit", a.RunTimeout, "attack explorer: longest run, e.g. 2m; a run is stopped there")
	fs.IntVar(&a.MaxSocketsPerClient, "explorer-pages-per-client", a.MaxSocketsPerClient, "attack explorer: pages (websockets) one address may have open (behind a reverse proxy every page comes from its address: raise it)")
	if err := parseService(fs, args, getenv, &cfg.EP); err != nil {
		return cfg, err
	}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		return cfg, usageError{fmt.Sprintf("log format %q: use text or json", cfg.LogFormat)}
	}
	if cfg.Addr == "" {
		return cfg, usageError{"the address is empty: give --addr host:port"}
	}
	if cfg.AllowPull && cfg.NATS != "" {
		return cfg, usageError{"--allow-pull works without --nats only: workers load their models when they start, so pull with `gibbon models pull NAME` and restart them"}
	}
	if err := cfg.Server.Check(); err != nil {
		return cfg, usageError{err.Error()}
	}
	switch a := cfg.Attack; {
	case a.MaxRuns < 1:
		return cfg, usageError{fmt.Sprintf("--explorer-runs must be at least 1, not %d", a.MaxRuns)}
	case a.MaxQueue < 0:
		return cfg, usageError{fmt.Sprintf("--explorer-queue cannot be negative (%d); 0 lets no run wait", a.MaxQueue)}
	case a.MaxSteps < 1:
		return cfg, usageError{fmt.Sprintf("--explorer-max-steps must be at least 1, not %d", a.MaxSteps)}
	case a.RunTimeout <= 0:
		return cfg, usageError{fmt.Sprintf("--explorer-time-limit must be above 0, not %s", a.RunTimeout)}
	case a.MaxSocketsPerClient < 1:
		return cfg, usageError{fmt.Sprintf("--explorer-pages-per-client must be at least 1, not %d", a.MaxSocketsPerClient)}
	}
	if cfg.Attack.MaxQueue == 0 {
		cfg.Attack.MaxQueue = -1 // AttackConfig's "none may wait" (its 0 means the default)
	}
	if err := cfg.Attack.Check(); err != nil {
		return cfg, usageError{err.Error()}
	}
	return cfg, nil
}

// serve opens the runtime, loads the models, and serves until ctx ends; then it
// shuts down in order: the server (cancelling in-flight work), the models'
// sessions, the runtime.
func serve(ctx context.Context, cfg serveConfig, stderr io.Writer) error {
	log := newLogger(stderr, cfg.LogFormat)
	// First the services the node shares with others, so that a wrong or
	// unreachable one stops the start at once: NATS, then the gallery.
	var natsConn *queue.Conn
	if cfg.NATS != "" {
		var err error
		if natsConn, err = queue.Connect(ctx, cfg.NATS, "gibbon serve "+cfg.Addr, log); err != nil {
			return err
		}
		defer natsConn.Close()
	}

	if cfg.DB == "" { // the gallery lives in the data directory
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	store, err := gallery.Open(ctx, galleryTarget(cfg.DB, cfg.DataDir))
	if err != nil {
		return err
	}
	defer store.Close() // after the server has stopped: no request still uses it
	log.Info("gallery open", "backend", store.Backend(), "at", store.Location())
	sources := []inference.ModelSource{{Name: "built-in", FS: models.FS()}}
	var samples []fs.FS
	if cfg.ModelsDir != "" {
		st, err := os.Stat(cfg.ModelsDir)
		if err != nil {
			return fmt.Errorf("--models: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("--models %s is not a directory", cfg.ModelsDir)
		}
		dir := os.DirFS(cfg.ModelsDir)
		sources = append(sources, inference.ModelSource{Name: cfg.ModelsDir, FS: dir})
		if sub, ok := subdir(dir, "samples"); ok {
			samples = append(samples, sub)
		}
	}
	if sub, ok := subdir(models.FS(), "samples"); ok {
		samples = append(samples, sub)
	}
	pullDir, err := pullDirFor(cfg)
	if err != nil {
		return err
	}
	if cfg.AllowPull && cfg.ModelsDir == "" {
		// Models pulled before are served again; new pulls register beside them.
		if _, err := os.Stat(filepath.Join(pullDir, inference.ManifestFile)); err == nil {
			sources = append(sources, inference.ModelSource{Name: pullDir, FS: os.DirFS(pullDir)})
		}
	}

	rt, err := inference.OpenRuntime(inference.RuntimeConfig{LibPath: cfg.ORTLib, EP: cfg.EP, Logger: log})
	if err != nil {
		return err
	}
	defer rt.Close()
	start := time.Now()
	// The process's one zoo: every model read, checksummed and opened once, here.
	reg, err := zoo.Load(ctx, rt, sources...)
	if err != nil {
		return err
	}
	defer reg.Close()
	for _, p := range reg.Problems() {
		log.Warn("model not loaded", "problem", p.Error())
	}
	log.Info("models loaded", "classifiers", len(reg.Classifiers()), "attack_networks", len(reg.AttackNetworks()),
		"problems", len(reg.Problems()), "ms", time.Since(start).Milliseconds(), "runtime", rt.LibPath(),
		"ep", rt.EP(), "runs_on", runsOn(reg.All()), "data", dataDirFor(cfg.DataDir))

	if natsConn == nil { // here the runs are this process's own
		defer warmGradients(ctx, reg, log)()
	}

	hubURL, hubToken := catalog.HubSettingsFromEnv(os.Getenv)
	deps := server.Deps{Config: cfg.Server, Log: log, Models: reg, Samples: samples, Gallery: store,
		Attack: server.AttackDeps{Config: cfg.Attack, Enabled: true},
		Pull: server.PullDeps{Allowed: cfg.AllowPull, Catalog: catalog.Default(), Dir: pullDir, Options: catalog.Options{
			Labels: imagenet.Labels(), LabelsFile: imagenet.FileName, HubURL: hubURL, HubToken: hubToken,
			Runtime: func() (*inference.Runtime, error) { return rt, nil }}}}
	if natsConn != nil {
		runner, err := queue.NewRunner(ctx, natsConn, reg, log)
		if err != nil {
			return err
		}
		defer runner.Close()
		if deps.RunStore, err = queue.NewRunStore(ctx, natsConn); err != nil {
			return err
		}
		deps.Attack.Runner, deps.SweepRunner = runner, runner
		log.Info("runs go to workers", "nats", natsConn.URL())
	}
	srv, err := server.New(deps)
	if err != nil {
		return err
	}
	return srv.ListenAndServe(ctx, cfg.Addr)
}

// warmGradients builds the classifiers' gradient graphs in the background
// (zoo.WarmGradients), so that the first attack after a start streams its first
// frame as fast as later ones; the models serve meanwhile. The returned stop
// cancels the warm-up and waits for it: call it before the zoo closes.
func warmGradients(ctx context.Context, z *zoo.Zoo, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		warmed, failed := z.WarmGradients(ctx)
		for _, name := range slices.Sorted(maps.Keys(failed)) {
			log.Warn("gradient graph not built ahead", "model", name, "reason", failed[name].Error())
		}
		if ctx.Err() == nil {
			log.Info("gradient graphs ready", "models", len(warmed), "ms", time.Since(start).Milliseconds())
		}
	}()
	return func() { cancel(); <-done }
}

// pullDirFor is where the models page's pulls register: --models DIR, else the
// default models directory (created when pulls are allowed).
func pullDirFor(cfg serveConfig) (string, error) {
	if cfg.ModelsDir != "" {
		return cfg.ModelsDir, nil
	}
	dir, err := catalog.DefaultModelsDir()
	if err != nil {
		if cfg.AllowPull {
			return "", fmt.Errorf("--allow-pull: %w", err)
		}
		return "DIR", nil // only shown in the command the page suggests
	}
	if cfg.AllowPull {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("--allow-pull: models directory: %w (pass --models DIR)", err)
		}
	}
	return dir, nil
}

// newLogger logs to stderr as text or json.
func newLogger(stderr io.Writer, format string) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(stderr, nil))
	}
	return slog.New(slog.NewTextHandler(stderr, nil))
}

// runsOn sums up where the models' sessions run: "cpu" when all do, else
// "cuda: a, b; cpu: c".
func runsOn(ms []*zoo.Model) string {
	by := map[string][]string{}
	var order []string
	for _, m := range ms {
		p := m.Provider()
		if by[p] == nil {
			order = append(order, p)
		}
		by[p] = append(by[p], m.Name)
	}
	if len(order) == 1 {
		return order[0]
	}
	parts := make([]string, len(order))
	for i, p := range order {
		parts[i] = p + ": " + strings.Join(by[p], ", ")
	}
	return strings.Join(parts, "; ")
}

// subdir is fsys's directory name, when there is one.
func subdir(fsys fs.FS, name string) (fs.FS, bool) {
	st, err := fs.Stat(fsys, name)
	if err != nil || !st.IsDir() {
		return nil, false
	}
	sub, err := fs.Sub(fsys, name)
	return sub, err == nil
}

// byteSize is a flag.Value for sizes: 10MB, 512kB, 8MiB or a number of bytes.
type byteSize struct{ n *int64 }

func (b byteSize) String() string {
	if b.n == nil {
		return ""
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b byteSize) Set(s string) error {
	n, err := parseQuantity(s, map[string]float64{
		"": 1, "b": 1, "kb": 1e3, "k": 1e3, "mb": 1e6, "m": 1e6, "gb": 1e9, "g": 1e9,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
	})
	if err != nil {
		return fmt.Errorf("%w (write e.g. 10MB, 512kB, 8MiB or a number of bytes)", err)
	}
	*b.n = n
	return nil
}

// pixelCount is a flag.Value for pixel counts: 40MP, 2.5MP or a number of pixels.
type pixelCount struct{ n *int64 }

func (p pixelCount) String() string {
	if p.n == nil {
		return ""
	}
	return strconv.FormatInt(*p.n, 10)
}

func (p pixelCount) Set(s string) error {
	n, err := parseQuantity(s, map[string]float64{"": 1, "p": 1, "kp": 1e3, "k": 1e3, "mp": 1e6, "m": 1e6})
	if err != nil {
		return fmt.Errorf("%w (write e.g. 40MP or a number of pixels)", err)
	}
	*p.n = n
	return nil
}

// parseQuantity reads a positive number with an optional unit (case-insensitive).
func parseQuantity(s string, units map[string]float64) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.TrimSpace(t[i:])
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || v*mult > 1<<62 {
		return 0, errors.New("not a positive size")
	}
	return int64(v * mult), nil
}

// dataDirFor is where a relative data directory ends up, for messages.
func dataDirFor(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
