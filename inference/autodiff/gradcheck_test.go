package autodiff_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

// Gradient checks against central finite differences of the built graph's own "loss"
// output (the forward pass, run by ORT in float32; the per-sample losses are summed in
// float64 in Go).
//
// Error budget. ORT computes in float32 and returns each per-sample loss as float32:
// a loss near 1 is resolved to its spacing s = 1.2e-7 (the rounding inside the small
// test models is of the same order). A central difference with step h turns a
// rounding error uniform in +-s/2 at each end into noise of standard deviation
// s/(sqrt(24) h) per sample, and adds a truncation error of O(h^2 * third derivative).
//   - Directional derivative along u = g/|g|: the exact value is |g| = g.u. With
//     h = 1e-3 the noise is ~2.5e-5*sqrt(samples), i.e. ~1e-4 relative for |g| ~ 0.3
//     and less for larger gradients; each coordinate moves by h*u_i, far less than h,
//     so kinks (ReLU at 0, max-pool near-ties) are rarely crossed. When the check
//     fails it is repeated once with h = 1e-4 (a kink can only spoil a difference,
//     never repair a wrong gradient, so passing at either step is sound). Threshold:
//     2e-3 relative plus three noise standard deviations; a wrong rule (a shifted
//     ConvTranspose, a missing broadcast reduction, a wrong divisor) is off by
//     percents to tens of percents.
//   - Per coordinate (relative L2 error over the gradient vector) with h = 1e-3: the
//     error is first discounted by three noise standard deviations per coordinate in
//     quadrature, then must be below 1e-2 of the gradient's norm. A coordinate whose
//     forward and backward one-sided differences disagree by more than rounding
//     (2s/h), curvature (h times the second derivative: allowed up to 5% of the
//     gradient's RMS coordinate) and 1% of the slope can explain has a kink inside
//     the step (ReLU or Clip at a bound, a max-pool near-tie): its central difference
//     is no derivative at all, so it is skipped (at most 10% may be).
const (
	dirStep   = 1e-3
	dirTol    = 2e-3
	coordStep = 1e-3
	coordTol  = 1e-2
	kinkCurv  = 5e-2
	kinkRel   = 1e-2
	// coordinates checked one by one at most (each costs two runs)
	maxCoords = 300
)

type harness struct {
	t      *testing.T
	rt     *inference.Runtime
	sess   *inference.Session
	feeds  map[string]*inference.Tensor
	image  string
	params []string
	grads  map[string]string // differentiated feed -> its gradient output
}

func newHarness(t *testing.T, m *onnx.ModelProto, opts autodiff.Options, x *inference.Tensor, classes int, seed uint64) *harness {
	t.Helper()
	rt := testrt.Open(t)
	gm, err := autodiff.Build(rt, m, opts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	data, err := onnx.Encode(gm)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rt.NewSession(data)
	if err != nil {
		t.Fatalf("load gradient graph: %v", err)
	}
	t.Cleanup(s.Close)
	image := opts.Input
	if image == "" {
		image = m.Graph.Input[0].GetName()
	}
	h := &harness{t: t, rt: rt, sess: s, image: image, params: opts.Params, feeds: map[string]*inference.Tensor{image: x}, grads: map[string]string{}}
	n := x.Shape[0]
	rng := rand.New(rand.NewPCG(seed, 99))
	switch opts.Loss {
	case autodiff.CrossEntropy:
		// soft labels that do not sum to one exercise the general formula
		y := inference.NewTensor(n, int64(classes))
		for i := range y.Data {
			y.Data[i] = rng.Float32()
		}
		h.feeds[autodiff.InputLabelWeights] = y
	case autodiff.LogitSeed:
		s := inference.NewTensor(n, int64(classes))
		for i := range s.Data {
			s.Data[i] = float32(rng.NormFloat64())
		}
		h.feeds[autodiff.InputLogitSeed] = s
	}
	for _, p := range opts.Params {
		init := onnx.Initializer(m.Graph, p)
		v, err := onnx.FloatData(init)
		if err != nil {
			t.Fatal(err)
		}
		h.feeds[p] = &inference.Tensor{Shape: append([]int64(nil), init.Dims...), Data: v}
		h.grads[p] = autodiff.GradPrefix + p
	}
	if !opts.NoInputGrad {
		h.grads[image] = autodiff.OutputInputGrad
	}
	return h
}

func (h *harness) run() map[string]*inference.Tensor {
	h.t.Helper()
	out, err := h.sess.Run(context.Background(), h.feeds)
	if err != nil {
		h.t.Fatalf("run gradient graph: %v", err)
	}
	return out
}

func (h *harness) loss() float64 {
	out := h.run()
	s := 0.0
	for _, v := range out[autodiff.OutputLoss].Data {
		s += float64(v)
	}
	return s
}

// lossAndSpacing returns the summed loss and the largest float32 spacing among the
// per-sample losses.
func (h *harness) lossAndSpacing() (float64, float64) {
	out := h.run()
	s, sp := 0.0, 0.0
	for _, v := range out[autodiff.OutputLoss].Data {
		s += float64(v)
		a := float32(math.Abs(float64(v)))
		sp = max(sp, float64(math.Nextafter32(a, float32(math.Inf(1))))-float64(a))
	}
	return s, sp
}

// check compares every gradient output with finite differences.
func (h *harness) check() {
	h.t.Helper()
	out := h.run()
	for feed, gname := range h.grads {
		g := out[gname]
		x := h.feeds[feed]
		if g == nil {
			h.t.Fatalf("no output %q", gname)
		}
		if fmt.Sprint(g.Shape) != fmt.Sprint(x.Shape) {
			h.t.Fatalf("%s shape %v, want %v", gname, g.Shape, x.Shape)
		}
		norm := 0.0
		for _, v := range g.Data {
			norm += float64(v) * float64(v)
		}
		norm = math.Sqrt(norm)
		if norm == 0 || math.IsNaN(norm) {
			h.t.Fatalf("%s: gradient norm %v: the test model must give a usable gradient", gname, norm)
		}
		// directional derivative along g/|g|; a kink crossed within the step spoils
		// the difference, so a step ten times smaller gets a second chance.
		orig := append([]float32(nil), x.Data...)
		shift := func(step float64) float64 {
			for i := range x.Data {
				x.Data[i] = orig[i] + float32(step*float64(g.Data[i])/norm)
			}
			return h.loss()
		}
		// float32 rounding of the per-sample losses (all of them move): three sigmas
		_, spacing0 := h.lossAndSpacing()
		nSamples := float64(x.Shape[0])
		var fd, rel, slack float64
		for _, step := range []float64{dirStep, dirStep / 10} {
			fd = (shift(step) - shift(-step)) / (2 * step)
			slack = 3 * math.Sqrt(nSamples) * spacing0 / (math.Sqrt(24) * step) / norm
			if rel = math.Abs(fd-norm) / norm; rel <= dirTol+slack {
				break
			}
		}
		copy(x.Data, orig)
		if rel > dirTol+slack {
			h.t.Errorf("%s: directional derivative %.6g by finite differences, %.6g from the graph (rel. error %.2g > %.2g + %.2g for float32 loss rounding)", gname, fd, norm, rel, dirTol, slack)
		} else {
			h.t.Logf("%s: directional rel. error %.2g (|g| %.4g)", gname, rel, norm)
		}
		// Each per-sample loss comes back as float32: its spacing is the resolution of
		// every finite difference (a coordinate moves one sample's loss only).
		l0, spacing := h.lossAndSpacing()
		// kink threshold: rounding (two spacings over h), curvature up to 5% of the
		// gradient's RMS coordinate, plus 1% of the slope
		rms := norm / math.Sqrt(float64(len(g.Data)))
		kinkAbs := 2*spacing/coordStep + kinkCurv*rms
		// per coordinate, on a sample of coordinates for big tensors
		idx := make([]int, len(x.Data))
		for i := range idx {
			idx[i] = i
		}
		if len(idx) > maxCoords {
			rng := rand.New(rand.NewPCG(7, uint64(len(idx))))
			rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
			idx = idx[:maxCoords]
		}
		var diff2, ref2 float64
		worst, worstAt, kinks := 0.0, 0, 0
		for _, i := range idx {
			v := x.Data[i]
			x.Data[i] = v + coordStep
			lp := h.loss()
			x.Data[i] = v - coordStep
			lm := h.loss()
			x.Data[i] = v
			// the steps actually taken in float32
			hp, hm := float64(v+coordStep)-float64(v), float64(v)-float64(v-coordStep)
			fwd, bwd := (lp-l0)/hp, (l0-lm)/hm
			if math.Abs(fwd-bwd) > kinkAbs+kinkRel*max(math.Abs(fwd), math.Abs(bwd)) {
				// A kink (ReLU at 0, a max-pool near-tie) lies inside the step: the
				// function is not differentiable at this resolution, skip the coordinate.
				kinks++
				continue
			}
			fdi := (lp - lm) / (hp + hm)
			d := fdi - float64(g.Data[i])
			diff2 += d * d
			ref2 += fdi * fdi
			if math.Abs(d) > worst {
				worst, worstAt = math.Abs(d), i
			}
			if testing.Verbose() && math.Abs(d) > 0.05 {
				h.t.Logf("  %s[%d]: fd %.5g graph %.5g fwd %.5g bwd %.5g", gname, i, fdi, g.Data[i], fwd, bwd)
			}
		}
		if kinks > len(idx)/10 {
			h.t.Errorf("%s: %d of %d coordinates straddle a kink: the test model is too close to non-differentiable points", gname, kinks, len(idx))
		}
		// The loss rounding is uniform in +-spacing/2 at both ends of a central
		// difference: sigma = spacing/(sqrt(24)*h) per coordinate. Three sigmas per
		// coordinate, in quadrature, are noise, not error.
		sigma := spacing / (math.Sqrt(24) * coordStep)
		noise2 := float64(len(idx)-kinks) * 9 * sigma * sigma
		raw := math.Sqrt(diff2 / ref2)
		rel = math.Sqrt(max(0, diff2-noise2) / ref2)
		if rel > coordTol || math.IsNaN(rel) {
			h.t.Errorf("%s: per-coordinate rel. L2 error %.3g (%.3g before discounting float32 loss rounding) > %.2g over %d coordinates (worst at %d: graph %.6g)", gname, rel, raw, coordTol, len(idx), worstAt, g.Data[worstAt])
		} else {
			h.t.Logf("%s: per-coordinate rel. L2 error %.2g (%.2g raw) over %d coordinates (%d skipped at kinks)", gname, rel, raw, len(idx)-kinks, kinks)
		}
	}
}

// randTensor fills a tensor with uniform values in [lo, hi).
func randTensor(rng *rand.Rand, lo, hi float32, shape ...int64) *inference.Tensor {
	t := inference.NewTensor(shape...)
	for i := range t.Data {
		t.Data[i] = lo + (hi-lo)*rng.Float32()
	}
	return t
}

// weights makes a random initializer scaled like He initialisation so activations stay O(1).
func weights(b *onnx.Builder, rng *rand.Rand, name string, fanIn int, shape ...int64) string {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	v := make([]float32, n)
	s := math.Sqrt(2 / float64(fanIn))
	for i := range v {
		v[i] = float32(rng.NormFloat64() * s)
	}
	return b.Init(name, shape, v)
}

// runModel runs a forward model once.
func runModel(t *testing.T, m *onnx.ModelProto, feeds map[string]*inference.Tensor) map[string]*inference.Tensor {
	t.Helper()
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := testrt.Open(t).NewSession(data)
	if err != nil {
		t.Fatalf("load model: %v", err)
	}
	defer s.Close()
	out, err := s.Run(context.Background(), feeds)
	if err != nil {
		t.Fatalf("run model: %v", err)
	}
	return out
}
