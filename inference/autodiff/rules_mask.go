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
// keeps blocked: depthwise 1×1 Convs, each a per-channel a·x + b with a Relu and a
// Sum that ONNX Runtime fuses into it (a fused Clip would cost a pass of its own),
// and the Mul that applies the mask. Every value they make is exact in float32 (a
// power of two times an integer below 2^24, or a correctly rounded sum whose sign is
// all that is read), so the mask is the plain rule's bit for bit, at subnormal
// outputs too (TestBlockedMasks).

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

// affine is [Relu](a·x + b [+ add]) on a [N,C,H,W] tensor: a depthwise 1×1 Conv,
// with the Add and Relu ONNX Runtime fuses into it.
func (e *emitter) affine(x string, channels int64, a, b float32, add string, relu bool) string {
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
	y := e.opA("Conv", in, onnx.AttrInt("group", channels))
	if add != "" {
		y = e.op("Add", y, add)
	}
	if relu {
		y = e.op("Relu", y)
	}
	return y
}

// zeroIndicator is k·[y = 0] for y ≥ 0, k a power of two up to 2^24: v = 2^75·y
// is exact and at least 2^-74 for y > 0 (the smallest subnormal is 2^-149), so
// k - 2^74·k·v is k at y = 0 and at most 0 elsewhere. (One step cannot do it: 2^149
// is not a float32, and k - 2^a·y rounds to k for tiny y when 2^a·y < 1.)
func (e *emitter) zeroIndicator(y string, channels int64, k float32) string {
	v := e.affine(y, channels, float32(math.Ldexp(1, 75)), 0, "", false)
	return e.affine(v, channels, -float32(math.Ldexp(1, 74))*k, k, "", true)
}

// positiveMask is [y > 0] for y ≥ 0 (a ReLU's output) as 0/1 floats.
func (e *emitter) positiveMask(y string, channels int64) string {
	return e.affine(e.zeroIndicator(y, channels, 1), channels, -1, 1, "", true)
}

// boxMask is [0 < y < h] for y in [0, h] (a ReLU6's output, h = 6) as 0/1 floats, for
// a positive normal h. With d = h minus the float32 below it (t = h - d), every y
// in [h/2, h] is a multiple of d, so (y - t)/d is exact there: 1 at y = h and at most
// 0 below. X = Relu((y - t)/d + 2^24·[y = 0]) is then 0 for 0 < y < h and at least 1
// at y = 0 (t/d < 2^24) and y = h, and the mask is Relu(1 - X).
func (e *emitter) boxMask(y string, channels int64, h float32) (string, bool) {
	t := math.Nextafter32(h, 0)
	d := h - t
	if !(h >= math.SmallestNonzeroFloat32*(1<<23)*2) || h > math.MaxFloat32/2 || !(d > 0) {
		return "", false // not a positive normal float32
	}
	k := float32(1 << 24)
	if t/d >= k {
		return "", false
	}
	z := e.zeroIndicator(y, channels, k)
	x := e.affine(y, channels, 1/d, -(t / d), z, true)
	return e.affine(x, channels, -1, 1, "", true), true
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
