package autodiff_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

// TestBlockedMasks checks the ReLU and ReLU6 (Clip) masks bit for bit in both graph
// forms: the CPU forms compute them with depthwise 1×1 Convs that ONNX Runtime keeps
// in its blocked layout, the GPU forms with comparisons. The gradient of
// sum(seed·Flatten(act(x))) must be seed exactly where the derivative is 1 (0 < y < hi,
// y the output) and 0 elsewhere: at the bounds, beyond them, and at subnormal and
// tiny outputs, which the blocked form reaches only in two scaling steps.
func TestBlockedMasks(t *testing.T) {
	sub := func(k float64) float32 { return float32(k * math.Ldexp(1, -149)) }
	pow := func(e int) float32 { return float32(math.Ldexp(1, e)) }
	special := []float32{0, float32(math.Copysign(0, -1)), sub(1), sub(3), sub(1 << 22), pow(-126), pow(-100),
		pow(-75), pow(-74) * 1.5, 1e-30, -sub(1), -1e-30, -3, 0.1, 0.3, math.Nextafter32(0.3, 0), math.Nextafter32(0.3, 1),
		0.5, 1, math.Nextafter32(1, 0), math.Nextafter32(1, 2), 3, 4, 5.5, 6, math.Nextafter32(6, 0),
		math.Nextafter32(6, 7), 7, 1e30, -1e30}
	type act struct {
		name string
		y    func(b *onnx.Builder, x string) string
		mask func(x float32) bool // derivative 1 at input x
	}
	clip := func(hi float32) act {
		return act{fmt.Sprintf("clip_0_%g", hi), func(b *onnx.Builder, x string) string {
			return b.Op("Clip", []string{x, b.Scalar(0), b.Scalar(hi)})
		}, func(x float32) bool { return x > 0 && x < hi }}
	}
	acts := []act{
		{"relu", func(b *onnx.Builder, x string) string { return b.Op("Relu", []string{x}) }, func(x float32) bool { return x > 0 }},
		{"clip_0_none", func(b *onnx.Builder, x string) string { return b.Op("Clip", []string{x, b.Scalar(0)}) }, func(x float32) bool { return x > 0 }},
		clip(6), clip(1), clip(0.3), clip(pow(-100)),
	}
	const ch, w = 16, 8
	rng := rand.New(rand.NewPCG(3, 4))
	x := inference.NewTensor(2, ch, 1, w)
	for i := range x.Data {
		if i < 2*len(special) {
			x.Data[i] = special[i%len(special)]
		} else {
			x.Data[i] = float32(rng.NormFloat64() * 4)
		}
	}
	seed := inference.NewTensor(2, ch*w)
	for i := range seed.Data {
		seed.Data[i] = float32(rng.NormFloat64())
	}
	for _, target := range []autodiff.Target{autodiff.TargetCPU, autodiff.TargetGPU} {
		for _, a := range acts {
			for _, viaConv := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/conv=%v", target, a.name, viaConv)
				t.Run(name, func(t *testing.T) {
					b := onnx.NewBuilder(a.name)
					in := b.Input("x", -1, ch, 1, w)
					h := in
					if viaConv {
						// an identity 1×1 Conv: y comes out of a Conv, in the blocked
						// layout, as in a network
						id := make([]float32, ch*ch)
						for i := 0; i < ch; i++ {
							id[i*ch+i] = 1
						}
						h = b.Op("Conv", []string{h, b.Init("id", []int64{ch, ch, 1, 1}, id)})
					}
					b.Output("out", b.Op("Flatten", []string{a.y(b, h)}))
					opts := autodiff.Options{Loss: autodiff.LogitSeed, Target: target}
					gm, err := autodiff.Build(testrt.Open(t), b.Model(), opts)
					if err != nil {
						t.Fatal(err)
					}
					compares := 0
					for _, n := range gm.Graph.Node {
						switch n.GetOpType() {
						case "Greater", "Less", "And", "Cast":
							compares++
						}
					}
					if (compares == 0) != (target == autodiff.TargetCPU && runtime.GOARCH == "amd64") {
						t.Fatalf("%d comparison nodes in the %s forms", compares, target)
					}
					s := gradSession(t, b.Model(), opts)
					out, err := s.Run(context.Background(), map[string]*inference.Tensor{"x": x, autodiff.InputLogitSeed: seed})
					if err != nil {
						t.Fatal(err)
					}
					got := out[autodiff.OutputInputGrad].Data
					bad := 0
					for i, xv := range x.Data {
						want := float32(0)
						if a.mask(xv) {
							want = seed.Data[i]
						}
						if math.Float32bits(got[i]) != math.Float32bits(want) && !(got[i] == 0 && want == 0) {
							if bad++; bad <= 5 {
								t.Errorf("x = %g (%#x): gradient %g, want %g", xv, math.Float32bits(xv), got[i], want)
							}
						}
					}
				})
			}
		}
	}
}

// TestBlockedScale checks the gradient of a Mul by a constant, a scalar or one value
// per channel, which the CPU forms compute as a depthwise 1×1 Conv: it must be the
// same product, seed·k, bit for bit.
func TestBlockedScale(t *testing.T) {
	const ch, w = 16, 8
	rng := rand.New(rand.NewPCG(5, 6))
	per := make([]float32, ch)
	for i := range per {
		per[i] = float32(rng.NormFloat64())
	}
	x := inference.NewTensor(2, ch, 1, w)
	seed := inference.NewTensor(2, ch*w)
	for i := range x.Data {
		x.Data[i], seed.Data[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	for _, target := range []autodiff.Target{autodiff.TargetCPU, autodiff.TargetGPU} {
		for _, perChannel := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/per_channel=%v", target, perChannel), func(t *testing.T) {
				b := onnx.NewBuilder("scale")
				h := b.Input("x", -1, ch, 1, w)
				k := func(c int) float32 { return 0.2 }
				var kt string
				if perChannel {
					k = func(c int) float32 { return per[c] }
					kt = b.Const([]int64{ch, 1, 1}, per...)
				} else {
					kt = b.Scalar(0.2)
				}
				b.Output("out", b.Op("Flatten", []string{b.Op("Mul", []string{kt, h})}))
				s := gradSession(t, b.Model(), autodiff.Options{Loss: autodiff.LogitSeed, Target: target})
				out, err := s.Run(context.Background(), map[string]*inference.Tensor{"x": x, autodiff.InputLogitSeed: seed})
				if err != nil {
					t.Fatal(err)
				}
				got := out[autodiff.OutputInputGrad].Data
				for i := range got {
					want := seed.Data[i] * k((i/w)%ch)
					if math.Float32bits(got[i]) != math.Float32bits(want) {
						t.Fatalf("element %d: gradient %g, want %g", i, got[i], want)
					}
				}
			})
		}
	}
}
