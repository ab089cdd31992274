package benchnets_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"gibbon/inference"
	"gibbon/inference/benchnets"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

// Every shape builds the same graph from the same seed, loads in ONNX Runtime and
// gives finite logits that differ between images and classes at batch 1 and 2:
// random weights that gave ~0 or exploding logits would make benchmarks and gradient
// checks meaningless.
func TestArchsRun(t *testing.T) {
	rt := testrt.Open(t)
	all := benchnets.All()
	all = append(all, benchnets.Net{Name: "vit-tiny-mean", Shape: []int64{3, 16, 16}, Classes: 5,
		Build: func(seed uint64) *onnx.ModelProto {
			return benchnets.ViT(benchnets.ViTConfig{Image: 16, Channels: 3, Patch: 4, Width: 16, Depth: 2, Heads: 4, MLP: 32, Classes: 5, MeanPool: true}, seed)
		}})
	for _, a := range all {
		t.Run(a.Name, func(t *testing.T) {
			m := a.Build(7)
			if !proto.Equal(m, a.Build(7)) {
				t.Fatal("the same seed built different graphs")
			}
			if proto.Equal(m, a.Build(8)) {
				t.Fatal("another seed built the same graph")
			}
			data, err := onnx.Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			s, err := rt.NewSession(data)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer s.Close()
			rng := rand.New(rand.NewPCG(1, 2))
			for _, n := range []int64{1, 2} {
				x := inference.NewTensor(append([]int64{n}, a.Shape...)...)
				for i := range x.Data {
					x.Data[i] = rng.Float32()
				}
				out, err := s.Run(context.Background(), map[string]*inference.Tensor{benchnets.Input: x})
				if err != nil {
					t.Fatalf("run at batch %d: %v", n, err)
				}
				z := out[benchnets.Output]
				if z == nil || len(z.Shape) != 2 || z.Shape[0] != n || z.Shape[1] != a.Classes {
					t.Fatalf("batch %d: logits %v, want [%d %d]", n, z, n, a.Classes)
				}
				var sum, sq float64
				for _, v := range z.Data {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("batch %d: non-finite logit %v", n, v)
					}
					sum += float64(v)
					sq += float64(v) * float64(v)
				}
				k := float64(len(z.Data))
				std := math.Sqrt(max(0, sq/k-(sum/k)*(sum/k)))
				if std < 1e-2 || std > 1e2 {
					t.Errorf("batch %d: logits spread %.3g: want O(1) with random weights", n, std)
				}
			}
		})
	}
}

func TestGet(t *testing.T) {
	for _, a := range benchnets.All() {
		got, err := benchnets.Get(a.Name)
		if err != nil || got.Name != a.Name {
			t.Errorf("Get(%q) = %v, %v", a.Name, got.Name, err)
		}
	}
	if _, err := benchnets.Get("alexnet"); err == nil || !strings.Contains(err.Error(), "unknown architecture") || !strings.Contains(err.Error(), "resnet18") {
		t.Errorf("Get(alexnet): %v, want an error listing the known names", err)
	}
}
