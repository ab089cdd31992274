package autodiff

import (
	"math"
	"runtime"
	"slices"

	"gibbon/inference/onnx"
)

// Blocked masks. ONNX Runtime's CPU provider runs a Conv whose channels are a multiple
// of its block (8 or 16 floats) in a blocked layout (NCHWc) and converts layouts
// around every op its NCHWc transformer does not know. Comparisons and Cast are such
// ops: with the plain mask rule, Mul(g, Cast(Greater(y, 0))), every ReLU after a
// Conv cost a conversion of y and of g to the plain layout and one of the result back,
// as much again as the mask itself. The masks below are made of what the transformer
// keeps blocked: depthwise 1×1 Convs, each a per-channel a·x + b with the Relu or
// HardSigmoid and the Sum that ONNX Runtime fuses into it (a fused Clip costs more),
// then the Mul by the mask. Every value they make is exact in float32 (a power of two
// times an integer below 2^24, or +Inf taken to 1), so the mask is the plain rule's
// bit for bit, at subnormal outputs too (TestBlockedMasks). On MobileNetV2 a ReLU6
// mask went from eight passes over the tensor (three layout conversions) to four.

// blockedChannels: the forms are used when the channels are a multiple of 16, the
// NCHWc block on AVX-512 (on AVX2 it is 8, which divides 16).
const blockedChannels = 16

// blockedArch: ONNX Runtime's NCHWc layout exists on x86-64 only; elsewhere the
// depthwise Convs run in the plain layout and cost about twice the comparisons.
var blockedArch = runtime.GOARCH == "amd64"

// blockedMaskOK reports whether forward output y gets a blocked mask: the CPU forms
// on x86-64, a [N,C,H,W] tensor whose channels are a multiple of the block.
func blockedMaskOK(c *buildCtx, y string) (int64, bool) {
	if c.gpu || !blockedArch {
		return 0, false
	}
	s := c.pr.shape2[y]
	if len(s) != 4 || s[1] <= 0 || s[1]%blockedChannels != 0 {
		return 0, false
	}
	return s[1], true
}

// scaleBlocked is dy times constant k (a scalar or one value per channel) as a
// depthwise 1×1 Conv, which ONNX Runtime keeps blocked (a Mul by a constant is
// converted to the plain layout and back), when x (the operand whose gradient this
// is) has y's shape and y gets blocked forms. The product is the same rounding of
// the same two floats.
func scaleBlocked(c *buildCtx, dy, y, x, k string) (string, bool) {
	ch, ok := blockedMaskOK(c, y)
	if !ok || !slices.Equal(c.pr.shape2[x], c.pr.shape2[y]) {
		return "", false
	}
	t, ok := c.inits[k]
	if !ok {
		return "", false
	}
	v, err := onnx.TensorValues(t)
	if err != nil {
		return "", false
	}
	dims := t.GetDims()
	w := make([]float32, ch)
	switch {
	case len(v) == 1:
		for i := range w {
			w[i] = float32(v[0])
		}
	case int64(len(v)) == ch && len(dims) >= 3 && len(dims) <= 4 && dims[len(dims)-3] == ch:
		for i := range w {
			w[i] = float32(v[i])
		}
	default:
		return "", false
	}
	return c.e.opA("Conv", []string{dy, c.e.floats([]int64{ch, 1, 1, 1}, w)}, onnx.AttrInt("group", ch)), true
}

// depthwise1x1 is a·x + b on a [N,C,H,W] tensor as a depthwise 1×1 Conv: one
// product, exact when a is a power of two, and one correctly rounded sum.
func (e *emitter) depthwise1x1(x string, channels int64, a, b float32) string {
	w := make([]float32, channels)
	for i := range w {
		w[i] = a
	}
	in := []string{x, e.floats([]int64{channels, 1, 1, 1}, w)}
	if b != 0 {
		bias := make([]float32, channels)
		for i := range bias {
			bias[i] = b
		}
		in = append(in, e.floats([]int64{channels}, bias))
	}
	return e.opA("Conv", in, onnx.AttrInt("group", channels))
}

// saturated is HardSigmoid_{alpha,0}(a·x + b) = min(1, max(0, alpha·(a·x + b))) on a
// [N,C,H,W] tensor: a depthwise 1×1 Conv with the HardSigmoid ONNX Runtime fuses
// into it (in the blocked kernel it costs about a third of a pass more than a Relu).
func (e *emitter) saturated(x string, channels int64, a, b, alpha float32) string {
	y := e.depthwise1x1(x, channels, a, b)
	return e.opA("HardSigmoid", []string{y}, onnx.AttrFloat("alpha", alpha), onnx.AttrFloat("beta", 0))
}

// positiveMask is [y > 0] for y ≥ 0 (a ReLU's output) as 0/1 floats:
// min(1, 2^74·(2^75·y)). Both products are exact (or +Inf, which min takes to 1),
// and 2^149·y ≥ 1 for every y > 0, the smallest subnormal being 2^-149 (2^149 is
// not a float32, hence the two factors).
func (e *emitter) positiveMask(y string, channels int64) string {
	return e.saturated(y, channels, float32(math.Ldexp(1, 75)), 0, float32(math.Ldexp(1, 74)))
}

// affine is [Relu](a·x + b [+ add]) on a [N,C,H,W] tensor: a depthwise 1×1 Conv,
// with the Add and Relu ONNX Runtime fuses into it.
func (e *emitter) affine(x string, channels int64, a, b float32, add string, relu bool) string {
	y := e.depthwise1x1(x, channels, a, b)
	if add != "" {
		y = e.op("Add", y, add)
	}
	if relu {
		y = e.op("Relu", y)
	}
	return y
}

// boxMask is [0 < y < h] for y in [0, h] (a ReLU6's output, h = 6) as 0/1 floats, for
// a positive normal h: Relu(positiveMask - [y = h]), the Sum fused into the Conv
// that negates [y = h] = Relu((y - t)/d), where t is the float32 below h and d = h - t.
// Every y in [h/2, h] is a multiple of d, so (y - t)/d is exact there: 1 at y = h and
// at most 0 below; t/d is an integer below 2^24.
func (e *emitter) boxMask(y string, channels int64, h float32) (string, bool) {
	t := math.Nextafter32(h, 0)
	d := h - t
	if !(h >= math.SmallestNonzeroFloat32*(1<<23)*2) || h > math.MaxFloat32/2 || !(d > 0) || h/d > 1<<24 {
		return "", false // not a positive normal float32
	}
	atH := e.affine(y, channels, 1/d, -(t / d), "", true)
	return e.affine(atH, channels, -1, 0, e.positiveMask(y, channels), true), true
}

// scalarConst is the value of a one-element float constant (an initializer or a
// Constant node).
func scalarConst(c *buildCtx, name string) (float32, bool) {
	if name == "" {
		return 0, false
	}
	if t, ok := c.inits[name]; ok {
		v, err := onnx.TensorValues(t)
		if err != nil || len(v) != 1 {
			return 0, false
		}
		return float32(v[0]), true
	}
	for _, n := range c.g.Node {
		if n.GetOpType() == "Constant" && len(n.Output) == 1 && n.Output[0] == name {
			v, ok := constantValues(&onnx.GraphProto{Node: []*onnx.NodeProto{n}})[name]
			if !ok || len(v) != 1 {
				return 0, false
			}
			return float32(v[0]), true
		}
	}
	return 0, false
}
