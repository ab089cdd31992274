package defense_test

import (
	"context"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
	"gibbon/internal/testzoo"
)

// Adaptive attacks on the built-in MNIST models, on the first test digits: each
// figure is a robust accuracy (share of digits still classified correctly) measured
// here, so the checks hold with a margin for the sampling of so few digits.

func builtin(t *testing.T, name string) *attack.ONNXModel { return testzoo.Classifier(t, name) }

func firstDigits(t *testing.T, n int) (*inference.Tensor, []int) { return testzoo.Digits(t, n) }

// accuracy is the share of images net classifies as labelled.
func accuracy(t *testing.T, net attack.Classifier, x *inference.Tensor, labels []int) float64 {
	t.Helper()
	l, err := net.Predict(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	c := int(l.Shape[1])
	right := 0
	for i, y := range labels {
		row := l.Data[i*c : (i+1)*c]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if best == y {
			right++
		}
	}
	return float64(right) / float64(len(labels))
}

// pgd runs PGD (2.5ε/steps, one random start) on the surrogate and returns its images.
func pgd(t *testing.T, surrogate attack.Classifier, x *inference.Tensor, labels []int, eps float32, steps int) *inference.Tensor {
	t.Helper()
	return pgdFrom(t, surrogate, x, labels, attack.Config{Method: attack.PGD, Eps: eps, Steps: steps, Seed: 1})
}

func pgdFrom(t *testing.T, surrogate attack.Classifier, x *inference.Tensor, labels []int, cfg attack.Config) *inference.Tensor {
	t.Helper()
	res, err := attack.Run(context.Background(), cfg,
		attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{{Name: "surrogate", Net: surrogate}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Adv
}

// straightThrough is a plain BPDA PGD written apart from Adaptive and attack.Run: sign
// steps of 2.5ε/steps on the cross-entropy gradient taken at the transformed image,
// from the clean image, clipped to the ε-ball and [0,1], and put on the 8-bit
// grid inside the ball at the end, as every attack's images are.
func straightThrough(t *testing.T, net attack.Differentiable, tr defense.Transform, x0 *inference.Tensor, labels []int, eps float32, steps int) *inference.Tensor {
	t.Helper()
	oneHot := inference.NewTensor(int64(len(labels)), 10)
	for i, l := range labels {
		oneHot.Data[i*10+l] = 1
	}
	clip := func(x *inference.Tensor) {
		for j, v := range x.Data {
			x.Data[j] = min(max(v, x0.Data[j]-eps, 0), x0.Data[j]+eps, 1)
		}
	}
	x := x0.Clone()
	alpha := 2.5 * eps / float32(steps)
	for range steps {
		y, err := tr.Apply(x, defense.Format{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		g, err := net.Gradient(context.Background(), y, attack.CrossEntropy, oneHot)
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range g.Input.Data {
			if v > 0 {
				x.Data[j] += alpha
			} else if v < 0 {
				x.Data[j] -= alpha
			}
		}
		clip(x)
	}
	eps1 := make([]float32, len(labels))
	for i := range eps1 {
		eps1[i] = eps
	}
	ball, err := attack.NewBall(x0.Data, len(x0.Data)/len(labels), eps1, [2]float32{0, 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	ball.Quantize(x.Data)
	return x
}

// The case: mnist-mlp behind 1-bit reduction at ε 0.3 stands against PGD on
// the model alone, far less against PGD through the rounding.
func TestBPDABreaksOneBitReductionPartly(t *testing.T) {
	net := builtin(t, "mnist-mlp")
	x, labels := firstDigits(t, 100)
	tr := defense.BitDepth{Bits: 1}
	judge, err := defense.New(tr, net, defense.Format{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	through, err := defense.NewAdaptive(tr, net, defense.Format{}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	const eps, steps = 0.3, 100
	bare := accuracy(t, net, pgd(t, net, x, labels, eps, steps), labels)
	nonAdaptive := accuracy(t, judge, pgd(t, net, x, labels, eps, steps), labels)
	bpda := accuracy(t, judge, pgd(t, through, x, labels, eps, steps), labels)
	// Random starts alone move these figures by a few digits in 100: the comparison
	// with the plain attack starts both at the clean image.
	fromClean := attack.Config{Method: attack.PGD, Eps: eps, Steps: steps, NoRandomStart: true}
	bpdaClean := accuracy(t, judge, pgdFrom(t, through, x, labels, fromClean), labels)
	plain := accuracy(t, judge, straightThrough(t, net, tr, x, labels, eps, steps), labels)
	t.Logf("mnist-mlp ε 0.3 PGD-100, 100 digits: bare %.2f, 1-bit non-adaptive %.2f, BPDA %.2f; from the clean image BPDA %.2f, plain straight-through %.2f",
		bare, nonAdaptive, bpda, bpdaClean, plain)
	if bpdaClean > plain {
		t.Errorf("from the clean image, BPDA PGD leaves %.2f, a plain straight-through PGD %.2f: it should be at least as strong", bpdaClean, plain)
	}
	if bpda > nonAdaptive-0.15 {
		t.Errorf("BPDA PGD leaves %.2f, PGD on the model alone %.2f: want at least 15 points lower", bpda, nonAdaptive)
	}
	if bpda < bare+0.3 {
		t.Errorf("BPDA PGD leaves %.2f and the bare model keeps %.2f: 1 bit at ε 0.3 should keep part of its digits", bpda, bare)
	}
}

// JPEG and the median filter: attacked through, the defence falls close to the bare
// model. mnist-cnn-small at ε 0.15, PGD-40.
func TestBPDABringsJPEGAndMedianCloseToTheBareModel(t *testing.T) {
	net := builtin(t, "mnist-cnn-small")
	x, labels := firstDigits(t, 100)
	const eps, steps = 0.15, 40
	adv := pgd(t, net, x, labels, eps, steps)
	bare := accuracy(t, net, adv, labels)
	for _, c := range []struct {
		tr  defense.Transform
		gap float64 // non-adaptive minus adaptive, at least
	}{{defense.JPEG{Quality: 75}, 0}, {defense.Median{Size: 2}, 0.25}, {defense.Median{Size: 3}, 0.03}} {
		judge, err := defense.New(c.tr, net, defense.Format{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		through, err := defense.NewAdaptive(c.tr, net, defense.Format{}, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		nonAdaptive := accuracy(t, judge, adv, labels)
		adaptive := accuracy(t, judge, pgd(t, through, x, labels, eps, steps), labels)
		t.Logf("mnist-cnn-small ε 0.15 PGD-40, 100 digits: bare %.2f, %s non-adaptive %.2f, adaptive %.2f", bare, c.tr.Name(), nonAdaptive, adaptive)
		if adaptive > bare+0.1 {
			t.Errorf("%s: adaptive PGD leaves %.2f, the bare model keeps %.2f: want within 10 points", c.tr.Name(), adaptive, bare)
		}
		if adaptive > nonAdaptive-c.gap {
			t.Errorf("%s: adaptive PGD leaves %.2f, PGD on the model alone %.2f: want at least %.0f points lower", c.tr.Name(), adaptive, nonAdaptive, c.gap*100)
		}
	}
}

// Random resize-and-pad: gradients averaged over 10 draws beat PGD on the model alone.
// mnist-mlp at ε 0.1, PGD-40.
func TestEOTBeatsTheNonAdaptiveAttackOnResizePad(t *testing.T) {
	net := builtin(t, "mnist-mlp")
	x, labels := firstDigits(t, 100)
	tr := defense.ResizePad{MinScale: 0.9}
	judge, err := defense.New(tr, net, defense.Format{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	through, err := defense.NewAdaptive(tr, net, defense.Format{}, defense.DefaultSamples, 1)
	if err != nil {
		t.Fatal(err)
	}
	const eps, steps = 0.1, 40
	nonAdaptive := accuracy(t, judge, pgd(t, net, x, labels, eps, steps), labels)
	eot := accuracy(t, judge, pgd(t, through, x, labels, eps, steps), labels)
	t.Logf("mnist-mlp ε 0.1 PGD-40, 100 digits: resize ≥90%% + pad non-adaptive %.2f, EOT over %d draws %.2f", nonAdaptive, defense.DefaultSamples, eot)
	if eot > nonAdaptive-0.05 {
		t.Errorf("EOT PGD leaves %.2f, PGD on the model alone %.2f: want at least 5 points lower", eot, nonAdaptive)
	}
}
