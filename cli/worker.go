package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"gibbon/inference"
	"gibbon/queue"
)

// workerConfig is everything `gibbon worker` runs with: each field from its flag,
// else its GIBBON_* variable, else the default (as for serve).
type workerConfig struct {
	NATS        string
	ModelsDir   string
	ORTLib      string
	EP          string
	Name        string
	Concurrency int
	AckWait     time.Duration
	MaxDeliver  int
	LogFormat   string
}

func cmdWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseWorkerConfig(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	return runWorker(ctx, cfg, stderr)
}

func parseWorkerConfig(args []string, getenv func(string) string, stderr io.Writer) (workerConfig, error) {
	cfg := workerConfig{Concurrency: 1, AckWait: queue.DefaultAckWait, MaxDeliver: queue.DefaultMaxDeliver}
	fs := newFlagSet("worker", stderr,
		"Usage: gibbon worker --nats URL [flags]",
		"Runs the attacks, ε sweeps, competitions and transfer matrices of `gibbon serve --nats URL`",
		"web nodes: takes jobs from NATS JetStream for the set of models it has (the built-in ones",
		"and --models DIR's), runs them on --ep (the MNIST test set, for data set runs, comes from the",
		"Go module cache or GIBBON_MNIST_DIR), and sends the progress and the result back. Every flag",
		"can also be set as GIBBON_<FLAG>, e.g. GIBBON_NATS=nats://queue:4222.")
	fs.StringVar(&cfg.NATS, "nats", "", "`URL` of the NATS server with JetStream the web nodes use, e.g. nats://user:password@host:4222 (required)")
	fs.StringVar(&cfg.ModelsDir, "models", "", "directory of your own models (a manifest.json and the .onnx files it names), served beside the built-in ones")
	fs.StringVar(&cfg.ORTLib, "ort-lib", "", "`PATH` of an ONNX Runtime "+inference.ORTVersion+" library (default: the one 'gibbon runtime install' put in the cache); a GPU (CUDA) build of that version runs --ep cuda")
	fs.StringVar(&cfg.EP, "ep", "cpu", "execution provider: auto (CUDA, else WebGPU, else CPU), cpu, webgpu or cuda")
	fs.StringVar(&cfg.Name, "name", "", "the worker's name among workers (default: host-pid)")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "jobs run at once (each takes a core, or a share of the GPU)")
	fs.DurationVar(&cfg.AckWait, "ack-wait", cfg.AckWait, "a job whose worker says nothing for this long goes to another worker (give every worker the same)")
	fs.IntVar(&cfg.MaxDeliver, "max-deliver", cfg.MaxDeliver, "deliveries of one job before it is given up, when its workers keep dying (give every worker the same)")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	if err := parseService(fs, args, getenv, &cfg.EP); err != nil {
		return cfg, err
	}
	switch {
	case cfg.NATS == "":
		return cfg, usageError{"a worker needs --nats URL (or GIBBON_NATS): the NATS server the web nodes use"}
	case cfg.Concurrency < 1:
		return cfg, usageError{fmt.Sprintf("--concurrency must be at least 1, not %d", cfg.Concurrency)}
	case cfg.AckWait < time.Second:
		return cfg, usageError{fmt.Sprintf("--ack-wait must be at least 1s, not %s", cfg.AckWait)}
	case cfg.MaxDeliver < 1:
		return cfg, usageError{fmt.Sprintf("--max-deliver must be at least 1, not %d", cfg.MaxDeliver)}
	case cfg.LogFormat != "text" && cfg.LogFormat != "json":
		return cfg, usageError{fmt.Sprintf("log format %q: use text or json", cfg.LogFormat)}
	}
	return cfg, nil
}

// runWorker connects to NATS (first: a wrong URL stops it at once), loads the
// models and takes jobs until ctx ends; then it hands back the jobs it holds.
func runWorker(ctx context.Context, cfg workerConfig, stderr io.Writer) error {
	log := newLogger(stderr, cfg.LogFormat)
	conn, err := queue.Connect(ctx, cfg.NATS, "gibbon worker "+cfg.Name, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt, err := inference.OpenRuntime(inference.RuntimeConfig{LibPath: cfg.ORTLib, EP: cfg.EP, Logger: log})
	if err != nil {
		return err
	}
	defer rt.Close()
	start := time.Now()
	z, err := replayZoo(rt, cfg.ModelsDir)
	if err != nil {
		return err
	}
	defer z.Close()
	if err := z.LoadAll(ctx); err != nil {
		return err
	}
	for _, p := range z.Problems() {
		log.Warn("model not loaded", "problem", p.Error())
	}
	log.Info("models loaded", "models", len(z.All()), "problems", len(z.Problems()), "ms", time.Since(start).Milliseconds(),
		"ep", rt.EP(), "runs_on", runsOn(z.All()))
	defer warmGradients(ctx, z, log)()
	w, err := queue.NewWorker(ctx, conn, z, queue.WorkerConfig{Name: cfg.Name, Concurrency: cfg.Concurrency,
		AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver, Provider: rt.EP(), Version: inference.Version()}, log)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
