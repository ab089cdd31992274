package arch_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
	"gibbon/internal/testrt"
)

func TestArchitecturesRunWithAnyBatch(t *testing.T) {
	rt := testrt.Open(t)
	if len(arch.Names()) < 5 {
		t.Fatalf("only %d architectures", len(arch.Names()))
	}
	for _, name := range arch.Names() {
		t.Run(name, func(t *testing.T) {
			a, err := arch.Get(name)
			if err != nil {
				t.Fatal(err)
			}
			m, params := a.Build(7)
			if len(params) == 0 {
				t.Fatal("no trainable parameters")
			}
			for _, n := range m.Graph.Node {
				if strings.Contains(n.GetOpType(), "Norm") {
					t.Fatalf("uses %s: gradients only cover its inference form", n.GetOpType())
				}
			}
			for _, p := range params {
				if onnx.Initializer(m.Graph, p) == nil {
					t.Fatalf("parameter %q is not an initializer", p)
				}
			}
			data, err := onnx.Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			s, err := rt.NewSession(data)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, n := range []int64{1, 3} {
				x := inference.NewTensor(n, 1, 28, 28)
				for i := range x.Data {
					x.Data[i] = float32(i%29) / 28
				}
				out, err := s.Run(context.Background(), map[string]*inference.Tensor{arch.Input: x})
				if err != nil {
					t.Fatal(err)
				}
				y := out[arch.Output]
				if y == nil || !slices.Equal(y.Shape, []int64{n, 10}) {
					t.Fatalf("batch %d: logits %v", n, y)
				}
				spread := 0.0
				for _, v := range y.Data {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("logit %v", v)
					}
					spread = max(spread, math.Abs(float64(v)))
				}
				// Kaiming/Xavier init keeps the logits of a [0,1] image at order 1.
				if spread < 1e-3 || spread > 100 {
					t.Fatalf("initial logits reach %g: badly scaled init", spread)
				}
			}
		})
	}
	if _, err := arch.Get("nope"); err == nil || !strings.Contains(err.Error(), "mlp") {
		t.Fatalf("unknown name: %v (should list the known ones)", err)
	}
}

func TestInitIsSeeded(t *testing.T) {
	first := func(seed uint64) []float32 {
		m, params := arch.SmallCNN.Build(seed)
		d, err := onnx.FloatData(onnx.Initializer(m.Graph, params[0]))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b, c := first(1), first(1), first(2)
	if !slices.Equal(a, b) {
		t.Fatal("same seed, different weights")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds, same weights")
	}
	// Kaiming normal for a 5x5 conv on 1 channel: std sqrt(2/25).
	var ss float64
	for _, v := range a {
		ss += float64(v) * float64(v)
	}
	if std := math.Sqrt(ss / float64(len(a))); std < 0.2 || std > 0.37 {
		t.Fatalf("first conv std %.3f, want about 0.28", std)
	}
}
