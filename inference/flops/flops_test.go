package flops_test

import (
	"context"
	"strings"
	"testing"

	"gibbon/inference/benchnets"
	"gibbon/inference/flops"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

func zeros(n int) []float32 { return make([]float32, n) }

// Each counted op against its multiply-adds worked out by hand.
func TestCountEachOp(t *testing.T) {
	b := onnx.NewBuilder("ops")
	x := b.Input("x", -1, 4, 10, 10)
	// Conv 3×3, stride 1, pad 1, 4→8: out [N,8,10,10], 4·9 products each.
	y := b.Op("Conv", []string{x, b.Init("w1", []int64{8, 4, 3, 3}, zeros(8*4*9))},
		onnx.AttrInts("pads", 1, 1, 1, 1))
	// Depthwise 3×3 stride 2 (group 8): out [N,8,5,5], 9 products each.
	y = b.Op("Conv", []string{y, b.Init("w2", []int64{8, 1, 3, 3}, zeros(8*9))},
		onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInts("strides", 2, 2), onnx.AttrInt("group", 8))
	// ConvTranspose 2×2 stride 2, 8→2: each of the 8·25 input values feeds 2·4 outputs.
	y = b.Op("ConvTranspose", []string{y, b.Init("w3", []int64{8, 2, 2, 2}, zeros(8*2*4))}, onnx.AttrInts("strides", 2, 2))
	// [N,2,10,10] → [N,200]; Gemm with transA on a transposed copy: [N,200]·[200,16].
	f := b.Op("Flatten", []string{y}, onnx.AttrInt("axis", 1))
	g := b.Op("Gemm", []string{b.Op("Transpose", []string{f}), b.Init("w4", []int64{200, 16}, zeros(200*16))}, onnx.AttrInt("transA", 1))
	// Batched MatMul: [N,4,4]·[4,5] → [N,4,5], 4 products each.
	m := b.Op("MatMul", []string{b.Op("Reshape", []string{g, b.Ints(-1, 4, 4)}), b.Init("w5", []int64{4, 5}, zeros(20))})
	b.Output("out", m, -1, 4, 5)
	const batch = 3
	r, err := flops.Count(context.Background(), testrt.Open(t), b.Model(), batch)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"Conv":          batch * (8*100*4*9 + 8*25*9),
		"ConvTranspose": batch * 8 * 25 * 2 * 4,
		"Gemm":          batch * 16 * 200,
		"MatMul":        batch * 4 * 5 * 4,
	}
	var total int64
	for op, w := range want {
		if r.ByOp[op] != w {
			t.Errorf("%s: %d multiply-adds, want %d", op, r.ByOp[op], w)
		}
		total += w
	}
	if r.MACs != total || r.FLOPs() != 2*total || r.Nodes["Conv"] != 2 || r.Batch != batch {
		t.Fatalf("report %+v, want %d multiply-adds in all", r, total)
	}
	if got := r.PerImage(); got != float64(2*total)/batch {
		t.Fatalf("per image %g", got)
	}
	if ops := r.Ops(); ops[0] != "Conv" {
		t.Fatalf("ops by work: %v", ops)
	}
}

// The MobileNetV2 shape costs what the paper says (300 M multiply-adds at 224 px),
// and its input-gradient graph about twice as much again: the backward pass of a
// convolution with respect to its input is a convolution of the same size.
func TestMobileNetV2(t *testing.T) {
	a, err := flops.CountAttack(context.Background(), testrt.Open(t), benchnets.MobileNetV2(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	fwd := a.Forward.MACs
	if fwd < 290e6 || fwd > 320e6 {
		t.Fatalf("forward pass: %d multiply-adds, want about 300 M", fwd)
	}
	if r := a.Backward() / a.Forward.PerImage(); r < 0.9 || r > 1.1 {
		t.Fatalf("backward / forward = %.2f; an input gradient costs about one forward pass", r)
	}
	pgd := a.PerImage(10, 1)
	if want := 10*a.Gradient.PerImage() + a.Forward.PerImage(); pgd != want {
		t.Fatalf("PGD-10 %g FLOPs, want %g", pgd, want)
	}
	t.Logf("MobileNetV2 224: forward %.3f GFLOP, gradient graph %.3f GFLOP, PGD-10 %.2f GFLOP per image",
		a.Forward.PerImage()/1e9, a.Gradient.PerImage()/1e9, pgd/1e9)
}

func TestCountRefusesWhatItCannotFeed(t *testing.T) {
	rt := testrt.Open(t)
	b := onnx.NewBuilder("dyn")
	x := b.Input("x", -1, -1)
	b.Output("y", b.Op("MatMul", []string{x, b.Init("w", []int64{3, 2}, zeros(6))}), -1, 2)
	if _, err := flops.Count(context.Background(), rt, b.Model(), 1); err == nil || !strings.Contains(err.Error(), "dynamic dimension 1") {
		t.Fatalf("a second dynamic dimension: %v", err)
	}
	if _, err := flops.Count(context.Background(), rt, nil, 1); err == nil {
		t.Fatal("no error for no model")
	}
	if _, err := flops.Count(context.Background(), rt, benchnets.SmallCNN(1), 0); err == nil {
		t.Fatal("no error for batch 0")
	}
}
