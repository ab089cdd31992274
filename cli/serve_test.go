package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/inference/onnx"
	"gibbon/server"
)

func TestServeConfigFromFlagsEnvironmentAndDefaults(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	cfg, err := parseServeConfig(nil, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "localhost:8080" || cfg.DataDir != "./data" || cfg.DB != "" || cfg.ModelsDir != "" || cfg.EP != "cpu" ||
		cfg.Server.MaxUploadBytes != 10_000_000 || cfg.Server.MaxPixels != 40_000_000 || cfg.LogFormat != "text" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if cfg.Attack != server.DefaultAttackConfig() {
		t.Fatalf("explorer defaults: %+v", cfg.Attack)
	}
	if cfg.AllowPull {
		t.Fatal("pulls from the models page are on by default")
	}
	if cfg, err := parseServeConfig(nil, func(k string) string { return map[string]string{"GIBBON_ALLOW_PULL": "true"}[k] }, io.Discard); err != nil || !cfg.AllowPull {
		t.Fatalf("GIBBON_ALLOW_PULL=true: %v, allowed %v", err, cfg.AllowPull)
	}

	env["GIBBON_ADDR"] = ":9000"
	env["GIBBON_MAX_UPLOAD"] = "2MiB"
	env["GIBBON_MAX_PIXELS"] = "12.5MP"
	env["GIBBON_UPLOAD_BURST"] = "7"
	env["GIBBON_MODELS"] = "/tmp/m"
	env["GIBBON_SHUTDOWN_GRACE"] = "250ms"
	env["GIBBON_EXPLORER_RUNS"] = "3"
	env["GIBBON_EXPLORER_TIME_LIMIT"] = "45s"
	env["GIBBON_DB"] = "postgres://gibbon@db.internal/gallery"
	cfg, err = parseServeConfig([]string{"--addr", "127.0.0.1:7000", "--max-upload", "512kB", "--explorer-runs", "2",
		"--explorer-queue", "0", "--explorer-max-steps", "200", "--explorer-pages-per-client", "1"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Attack; a.MaxRuns != 2 || a.MaxQueue != -1 || a.MaxSteps != 200 || a.MaxSocketsPerClient != 1 || a.RunTimeout != 45*time.Second {
		t.Errorf("explorer limits: %+v (the queue flag's 0 is AttackConfig's -1: none may wait)", a)
	}
	if cfg.Addr != "127.0.0.1:7000" || cfg.Server.MaxUploadBytes != 512_000 {
		t.Errorf("flags must win over the environment: %+v", cfg)
	}
	if cfg.Server.MaxPixels != 12_500_000 || cfg.Server.UploadBurst != 7 || cfg.ModelsDir != "/tmp/m" ||
		cfg.Server.ShutdownGrace != 250*time.Millisecond || cfg.DB != "postgres://gibbon@db.internal/gallery" {
		t.Errorf("environment not applied: %+v", cfg)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
		says string
	}{
		{[]string{"--max-upload", "lots"}, nil, "-max-upload: unknown unit"},
		{[]string{"--max-upload", "10 parsecs"}, nil, `unknown unit "parsecs"`},
		{[]string{"--max-pixels", "-3MP"}, nil, "not a positive size"},
		{[]string{"--ep", "tpu"}, nil, `unknown execution provider "tpu"`},
		{[]string{"--log-format", "xml"}, nil, `log format "xml"`},
		{[]string{"--upload-rate", "0"}, nil, "upload rate must be above 0"},
		{[]string{"extra"}, nil, "serve takes no arguments"},
		{[]string{"--explorer-runs", "0"}, nil, "--explorer-runs must be at least 1"},
		{[]string{"--explorer-queue", "-2"}, nil, "--explorer-queue cannot be negative"},
		{[]string{"--explorer-max-steps", "0"}, nil, "--explorer-max-steps must be at least 1"},
		{[]string{"--explorer-time-limit", "0s"}, nil, "--explorer-time-limit must be above 0"},
		{[]string{"--explorer-pages-per-client", "0"}, nil, "--explorer-pages-per-client must be at least 1"},
		{[]string{"--allow-pull", "--nats", "nats://localhost:4222"}, nil, "--allow-pull works without --nats only"},
		{nil, map[string]string{"GIBBON_ALLOW_PULL": "maybe"}, `GIBBON_ALLOW_PULL="maybe"`},
		{nil, map[string]string{"GIBBON_EXPLORER_TIME_LIMIT": "soon"}, `GIBBON_EXPLORER_TIME_LIMIT="soon"`},
		{nil, map[string]string{"GIBBON_MAX_UPLOAD": "huge"}, `GIBBON_MAX_UPLOAD="huge"`},
		{nil, map[string]string{"GIBBON_UPLOAD_BURST": "many"}, `GIBBON_UPLOAD_BURST="many"`},
	} {
		_, err := parseServeConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v %v: err %v, want a usage error saying %q", tc.args, tc.env, err, tc.says)
		}
	}
}

func TestParseQuantity(t *testing.T) {
	for in, want := range map[string]int64{"10MB": 10_000_000, "10 mb": 10_000_000, "1.5MiB": 1_572_864, "4096": 4096, "2k": 2000, "1e3": 1000} {
		var n int64
		if err := (byteSize{&n}).Set(in); err != nil || n != want {
			t.Errorf("%q: %d %v, want %d", in, n, err, want)
		}
	}
	for _, in := range []string{"", "MB", "0", "-1KB", "1.2.3MB", "1e30GB"} {
		var n int64
		if err := (byteSize{&n}).Set(in); err == nil {
			t.Errorf("%q accepted as %d", in, n)
		}
	}
}

// lockedBuffer collects a command's log while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs `gibbon serve` on a free loopback port with JSON logs and
// args, and waits until it listens. stop ends it (as SIGTERM does) and returns
// what serve returned.
func startServe(t *testing.T, args ...string) (base string, logs *lockedBuffer, stop func() error) {
	t.Helper()
	logs = &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, args...), io.Discard, logs)
	}()
	urlRe := regexp.MustCompile(`"url":"(http://127\.0\.0\.1:\d+)"`)
	for deadline := time.Now().Add(time.Minute); base == ""; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("serve returned early: %v\n%s", err, logs.String())
		default:
		}
		if m := urlRe.FindStringSubmatch(logs.String()); m != nil {
			base = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", logs.String())
		}
	}
	return base, logs, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(time.Minute):
			return errors.New("serve did not stop")
		}
	}
}

// `gibbon serve` end to end, in process: loads the built-in and a user's models,
// serves, answers, and stops cleanly when its context ends (as on SIGTERM).
func TestServeCommandServesAndStops(t *testing.T) {
	dir := t.TempDir()
	b := onnx.NewBuilder("lin")
	x := b.Input("image", 1, 1, 28, 28)
	w := make([]float32, 7840)
	for i := range w {
		w[i] = float32(i%13-6) / 100
	}
	b.Output("logits", b.Op("MatMul", []string{b.Op("Reshape", []string{x, b.Ints(1, 784)}), b.Init("W", []int64{784, 10}, w)}), 1, 10)
	model := b.Bytes()
	sum := sha256.Sum256(model)
	man, _ := json.Marshal(inference.Manifest{Models: []inference.ModelEntry{{Name: "user-linear", File: "lin.onnx",
		SHA256: hex.EncodeToString(sum[:]), OutputsLogits: true,
		Input: inference.InputContract{Name: "image", Layout: "NCHW", Channels: 1, Height: 28, Width: 28, Color: "gray", Range: [2]float64{0, 1}, Resize: "mnist"}}}})
	for name, data := range map[string][]byte{"lin.onnx": model, "manifest.json": man} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(t.TempDir(), "state")
	base, logs, stop := startServe(t, "--models", dir, "--data", data)
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Ready       bool `json:"ready"`
		Classifiers int  `json:"classifiers"`
	}
	json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if !ready.Ready || ready.Classifiers < 1 {
		t.Fatalf("readyz: %+v", ready)
	}
	resp, err = http.Get(base + "/models")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "user-linear") {
		t.Fatal("/models does not list the user's model")
	}
	// Without --allow-pull the catalog is read-only: the command, no Pull button.
	if !strings.Contains(string(page), `data-testid="catalog-readonly"`) || strings.Contains(string(page), `data-testid="pull-button"`) ||
		!strings.Contains(string(page), "gibbon serve --models "+dir) {
		t.Error("/models without --allow-pull does not list the catalog read-only")
	}
	// Where the models run: in the start-up log, and per model on /models.
	if !strings.Contains(logs.String(), `"runs_on":"cpu"`) || !strings.Contains(string(page), "Runs on") {
		t.Errorf("neither the log nor /models says where the models run:\n%s", logs.String())
	}
	if st, err := os.Stat(data); err != nil || !st.IsDir() {
		t.Errorf("data directory not created: %v", err)
	}
	// The gradient graphs are built in the background after the start; the user's
	// graph pins its batch in a Reshape, so its graph is not built, and the log says
	// why.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(logs.String(), `"msg":"gradient graphs ready"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no \"gradient graphs ready\" within a minute:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), `"msg":"gradient graph not built ahead","model":"user-linear"`) || !strings.Contains(logs.String(), `"models":5`) {
		t.Errorf("the warm-up log does not name the user's model or the five built-in ones:\n%s", logs.String())
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	for _, want := range []string{`"msg":"models loaded"`, `"msg":"request"`, `"path":"/models"`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

// `gibbon serve --allow-pull` without --models pulls into the default models
// directory, which it creates, and shows a Pull button for each catalog model that
// has a pinned checksum.
func TestServeAllowPull(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	want, err := catalog.DefaultModelsDir()
	if err != nil {
		t.Fatal(err)
	}
	base, _, stop := startServe(t, "--allow-pull", "--data", filepath.Join(t.TempDir(), "state"))
	resp, err := http.Get(base + "/models")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pinned := 0
	for _, e := range catalog.Default() {
		if !e.PinRequired() {
			pinned++
		}
	}
	if n := strings.Count(string(page), `data-testid="pull-button"`); n != pinned || !strings.Contains(string(page), want) {
		t.Errorf("/models with --allow-pull: %d Pull buttons for %d pinned models; names %s: %v", n, pinned, want, strings.Contains(string(page), want))
	}
	if st, err := os.Stat(want); err != nil || !st.IsDir() {
		t.Errorf("models directory not created: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
