package catalog_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/autodiff"
	"gibbon/inference/catalog"
	"gibbon/inference/onnx"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
)

// legacyModel is a model-zoo-style classifier at an old opset, 3xSxS in, 1000 scores out,
// built from the ops the upgrade rewrites: BatchNormalization with spatial, Clip
// with attributes (ReLU6), Pad with attributes, Dropout with a ratio, Squeeze with
// axes, the old Softmax, and Reshape([1,-1]) at a fixed batch of 1.
func legacyModel(opset int64, size int64, nhwc, softmax bool, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	floats := func(n int, scale float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64() * scale)
		}
		return out
	}
	pos := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = 0.5 + r.Float32()
		}
		return out
	}
	b := onnx.NewBuilder("legacy")
	b.SetOpset(opset)
	var x string
	if nhwc {
		x = b.Op("Transpose", []string{b.Input("images:0", 1, size, size, 3)}, onnx.AttrInts("perm", 0, 3, 1, 2))
	} else {
		x = b.Input("data", 1, 3, size, size)
	}
	y := b.Op("Conv", []string{x, b.Init("c1", []int64{8, 3, 3, 3}, floats(216, 0.3))}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1))
	bn := []string{y, b.Init("bn_s", []int64{8}, pos(8)), b.Init("bn_b", []int64{8}, floats(8, 0.1)),
		b.Init("bn_m", []int64{8}, floats(8, 0.1)), b.Init("bn_v", []int64{8}, pos(8))}
	if opset < 9 {
		y = b.Op("BatchNormalization", bn, onnx.AttrInt("spatial", 1))
	} else {
		y = b.Op("BatchNormalization", bn)
	}
	if opset < 11 {
		y = b.Op("Clip", []string{y}, onnx.AttrFloat("min", 0), onnx.AttrFloat("max", 6))
		y = b.Op("Pad", []string{y}, onnx.AttrInts("pads", 0, 0, 1, 1, 0, 0, 1, 1))
	} else {
		y = b.Op("Clip", []string{y, b.Scalar(0), b.Scalar(6)})
		y = b.Op("Pad", []string{y, b.Ints(0, 0, 1, 1, 0, 0, 1, 1)})
	}
	y = b.Op("AveragePool", []string{y}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2))
	y = b.Op("Conv", []string{y, b.Init("c2", []int64{16, 8, 3, 3}, floats(16*8*9, 0.2))}, onnx.AttrInts("pads", 1, 1, 1, 1))
	y = b.Op("GlobalAveragePool", []string{b.Op("Relu", []string{y})})
	if opset < 13 {
		y = b.Op("Squeeze", []string{y}, onnx.AttrInts("axes", 3))
	} else {
		y = b.Op("Squeeze", []string{y, b.Ints(3)})
	}
	y = b.Op("Reshape", []string{y, b.Ints(1, -1)})
	if opset < 12 {
		y = b.Op("Dropout", []string{y}, onnx.AttrFloat("ratio", 0.2))
	}
	y = b.Op("Gemm", []string{y, b.Init("fc", []int64{1000, 16}, floats(16000, 0.5)), b.Init("fc_b", []int64{1000}, floats(1000, 0.1))}, onnx.AttrInt("transB", 1))
	if softmax {
		y = b.Op("Softmax", []string{y}, onnx.AttrInt("axis", 1))
	}
	b.Output("scores", y, 1, 1000)
	return b.Bytes()
}

func contractSized(nhwc bool, size int) inference.InputContract {
	c := contractFor(nhwc)
	c.Height, c.Width = size, size
	return c
}

// gradGraph runs an autodiff graph: the summed cross-entropy, its input gradient and the logits.
type gradGraph struct {
	t     *testing.T
	s     *inference.Session
	input string
	y     *inference.Tensor
}

func (g *gradGraph) run(x *inference.Tensor) (loss float64, grad, logits *inference.Tensor) {
	g.t.Helper()
	out, err := g.s.Run(context.Background(), map[string]*inference.Tensor{g.input: x, autodiff.InputLabelWeights: g.y})
	if err != nil {
		g.t.Fatal(err)
	}
	for _, v := range out[autodiff.OutputLoss].Data {
		loss += float64(v)
	}
	return loss, out[autodiff.OutputInputGrad], out[autodiff.OutputLogits]
}

func axpy(x *inference.Tensor, h float64, u []float64) *inference.Tensor {
	y := x.Clone()
	for i := range y.Data {
		y.Data[i] += float32(h * u[i])
	}
	return y
}

// Pulled models are differentiable: after the upgrade, autodiff builds their gradient
// graph, the graph's logits are what the terminal Softmax (if any) normalises, and
// the input gradient matches central finite differences of the loss, along the
// gradient and along random directions, at batch 2.
func TestUpgradedModelsGradientsMatchFiniteDifferences(t *testing.T) {
	rt := testrt.Open(t)
	const size = 32
	cases := []struct {
		name    string
		opset   int64
		nhwc    bool
		softmax bool
	}{
		{"zoo-opset7-softmax", 7, false, true},
		{"zoo-opset9-logits", 9, false, false},
		{"lite-opset11-nhwc-softmax", 11, true, true},
		{"timm-opset17-logits", 17, false, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			published := legacyModel(c.opset, size, c.nhwc, c.softmax, uint64(i+1))
			if c.opset < 13 {
				old, _ := onnx.Decode(published)
				if _, err := autodiff.Build(rt, old, autodiff.Options{}); err == nil {
					t.Fatal("autodiff accepted an opset below 13: the upgrade would be untested")
				}
			}
			p, err := catalog.Prepare(context.Background(), rt, published, contractSized(c.nhwc, size), 1000)
			if err != nil {
				t.Fatal(err)
			}
			if !p.BatchDynamic || p.OutputsLogits == c.softmax {
				t.Fatalf("prepared: batch dynamic %v, logits %v", p.BatchDynamic, p.OutputsLogits)
			}
			m, err := onnx.Decode(p.Model)
			if err != nil {
				t.Fatal(err)
			}
			gm, err := autodiff.Build(rt, m, autodiff.Options{Input: p.InputName, Loss: autodiff.CrossEntropy})
			if err != nil {
				t.Fatalf("autodiff on the upgraded model: %v", err)
			}
			data, err := onnx.Encode(gm)
			if err != nil {
				t.Fatal(err)
			}
			s, err := rt.NewSession(data)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			r := rand.New(rand.NewPCG(uint64(40+i), 1))
			x := &inference.Tensor{Shape: append([]int64{2}, p.InputShape[1:]...)}
			c1 := contractSized(c.nhwc, size)
			for range 2 {
				x.Data = append(x.Data, sampleImage(r, c1)...)
			}
			y := inference.NewTensor(2, 1000)
			y.Data[17], y.Data[1000+623] = 1, 1
			g := &gradGraph{t: t, s: s, input: p.InputName, y: y}
			loss, grad, logits := g.run(x)

			// The published output is what the graph's logits become (after Softmax).
			want := runModel(t, p.Model, p.InputName, x)
			for row := range 2 {
				z := logits.Data[row*1000 : (row+1)*1000]
				if c.softmax {
					z = softmax(z)
				}
				if d := maxDiff(z, want.Data[row*1000:(row+1)*1000]); d > 1e-5 {
					t.Fatalf("row %d: gradient graph's logits disagree with the model's output by %g", row, d)
				}
			}

			gv := make([]float64, len(grad.Data))
			norm := 0.0
			for k, v := range grad.Data {
				gv[k] = float64(v)
				norm += float64(v) * float64(v)
			}
			norm = math.Sqrt(norm)
			if norm == 0 || math.IsNaN(norm) {
				t.Fatalf("input gradient norm %g", norm)
			}
			u := make([]float64, len(gv))
			for k := range gv {
				u[k] = gv[k] / norm
			}
			directional := func(h float64, dir []float64) float64 {
				lp, _, _ := g.run(axpy(x, h, dir))
				lm, _, _ := g.run(axpy(x, -h, dir))
				return (lp - lm) / (2 * h)
			}
			// Along the gradient the derivative is |g|. The summed loss (~14 over 1000
			// classes) is float32, so a step of h carries ~4·1.2e-7·14/2h of rounding:
			// 3e-4 at h = 1e-2, about 1e-3 of |g| here; each coordinate of the unit
			// direction moves ~1e-4, so kinks are rarely crossed. A crossed kink can
			// spoil a difference (never fix a wrong gradient), so smaller steps may retry.
			ok := false
			var fd float64
			for _, h := range []float64{1e-2, 3e-3, 1e-3} {
				fd = directional(h, u)
				if math.Abs(fd-norm) <= 2e-3*norm {
					ok = true
					break
				}
			}
			if !ok {
				t.Fatalf("d loss along g/|g| = %g by finite differences, |g| = %g (loss %g)", fd, norm, loss)
			}
			for k := range 3 {
				v := make([]float64, len(gv))
				vn := 0.0
				for j := range v {
					v[j] = r.NormFloat64()
					vn += v[j] * v[j]
				}
				dot := 0.0
				for j := range v {
					v[j] /= math.Sqrt(vn)
					dot += v[j] * gv[j]
				}
				if fd := directional(1e-2, v); math.Abs(fd-dot) > 3e-3*norm {
					t.Errorf("random direction %d: finite differences %g, g.v = %g (|g| %g)", k, fd, dot, norm)
				}
			}
		})
	}
}

func sampleImage(r *rand.Rand, c inference.InputContract) []float32 {
	n := c.Channels * c.Height * c.Width
	out := make([]float32, n)
	for i := range out {
		ch := i / (c.Height * c.Width)
		if c.Layout == "NHWC" {
			ch = i % c.Channels
		}
		v := c.Range[0] + r.Float64()*(c.Range[1]-c.Range[0])
		out[i] = float32((v - c.Mean[ch]) / c.Std[ch])
	}
	return out
}

func softmax(z []float32) []float32 {
	m := z[0]
	for _, v := range z {
		m = max(m, v)
	}
	out := make([]float32, len(z))
	sum := 0.0
	for i, v := range z {
		e := math.Exp(float64(v - m))
		out[i] = float32(e)
		sum += e
	}
	for i := range out {
		out[i] = float32(float64(out[i]) / sum)
	}
	return out
}

// The explorer's path on ImageNet: pull a served model, load it as the attack engine
// does from the models directory, and flip its predictions with PGD inside an L∞
// budget of 8/255 (on its own pixel range), with a second pulled model scored for transfer.
func TestAttackSucceedsOnPulledModels(t *testing.T) {
	z := newZooServer(t)
	dir := t.TempDir()
	opt := options(t, dir)
	rt := testrt.Open(t)
	pulled := map[string]inference.ModelEntry{}
	for _, c := range []struct {
		name  string
		model tinyModel
	}{
		{"surrogate-opset12-softmax", tinyModel{opset: 12, softmax: true, seed: 21}},
		{"lite-opset11-nhwc", tinyModel{opset: 11, softmax: true, nhwc: true, seed: 22}},
		{"timm-opset17", tinyModel{opset: 17, seed: 23}},
	} {
		e := z.entryFor(c.name, "/"+c.name+".onnx", c.model.build(), c.model.nhwc)
		res, err := catalog.Pull(context.Background(), e, opt)
		if err != nil {
			t.Fatal(err)
		}
		pulled[c.name] = res.Entry
	}
	// The app's zoo serves the pulled folder, each model loaded once.
	served := zoo.Open(rt, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	defer served.Close()
	load := func(t *testing.T, name string) *attack.ONNXModel {
		t.Helper()
		m, err := served.Get(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		return m.Net()
	}
	for name, e := range pulled {
		t.Run(name, func(t *testing.T) {
			net := load(t, name)
			lo, hi := float32(e.Input.Range[0]), float32(e.Input.Range[1])
			r := rand.New(rand.NewPCG(77, 5))
			imgs := inference.NewTensor(append([]int64{3}, e.Input.Shape()[1:]...)...)
			for i := range imgs.Data {
				imgs.Data[i] = lo + (hi-lo)*r.Float32()
			}
			cfg := attack.Config{Method: attack.PGD, Eps: 8.0 / 255 * (hi - lo), Range: [2]float32{lo, hi},
				Steps: 10, Layout: e.Input.Layout, Seed: 3}
			var others []attack.Model
			for other, oe := range pulled {
				if other != name && oe.Input.Layout == e.Input.Layout && oe.Input.Range == e.Input.Range {
					others = append(others, attack.Model{Name: other, Net: load(t, other)})
				}
			}
			res, err := attack.Run(context.Background(), cfg, attack.Request{Images: imgs,
				Surrogates: []attack.Model{{Name: name, Net: net}}, Others: others}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if sr := res.Models[0].SuccessRate; sr < 1 {
				t.Fatalf("PGD-10 at 8/255 fooled %s on %.0f%% of the images", name, 100*sr)
			}
			if res.LinfMax > cfg.Eps*1.0001 {
				t.Fatalf("L∞ %g exceeds the budget %g", res.LinfMax, cfg.Eps)
			}
			t.Logf("%s: success %.0f%%, L∞ %.4g on [%g, %g], %s", name, 100*res.Models[0].SuccessRate, res.LinfMax, lo, hi,
				strings.Join(modelRates(res), ", "))
		})
	}
}

func modelRates(res *attack.Result) []string {
	var out []string
	for _, m := range res.Models[1:] {
		out = append(out, fmt.Sprintf("%s transfer %.0f%%", m.Name, 100*m.SuccessRate))
	}
	return out
}
