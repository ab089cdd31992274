package defense_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

// meanNet is the 8×8 mean model (logits [mean, −mean]) on real ONNX Runtime.
func meanNet(t *testing.T) *attack.ONNXModel {
	t.Helper()
	m, err := onnx.Decode(meanModel())
	if err != nil {
		t.Fatal(err)
	}
	net, err := attack.NewONNXModel(context.Background(), testrt.Open(t), m, attack.ModelOptions{Name: "mean"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(net.Close)
	return net
}

// seedFirst is a LogitSeed that makes each image's loss its first logit: the mean of
// the image the model sees.
func seedFirst(n int) *inference.Tensor {
	w := inference.NewTensor(int64(n), 2)
	for i := range n {
		w.Data[2*i] = 1
	}
	return w
}

func adaptive(t *testing.T, tr defense.Transform, net attack.Differentiable, samples int, seed uint64) *defense.Adaptive {
	t.Helper()
	a, err := defense.NewAdaptive(tr, net, defense.Format{}, samples, seed)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func gradientOf(t *testing.T, a *defense.Adaptive, x *inference.Tensor) *attack.Gradient {
	t.Helper()
	g, err := a.Gradient(context.Background(), x, attack.LogitSeed, seedFirst(int(x.Shape[0])))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// The loss is the mean of the transformed image, linear in the image for one draw of
// resize-and-pad and piecewise linear for the median: finite differences, each taken
// on a copy of the wrapper drawing the same first draw, give the exact gradient.
func TestAdaptiveGradientIsTheTransformsDerivative(t *testing.T) {
	net := meanNet(t)
	x := noise(21, 1, 1, 8, 8)
	for i := range x.Data {
		x.Data[i] = 0.25 + 0.5*x.Data[i] // no ties, no clamping
	}
	for _, tr := range []defense.Transform{defense.ResizePad{MinScale: 0.6}, defense.Median{Size: 2}, defense.Median{Size: 3}} {
		g := gradientOf(t, adaptive(t, tr, net, 1, 5), x)
		base, err := adaptive(t, tr, net, 1, 5).Predict(context.Background(), x)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(float64(g.Logits.Data[0]-base.Data[0])) > 1e-6 || math.Abs(float64(g.Loss[0]-base.Data[0])) > 1e-6 {
			t.Fatalf("%s: gradient pass logits %v, loss %v; the same draw predicts %v", tr.Name(), g.Logits.Data, g.Loss, base.Data)
		}
		const h = 1e-3
		for p := range x.Data {
			xp := x.Clone()
			xp.Data[p] += h
			l, err := adaptive(t, tr, net, 1, 5).Predict(context.Background(), xp)
			if err != nil {
				t.Fatal(err)
			}
			fd := (float64(l.Data[0]) - float64(base.Data[0])) / h
			if math.Abs(fd-float64(g.Input.Data[p])) > 2e-3 {
				t.Fatalf("%s: pixel %d: gradient %g, finite difference %g", tr.Name(), p, g.Input.Data[p], fd)
			}
		}
	}
}

// BPDA: bit-depth reduction and JPEG pass the model's gradient at the transformed
// image straight back; the mean model's gradient is 1/64 everywhere. A flat image
// ties every window of the median: the gradient is shared and still sums to one.
func TestBPDAPassesTheGradientThroughTheIdentity(t *testing.T) {
	net := meanNet(t)
	x := noise(3, 2, 1, 8, 8)
	for _, tr := range []defense.Transform{defense.BitDepth{Bits: 1}, defense.JPEG{Quality: 50}} {
		a := adaptive(t, tr, net, 7, 1)
		if a.Samples() != 1 {
			t.Fatalf("%s is deterministic but takes %d draws", tr.Name(), a.Samples())
		}
		if !strings.HasPrefix(a.Method(), "BPDA") {
			t.Fatalf("%s: method %q", tr.Name(), a.Method())
		}
		g := gradientOf(t, a, x)
		y := apply(t, tr, x, defense.Format{}, 1)
		for i := range 2 {
			var mean float64
			for _, v := range y.Data[i*64 : (i+1)*64] {
				mean += float64(v) / 64
			}
			if math.Abs(float64(g.Loss[i])-mean) > 1e-5 {
				t.Fatalf("%s: image %d loss %g, the transformed image's mean is %g", tr.Name(), i, g.Loss[i], mean)
			}
		}
		for p, v := range g.Input.Data {
			if math.Abs(float64(v)-1.0/64) > 1e-6 {
				t.Fatalf("%s: gradient %g at %d, want 1/64", tr.Name(), v, p)
			}
		}
	}
	flat := inference.NewTensor(1, 1, 8, 8)
	for i := range flat.Data {
		flat.Data[i] = 0.5
	}
	g := gradientOf(t, adaptive(t, defense.Median{Size: 3}, net, 1, 1), flat)
	var sum float64
	for _, v := range g.Input.Data {
		sum += float64(v)
		if v <= 0 {
			t.Fatalf("a flat image gave gradient %g: every tied pixel should get a share", v)
		}
	}
	if math.Abs(sum-1) > 1e-5 {
		t.Fatalf("median gradient sums to %g, want 1 (raising every pixel raises the mean by as much)", sum)
	}
}

// EOT: one gradient over k draws is the mean of k one-draw gradients taken in turn
// from the same seed, and the same seed gives the same gradient.
func TestEOTAveragesDraws(t *testing.T) {
	net := meanNet(t)
	x := noise(8, 3, 1, 8, 8)
	tr := defense.ResizePad{MinScale: 0.5}
	eot := gradientOf(t, adaptive(t, tr, net, 5, 11), x)
	if again := gradientOf(t, adaptive(t, tr, net, 5, 11), x); maxAbsDiff(again.Input.Data, eot.Input.Data) != 0 || maxAbsDiff(again.Loss, eot.Loss) != 0 {
		t.Fatal("the same seed gave different gradients")
	}
	if other := gradientOf(t, adaptive(t, tr, net, 5, 12), x); maxAbsDiff(other.Input.Data, eot.Input.Data) == 0 {
		t.Fatal("another seed gave the same draws")
	}
	one := adaptive(t, tr, net, 1, 11)
	mean := inference.NewTensor(x.Shape...)
	loss := make([]float32, 3)
	for range 5 {
		g := gradientOf(t, one, x)
		for j, v := range g.Input.Data {
			mean.Data[j] += v / 5
		}
		for i, v := range g.Loss {
			loss[i] += v / 5
		}
	}
	if d := maxAbsDiff(mean.Data, eot.Input.Data); d > 1e-6 {
		t.Fatalf("EOT gradient differs from the mean of its draws by %g", d)
	}
	if d := maxAbsDiff(loss, eot.Loss); d > 1e-6 {
		t.Fatalf("EOT loss %v, mean of the draws %v", eot.Loss, loss)
	}
	if !strings.Contains(adaptive(t, tr, net, 5, 1).Method(), "averaged over 5 draws") {
		t.Fatal("the method does not say how many draws EOT averages")
	}
}

func TestAdaptiveBadInputsAreErrors(t *testing.T) {
	net := meanNet(t)
	for _, k := range []int{0, -1, 101} {
		_, err := defense.NewAdaptive(defense.ResizePad{MinScale: 0.9}, net, defense.Format{}, k, 1)
		if err == nil || !strings.Contains(err.Error(), "EOT samples must be between 1 and 100") {
			t.Errorf("%d samples: %v", k, err)
		}
	}
	if _, err := defense.NewAdaptive(nil, net, defense.Format{}, 1, 1); err == nil {
		t.Error("no transform: no error")
	}
	if _, err := defense.NewAdaptive(defense.BitDepth{Bits: 1}, net, defense.Format{Layout: "CHW"}, 1, 1); err == nil {
		t.Error("a bad layout: no error")
	}
	a := adaptive(t, defense.BitDepth{Bits: 1}, net, 1, 1)
	if _, err := a.Gradient(context.Background(), noise(1, 2, 1, 8, 8), attack.LogitSeed, seedFirst(3)); err == nil {
		t.Error("weights for 3 images on 2: no error")
	}
	if _, err := a.Gradient(context.Background(), inference.NewTensor(1, 64), attack.LogitSeed, seedFirst(1)); err == nil || !strings.Contains(err.Error(), "1-bit") {
		t.Errorf("a flat tensor gave %v, want an error naming the defence", err)
	}
}

// Each caveat is one sentence that cites the paper; JPEG, which attacks through do
// about as well against as attacks around, has none.
func TestCaveatsAreOneSentenceWithTheReference(t *testing.T) {
	for _, k := range defense.Kinds {
		if k.ID == "jpeg" {
			if k.Caveat != "" {
				t.Errorf("JPEG carries a caveat: %q", k.Caveat)
			}
			continue
		}
		if !strings.Contains(k.Caveat, "Athalye, Carlini & Wagner") || !strings.HasSuffix(k.Caveat, "ICML 2018).") || strings.Count(k.Caveat, ". ") > 0 {
			t.Errorf("%s: caveat %q", k.ID, k.Caveat)
		}
	}
}
