package attack_test

import (
	"context"
	"math"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/internal/testzoo"
)

// A batch run in slices (RunBatch) gives what the whole batch gives: Predict's logits
// and both gradient kinds' logits, losses and input gradients, for a batch that
// does not divide evenly (10 images in runs of at most 3: 3, 3, 3, 1 → 4 runs of
// 3, 3, 2, 2).
func TestRunBatchSlicesGiveTheWholeBatch(t *testing.T) {
	ctx := context.Background()
	proto := testzoo.Classifier(t, "mnist-cnn-small").Proto()
	whole := newModel(t, proto, attack.ModelOptions{Name: "whole", RunBatch: -1})
	sliced := newModel(t, proto, attack.ModelOptions{Name: "sliced", RunBatch: 3})
	if whole.RunBatch() != 0 || sliced.RunBatch() != 3 {
		t.Fatalf("RunBatch: whole %d, sliced %d; want 0 and 3", whole.RunBatch(), sliced.RunBatch())
	}
	x, labels := testzoo.Digits(t, 10)
	w := inference.NewTensor(10, 10)
	for i, l := range labels {
		w.Data[i*10+l] = 1
	}
	near := func(what string, got, want *inference.Tensor) {
		t.Helper()
		if len(got.Shape) != len(want.Shape) || len(got.Data) != len(want.Data) {
			t.Fatalf("%s: shape %v, want %v", what, got.Shape, want.Shape)
		}
		for i := range got.Shape {
			if got.Shape[i] != want.Shape[i] {
				t.Fatalf("%s: shape %v, want %v", what, got.Shape, want.Shape)
			}
		}
		for i := range got.Data {
			if d := math.Abs(float64(got.Data[i] - want.Data[i])); d > 1e-5*(1+math.Abs(float64(want.Data[i]))) {
				t.Fatalf("%s[%d] = %g, whole batch %g", what, i, got.Data[i], want.Data[i])
			}
		}
	}
	pw, err := whole.Predict(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := sliced.Predict(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	near("Predict", ps, pw)
	for _, kind := range []attack.LossKind{attack.CrossEntropy, attack.LogitSeed} {
		gw, err := whole.Gradient(ctx, x, kind, w)
		if err != nil {
			t.Fatal(err)
		}
		gs, err := sliced.Gradient(ctx, x, kind, w)
		if err != nil {
			t.Fatal(err)
		}
		near("logits", gs.Logits, gw.Logits)
		near("input gradient", gs.Input, gw.Input)
		near("loss", &inference.Tensor{Shape: []int64{int64(len(gs.Loss))}, Data: gs.Loss},
			&inference.Tensor{Shape: []int64{int64(len(gw.Loss))}, Data: gw.Loss})
	}
	fw, bw := sliced.Passes()
	if fw != 30 || bw != 20 {
		t.Errorf("sliced model counted %d forward and %d backward passes, want 30 and 20 (images, not runs)", fw, bw)
	}
}

// On the CPU the automatic run batch keeps about 256 KiB of input per run: digits in
// runs of 83, 224×224 colour images one at a time.
func TestRunBatchAutomatic(t *testing.T) {
	m := testzoo.Classifier(t, "mnist-cnn-small")
	if fwd, _ := m.Providers(); fwd == "cpu" && m.RunBatch() != 83 {
		t.Errorf("digits on the CPU: run batch %d, want 83", m.RunBatch())
	}
	for _, c := range []struct {
		shape    []int64
		provider string
		want     int
	}{
		{[]int64{-1, 1, 28, 28}, "cpu", 83},
		{[]int64{-1, 3, 224, 224}, "cpu", 1},
		{[]int64{-1, 3, 32, 32}, "cpu", 21},
		{[]int64{-1, 3, 224, 224}, "webgpu", 0},
		{[]int64{-1, 3, 224, 224}, "cuda", 0},
	} {
		if got := attack.AutoRunBatch(c.shape, c.provider); got != c.want {
			t.Errorf("AutoRunBatch(%v, %s) = %d, want %d", c.shape, c.provider, got, c.want)
		}
	}
}
