package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gibbon/queue"
)

func TestWorkerConfigFromFlagsEnvironmentAndDefaults(t *testing.T) {
	env := map[string]string{"GIBBON_NATS": "nats://queue.internal:4222"}
	getenv := func(k string) string { return env[k] }
	cfg, err := parseWorkerConfig(nil, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS != "nats://queue.internal:4222" || cfg.Concurrency != 1 || cfg.AckWait != queue.DefaultAckWait ||
		cfg.MaxDeliver != queue.DefaultMaxDeliver || cfg.EP != "cpu" || cfg.ModelsDir != "" || cfg.LogFormat != "text" {
		t.Fatalf("defaults: %+v", cfg)
	}
	env["GIBBON_CONCURRENCY"] = "4"
	env["GIBBON_ACK_WAIT"] = "1m"
	env["GIBBON_MODELS"] = "/srv/models"
	cfg, err = parseWorkerConfig([]string{"--nats", "nats://other:4222", "--concurrency", "2", "--name", "gpu-1"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS != "nats://other:4222" || cfg.Concurrency != 2 || cfg.Name != "gpu-1" {
		t.Errorf("flags must win over the environment: %+v", cfg)
	}
	if cfg.AckWait != time.Minute || cfg.ModelsDir != "/srv/models" {
		t.Errorf("environment not applied: %+v", cfg)
	}

	// serve takes --nats (and GIBBON_NATS) too.
	scfg, err := parseServeConfig(nil, func(k string) string { return map[string]string{"GIBBON_NATS": "nats://q:4222"}[k] }, io.Discard)
	if err != nil || scfg.NATS != "nats://q:4222" {
		t.Errorf("serve's NATS from GIBBON_NATS: %q, %v", scfg.NATS, err)
	}

	for _, tc := range []struct {
		args []string
		env  map[string]string
		says string
	}{
		{nil, nil, "a worker needs --nats URL (or GIBBON_NATS)"},
		{[]string{"--nats", "nats://q", "--concurrency", "0"}, nil, "--concurrency must be at least 1"},
		{[]string{"--nats", "nats://q", "--ack-wait", "500ms"}, nil, "--ack-wait must be at least 1s"},
		{[]string{"--nats", "nats://q", "--max-deliver", "0"}, nil, "--max-deliver must be at least 1"},
		{[]string{"--nats", "nats://q", "--ep", "tpu"}, nil, `unknown execution provider "tpu"`},
		{[]string{"--nats", "nats://q", "extra"}, nil, "worker takes no arguments"},
		{nil, map[string]string{"GIBBON_NATS": "nats://q", "GIBBON_CONCURRENCY": "many"}, `GIBBON_CONCURRENCY="many"`},
	} {
		_, err := parseWorkerConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v %v: err %v, want a usage error saying %q", tc.args, tc.env, err, tc.says)
		}
	}
}

// An unreachable NATS stops `gibbon serve --nats` and `gibbon worker` at start:
// exit code 1, one line on stderr, no password, within the connect timeout.
func TestServeAndWorkerStopAtOnceOnAnUnreachableNATS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://gibbon:secret@" + l.Addr().String()
	l.Close()
	for _, args := range [][]string{
		{"serve", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "state"), "--nats", url},
		{"worker", "--nats", url},
	} {
		var stderr bytes.Buffer
		start := time.Now()
		code := Main(context.Background(), args, io.Discard, &stderr)
		msg := stderr.String()
		if code != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "is not reachable") || strings.Contains(msg, "secret") {
			t.Errorf("gibbon %s: exit %d, stderr %q: want one line saying NATS is not reachable, without the password", args[0], code, msg)
		}
		if d := time.Since(start); d > queue.ConnectTimeout+2*time.Second {
			t.Errorf("gibbon %s took %s to give up", args[0], d)
		}
	}
}
