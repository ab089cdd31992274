package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gibbon/inference"
)

// At shutdown, a request still running after the grace period has its model run
// cancelled (ONNX Runtime terminates it), gets a 503 saying so, and Serve returns
// cleanly; the port stops accepting.
func TestShutdownCancelsInFlightWork(t *testing.T) {
	dir := t.TempDir()
	slow := slowModel()
	if err := os.WriteFile(filepath.Join(dir, "slow.onnx"), slow, 0o644); err != nil {
		t.Fatal(err)
	}
	man, _ := json.Marshal(inference.Manifest{Models: []inference.ModelEntry{
		{Name: "slow", File: "slow.onnx", SHA256: shaHex(slow), Input: mnistContract, OutputsLogits: true},
	}})
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), man, 0o644); err != nil {
		t.Fatal(err)
	}
	reg := loadModels(t, dir)
	if len(reg.Problems()) > 0 {
		t.Fatal(reg.Problems())
	}
	cfg := DefaultConfig()
	cfg.ShutdownGrace, cfg.ShutdownTimeout = 50*time.Millisecond, 30*time.Second
	logs := &syncBuffer{}
	srv, err := New(Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Models: reg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	type answer struct {
		status int
		msg    string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		body, ctype := upload{file: pngBytes(t, drawShape("7", 80, 80)), filename: "7.png"}.encode(t)
		req, _ := http.NewRequest(http.MethodPost, base+"/api/classify", body)
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var e map[string]string
		json.NewDecoder(resp.Body).Decode(&e)
		answered <- answer{status: resp.StatusCode, msg: e["error"]}
	}()

	// Wait until the request is classifying (a hang guard, not a timing assertion).
	for deadline := time.Now().Add(time.Minute); srv.classifying.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the models")
		}
	}
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("shutdown did not finish")
	}
	a := <-answered
	if a.err != nil || a.status != http.StatusServiceUnavailable || !strings.Contains(a.msg, "stopped before it finished") {
		t.Fatalf("in-flight request: %+v, want 503 saying the work was stopped", a)
	}
	log := logs.String()
	for _, want := range []string{"shutting down", "cancelling in-flight work", "status=503", "stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if resp, err := http.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("the server still accepts connections after shutdown")
	}
}
