package inference_test

import (
	"context"
	"testing"

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
}
