package attack_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

func relErr(got []float32, want []float64) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - want[i]
		num += d * d
		den += want[i] * want[i]
	}
	return math.Sqrt(num / math.Max(den, 1e-30))
}

// The adapter's gradients are checked against the closed form of a linear model:
// d/dx CE = Wᵀ(softmax(z) − y), d/dx (seed·z) = Wᵀ seed.
func TestONNXModelGradientOfLinearModel(t *testing.T) {
	ctx := context.Background()
	spec := newLinear(1, []int64{1, 6, 5}, 4)
	m := newModel(t, spec.model(), attack.ModelOptions{Name: "linear"})
	if m.Classes() != 4 {
		t.Fatalf("classes %d, want 4", m.Classes())
	}
	x := gridImages(2, 3, 1, 6, 5)
	d := 30
	w := inference.NewTensor(3, 4)
	seed := inference.NewTensor(3, 4)
	for i := range 3 {
		w.Data[i*4+i] = 1
		seed.Data[i*4+(i+1)%4] = 1
		seed.Data[i*4+i] = -0.5
	}
	ce, err := m.Gradient(ctx, x, attack.CrossEntropy, w)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := m.Gradient(ctx, x, attack.LogitSeed, seed)
	if err != nil {
		t.Fatal(err)
	}
	pred, err := m.Predict(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		z := spec.logits(x.Data[i*d : (i+1)*d])
		if e := relErr(pred.Data[i*4:(i+1)*4], z); e > 1e-5 {
			t.Fatalf("image %d: Predict %v, want %v", i, pred.Data[i*4:(i+1)*4], z)
		}
		if e := relErr(ce.Logits.Data[i*4:(i+1)*4], z); e > 1e-5 {
			t.Fatalf("image %d: gradient graph logits %v, want %v", i, ce.Logits.Data[i*4:(i+1)*4], z)
		}
		var mx, sum float64
		mx = math.Inf(-1)
		for _, v := range z {
			mx = math.Max(mx, v)
		}
		p := make([]float64, 4)
		for c, v := range z {
			p[c] = math.Exp(v - mx)
			sum += p[c]
		}
		wantCE := make([]float64, d)
		wantSeed := make([]float64, d)
		for c := range 4 {
			p[c] /= sum
			r := p[c] - float64(w.Data[i*4+c])
			for j := range d {
				wantCE[j] += float64(spec.w[c*d+j]) * r
				wantSeed[j] += float64(spec.w[c*d+j]) * float64(seed.Data[i*4+c])
			}
		}
		if e := relErr(ce.Input.Data[i*d:(i+1)*d], wantCE); e > 1e-4 {
			t.Fatalf("image %d: CE gradient relative error %g", i, e)
		}
		if e := relErr(sg.Input.Data[i*d:(i+1)*d], wantSeed); e > 1e-5 {
			t.Fatalf("image %d: seed gradient relative error %g", i, e)
		}
		wantLoss := -math.Log(p[i])
		if math.Abs(float64(ce.Loss[i])-wantLoss) > 1e-4*math.Max(1, wantLoss) {
			t.Fatalf("image %d: CE loss %v, want %v", i, ce.Loss[i], wantLoss)
		}
	}
	if f, b := m.Passes(); f != 9 || b != 6 {
		t.Fatalf("passes counted %d forward %d backward, want 9 and 6", f, b)
	}
}

// A graph ending in Softmax is attacked on its logits, and a manifest's mean/std are
// folded in front so attacks work on pixels.
func TestONNXModelCutsSoftmaxAndFoldsNormalization(t *testing.T) {
	ctx := context.Background()
	probs := newModel(t, buildCNN(cnnSpec{seed: 5, size: 12, c1: 3, c2: 4, softmax: true}), attack.ModelOptions{Name: "probs", Mean: []float64{0.1307}, Std: []float64{0.3081}})
	raw := newModel(t, buildCNN(cnnSpec{seed: 5, size: 12, c1: 3, c2: 4}), attack.ModelOptions{Name: "raw"})
	x := gridImages(3, 4, 1, 12, 12)
	norm := x.Clone()
	for i, v := range norm.Data {
		norm.Data[i] = (v - 0.1307) / 0.3081
	}
	got, err := probs.Predict(ctx, x)
	if err != nil {
		t.Fatal(err)
	}
	want, err := raw.Predict(ctx, norm)
	if err != nil {
		t.Fatal(err)
	}
	var sum float32
	for i := range want.Data {
		if math.Abs(float64(got.Data[i]-want.Data[i])) > 1e-4*math.Max(1, math.Abs(float64(want.Data[i]))) {
			t.Fatalf("logit %d: %v, want %v", i, got.Data[i], want.Data[i])
		}
		sum += got.Data[i]
	}
	if math.Abs(float64(sum)-4) < 1e-3 {
		t.Fatalf("outputs sum to 1 per image: the Softmax was not cut (%v)", got.Data)
	}
	w := inference.NewTensor(4, 10)
	for i := range 4 {
		w.Data[i*10+i] = 1
	}
	g, err := probs.Gradient(ctx, x, attack.CrossEntropy, w)
	if err != nil {
		t.Fatal(err)
	}
	gr, err := raw.Gradient(ctx, norm, attack.CrossEntropy, w)
	if err != nil {
		t.Fatal(err)
	}
	// Chain rule through (x − mean)/std: the pixel gradient is the normalised one / std.
	for i := range g.Input.Data {
		want := float64(gr.Input.Data[i]) / 0.3081
		if math.Abs(float64(g.Input.Data[i])-want) > 1e-3*math.Max(1e-3, math.Abs(want)) {
			t.Fatalf("gradient %d: %v, want %v", i, g.Input.Data[i], want)
		}
	}
}

func TestEnsembleAveragesLogits(t *testing.T) {
	ctx := context.Background()
	a, b, c := shared(t)
	ma := newModel(t, a, attack.ModelOptions{Name: "a"})
	mb := newModel(t, b, attack.ModelOptions{Name: "b"})
	mc := newModel(t, c, attack.ModelOptions{Name: "c", Mean: []float64{0.5}, Std: []float64{0.5}})
	ens, err := attack.NewEnsemble(ctx, testrt.Open(t), "a+b+c", []*attack.ONNXModel{ma, mb, mc})
	if err != nil {
		t.Fatal(err)
	}
	defer ens.Close()
	x := gridImages(4, 5, 1, 28, 28)
	seed := inference.NewTensor(5, 10)
	for i := range 5 {
		seed.Data[i*10+i] = 1
		seed.Data[i*10+9-i] = -1
	}
	got, err := ens.Gradient(ctx, x, attack.LogitSeed, seed)
	if err != nil {
		t.Fatal(err)
	}
	wantZ := make([]float64, 50)
	wantG := make([]float64, len(x.Data))
	for _, m := range []*attack.ONNXModel{ma, mb, mc} {
		g, err := m.Gradient(ctx, x, attack.LogitSeed, seed)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range g.Logits.Data {
			wantZ[i] += float64(v) / 3
		}
		for i, v := range g.Input.Data {
			wantG[i] += float64(v) / 3
		}
	}
	if e := relErr(got.Logits.Data, wantZ); e > 1e-5 {
		t.Fatalf("ensemble logits are not the members' mean (relative error %g)", e)
	}
	if e := relErr(got.Input.Data, wantG); e > 1e-4 {
		t.Fatalf("ensemble gradient is not the members' mean (relative error %g)", e)
	}
	small := newModel(t, buildCNN(cnnSpec{seed: 9, size: 12, c1: 2, c2: 2}), attack.ModelOptions{Name: "small"})
	if _, err := attack.NewEnsemble(ctx, testrt.Open(t), "bad", []*attack.ONNXModel{ma, small}); err == nil || !strings.Contains(err.Error(), "takes images") {
		t.Fatalf("ensemble of different input sizes: %v", err)
	}
}

func TestONNXModelRejectsBadInputs(t *testing.T) {
	ctx := context.Background()
	rt := testrt.Open(t)
	a, _, _ := shared(t)
	m := newModel(t, a, attack.ModelOptions{Name: "a"})
	for name, x := range map[string]*inference.Tensor{
		"wrong size":  inference.NewTensor(1, 1, 27, 28),
		"wrong rank":  inference.NewTensor(1, 784),
		"short data":  {Shape: []int64{1, 1, 28, 28}, Data: make([]float32, 10)},
		"empty batch": inference.NewTensor(0, 1, 28, 28),
		"nil":         nil,
	} {
		if _, err := m.Predict(ctx, x); err == nil {
			t.Errorf("Predict accepted %s", name)
		}
	}
	x := gridImages(1, 2, 1, 28, 28)
	if _, err := m.Gradient(ctx, x, attack.CrossEntropy, inference.NewTensor(2, 9)); err == nil {
		t.Error("Gradient accepted 9 label weights for 10 classes")
	}
	if _, err := m.Gradient(ctx, x, attack.LossKind(7), inference.NewTensor(2, 10)); err == nil {
		t.Error("Gradient accepted an unknown loss kind")
	}
	// Graphs the adapter cannot use get a clear error.
	b := onnx.NewBuilder("two-inputs")
	p := b.Input("p", -1, 3)
	q := b.Input("q", -1, 3)
	b.Output("y", b.Op("Add", []string{p, q}), -1, 3)
	if _, err := attack.NewONNXModel(ctx, rt, b.Model(), attack.ModelOptions{Name: "two"}); err == nil || !strings.Contains(err.Error(), "one image input") {
		t.Errorf("two-input graph: %v", err)
	}
	b = onnx.NewBuilder("dynamic")
	d := b.Input("x", -1, -1)
	b.Output("y", b.Op("Relu", []string{d}), -1, -1)
	if _, err := attack.NewONNXModel(ctx, rt, b.Model(), attack.ModelOptions{Name: "dyn"}); err == nil || !strings.Contains(err.Error(), "dynamic") {
		t.Errorf("dynamic-size graph: %v", err)
	}
	if _, err := attack.NewONNXModel(ctx, rt, a, attack.ModelOptions{Name: "a", Mean: []float64{1, 2}}); err == nil {
		t.Error("two means for one channel accepted")
	}
	if _, err := attack.NewONNXModel(ctx, rt, a, attack.ModelOptions{Name: "a", Std: []float64{0}}); err == nil {
		t.Error("zero std accepted")
	}
}
