package inference_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

func TestSessionRunsBuiltGraph(t *testing.T) {
	rt := testrt.Open(t)
	b := onnx.NewBuilder("affine")
	x := b.Input("x", -1, 3)
	w := b.Init("w", []int64{3, 2}, []float32{1, 2, 3, 4, 5, 6})
	y := b.Op("MatMul", []string{x, w})
	b.Output("y", b.Op("Relu", []string{y}), -1, 2)
	s, err := rt.NewSession(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(context.Background(), map[string]*inference.Tensor{
		"x": {Shape: []int64{2, 3}, Data: []float32{1, 0, 0, -1, -1, -1}}})
	if err != nil {
		t.Fatal(err)
	}
	got := out["y"].Data
	want := []float32{1, 2, 0, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("y = %v, want %v", got, want)
		}
	}
	if _, err := s.Run(context.Background(), map[string]*inference.Tensor{"x": {Shape: []int64{2, 4}, Data: make([]float32, 8)}}); err == nil {
		t.Fatal("wrong input shape was accepted")
	}
	// Outputs are the caller's: later runs (whose buffers the runtime reuses) and
	// the caller's own writes to the inputs leave them as they were.
	in := &inference.Tensor{Shape: []int64{2, 3}, Data: []float32{1, 1, 1, 2, 2, 2}}
	first, err := s.Run(context.Background(), map[string]*inference.Tensor{"x": in})
	if err != nil {
		t.Fatal(err)
	}
	in.Data[0] = 100
	for range 3 {
		if _, err := s.Run(context.Background(), map[string]*inference.Tensor{"x": in}); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range []float32{9, 12, 18, 24} {
		if first["y"].Data[i] != v {
			t.Fatalf("first run's y became %v after later runs, want [9 12 18 24]", first["y"].Data)
		}
	}
}

// A context that ends during a run stops it inside ONNX Runtime (the run returns the
// context's error, not outputs), and the same session then runs on normally; a
// context already ended is refused before the run.
func TestSessionRunStopsWhenTheContextEnds(t *testing.T) {
	rt := testrt.Open(t)
	// 150 chained 1024×1024 MatMuls on 256 rows: about 40 G multiply-adds, half a
	// second or more even on two fast threads, so the cancellation lands mid-run.
	b := onnx.NewBuilder("slow")
	x := b.Input("x", -1, 1024)
	w := make([]float32, 1024*1024)
	for i := range w {
		w[i] = float32(i%7-3) / 4096
	}
	wn := b.Init("w", []int64{1024, 1024}, w)
	h := x
	for range 150 {
		h = b.Op("MatMul", []string{h, wn})
	}
	b.Output("y", h, -1, 1024)
	s, err := rt.NewSession(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	big := map[string]*inference.Tensor{"x": inference.NewTensor(256, 1024)}
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
		close(stop)
	}()
	out, err := s.Run(ctx, big)
	<-stop
	if !errors.Is(err, context.Canceled) || out != nil {
		t.Fatalf("run cancelled mid-way: outputs %v, error %v; want context.Canceled and no outputs", out != nil, err)
	}
	if _, err := s.Run(ctx, big); !errors.Is(err, context.Canceled) {
		t.Fatalf("a run with an ended context: %v, want context.Canceled", err)
	}
	small := map[string]*inference.Tensor{"x": inference.NewTensor(1, 1024)}
	for range 20 { // runs that finish: no callback left behind to terminate a later one
		if _, err := s.Run(context.Background(), small); err != nil {
			t.Fatal(err)
		}
	}
}
