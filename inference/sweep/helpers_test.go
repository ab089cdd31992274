package sweep_test

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/sweep"
	"gibbon/internal/testrt"
)

// Test models are trained here, in plain Go, on the first MNIST training images:
// softmax regressions ("lin-a" on images 0–2999, "lin-b" on 3000–5999) and a
// 784-32-10 ReLU network ("mlp"). Each takes well under a second and reaches about
// 85–90 % on the test set, so attacks have real decision boundaries to cross.

var (
	dataOnce    sync.Once
	train, test *mnist.Set
	dataErr     error

	modelsOnce sync.Once
	protos     map[string]*onnx.ModelProto
)

func data(t testing.TB) (*mnist.Set, *mnist.Set) {
	t.Helper()
	dataOnce.Do(func() { train, test, dataErr = mnist.Load(context.Background()) })
	if dataErr != nil {
		t.Fatalf("MNIST: %v", dataErr)
	}
	return train, test
}

// testImages is the first n test images as [n,1,28,28] with their labels.
func testImages(t testing.TB, n int) (*inference.Tensor, []int) {
	t.Helper()
	_, te := data(t)
	x := inference.NewTensor(int64(n), 1, 28, 28)
	copy(x.Data, te.Images[:n*mnist.Pixels])
	labels := make([]int, n)
	for i := range labels {
		labels[i] = int(te.Labels[i])
	}
	return x, labels
}

// trainLinear fits softmax regression with minibatch SGD.
func trainLinear(s *mnist.Set, from, to int, seed uint64) (w, b []float32) {
	const d, c = mnist.Pixels, 10
	w, b = make([]float32, c*d), make([]float32, c)
	rng := rand.New(rand.NewPCG(seed, 5))
	idx := make([]int, to-from)
	for i := range idx {
		idx[i] = from + i
	}
	z := make([]float64, c)
	for range 4 {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		for _, i := range idx {
			x := s.Image(i)
			for k := range c {
				acc := float64(b[k])
				for j, v := range x {
					acc += float64(w[k*d+j]) * float64(v)
				}
				z[k] = acc
			}
			softmax(z)
			z[s.Labels[i]] -= 1
			for k := range c {
				g := float32(0.05 * z[k])
				b[k] -= g
				row := w[k*d : (k+1)*d]
				for j, v := range x {
					row[j] -= g * v
				}
			}
		}
	}
	return w, b
}

// trainMLP fits 784-h-10 with ReLU by SGD.
func trainMLP(s *mnist.Set, from, to, h int, seed uint64) (w1, b1, w2, b2 []float32) {
	const d, c = mnist.Pixels, 10
	rng := rand.New(rand.NewPCG(seed, 6))
	w1, b1, w2, b2 = make([]float32, h*d), make([]float32, h), make([]float32, c*h), make([]float32, c)
	for i := range w1 {
		w1[i] = float32(rng.NormFloat64() * math.Sqrt(2.0/d))
	}
	for i := range w2 {
		w2[i] = float32(rng.NormFloat64() * math.Sqrt(2.0/float64(h)))
	}
	idx := make([]int, to-from)
	for i := range idx {
		idx[i] = from + i
	}
	a := make([]float32, h)
	da := make([]float32, h)
	z := make([]float64, c)
	const lr = 0.02
	for range 4 {
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		for _, i := range idx {
			x := s.Image(i)
			for u := range h {
				acc := b1[u]
				row := w1[u*d : (u+1)*d]
				for j, v := range x {
					acc += row[j] * v
				}
				a[u] = max(acc, 0)
			}
			for k := range c {
				acc := float64(b2[k])
				for u := range h {
					acc += float64(w2[k*h+u] * a[u])
				}
				z[k] = acc
			}
			softmax(z)
			z[s.Labels[i]] -= 1
			clear(da)
			for k := range c {
				g := float32(z[k])
				b2[k] -= lr * g
				for u := range h {
					da[u] += g * w2[k*h+u]
					w2[k*h+u] -= lr * g * a[u]
				}
			}
			for u := range h {
				if a[u] <= 0 {
					continue
				}
				g := da[u]
				b1[u] -= lr * g
				row := w1[u*d : (u+1)*d]
				for j, v := range x {
					row[j] -= lr * g * v
				}
			}
		}
	}
	return w1, b1, w2, b2
}

func softmax(z []float64) {
	m := math.Inf(-1)
	for _, v := range z {
		m = math.Max(m, v)
	}
	var s float64
	for i, v := range z {
		z[i] = math.Exp(v - m)
		s += z[i]
	}
	for i := range z {
		z[i] /= s
	}
}

func linearProto(name string, w, b []float32) *onnx.ModelProto {
	bd := onnx.NewBuilder(name)
	x := bd.Input("image", -1, 1, 28, 28)
	h := bd.Op("Flatten", []string{x}, onnx.AttrInt("axis", 1))
	z := bd.Op("Gemm", []string{h, bd.Init("w", []int64{10, mnist.Pixels}, w), bd.Init("b", []int64{10}, b)}, onnx.AttrInt("transB", 1))
	bd.Output("logits", z, -1, 10)
	return bd.Model()
}

func mlpProto(name string, w1, b1, w2, b2 []float32) *onnx.ModelProto {
	h := int64(len(b1))
	bd := onnx.NewBuilder(name)
	x := bd.Input("image", -1, 1, 28, 28)
	f := bd.Op("Flatten", []string{x}, onnx.AttrInt("axis", 1))
	a := bd.Op("Relu", []string{bd.Op("Gemm", []string{f, bd.Init("w1", []int64{h, mnist.Pixels}, w1), bd.Init("b1", []int64{h}, b1)}, onnx.AttrInt("transB", 1))})
	z := bd.Op("Gemm", []string{a, bd.Init("w2", []int64{10, h}, w2), bd.Init("b2", []int64{10}, b2)}, onnx.AttrInt("transB", 1))
	bd.Output("logits", z, -1, 10)
	return bd.Model()
}

// model adapts one of the trained test models (trained once per test binary).
func model(t testing.TB, name string) attack.Model {
	t.Helper()
	modelsOnce.Do(func() {
		tr, _ := data(t)
		protos = map[string]*onnx.ModelProto{}
		w, b := trainLinear(tr, 0, 3000, 1)
		protos["lin-a"] = linearProto("lin-a", w, b)
		w, b = trainLinear(tr, 3000, 6000, 2)
		protos["lin-b"] = linearProto("lin-b", w, b)
		w1, b1, w2, b2 := trainMLP(tr, 0, 4000, 32, 3)
		protos["mlp"] = mlpProto("mlp", w1, b1, w2, b2)
	})
	p := protos[name]
	if p == nil {
		t.Fatalf("no test model %q", name)
	}
	m, err := attack.NewONNXModel(context.Background(), testrt.Open(t), p, attack.ModelOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return attack.Model{Name: name, Net: m}
}

var mnistFormat = defense.Format{Layout: "NCHW", Range: [2]float32{0, 1}, Color: "gray"}

func defenceOf(t testing.TB, m attack.Model, kind string, param int) sweep.Defence {
	t.Helper()
	d, err := sweep.NewDefence(m.Name, m.Net, kind, param, mnistFormat, 7)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pushNet is a stand-in attack network with heads ε = 0.1, 0.2, 0.3: each pushes
// every pixel away from mid-gray by its ε and clips to [0,1].
func pushNet(t testing.TB) *attack.Network {
	t.Helper()
	b := onnx.NewBuilder("pushnet")
	x := b.Input("image", -1, 1, 28, 28)
	dir := b.Op("Tanh", []string{b.Op("Mul", []string{b.Op("Sub", []string{x, b.Scalar(0.5)}), b.Scalar(20)})})
	var heads []string
	for _, e := range []float32{0.1, 0.2, 0.3} {
		heads = append(heads, b.Op("Clip", []string{b.Op("Add", []string{x, b.Op("Mul", []string{dir, b.Scalar(e)})}), b.Scalar(0), b.Scalar(1)}))
	}
	b.Output("adv", b.Op("Concat", heads, onnx.AttrInt("axis", 1)), -1, 3, 28, 28)
	n, err := attack.NewNetwork(context.Background(), testrt.Open(t), b.Model(), attack.NetworkOptions{Name: "pushnet", Eps: []float64{0.1, 0.2, 0.3}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func pgd(steps int, sur ...attack.Model) *sweep.Attack {
	return &sweep.Attack{Name: "pgd", Config: attack.Config{Method: attack.PGD, Steps: steps}, Surrogates: sur}
}

func seedsFrom(s int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = s + int64(i)
	}
	return out
}

func linf(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}
