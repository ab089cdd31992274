package autodiff

import (
	"fmt"
	"slices"

	"gibbon/inference/onnx"
)

// convGeom is a convolution's per-spatial-axis geometry with padding resolved.
type convGeom struct {
	k, s, d  []int64 // kernel, stride, dilation
	pb, pe   []int64 // begin and end pads
	group    int64
	in, out  []int64 // spatial sizes of X and Y
	rem      []int64 // forward Conv: input rows past the last window, (in+pb+pe-kd) mod s
	channels int64
}

func defaults(v []int64, n int, def int64) []int64 {
	if len(v) == n {
		return v
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = def
	}
	return out
}

func checkConv(c *buildCtx, n *onnx.NodeProto) error {
	if len(n.Input) < 2 {
		return fmt.Errorf("Conv without weights")
	}
	return nil
}

// convGeometry resolves a Conv's attributes the way ONNX Runtime does (auto_pad
// included) and checks the result against the probed output shape.
func convGeometry(c *buildCtx, n *onnx.NodeProto) (convGeom, error) {
	xs, ws, ys := c.pr.shape2[n.Input[0]], c.pr.shape2[n.Input[1]], c.pr.shape2[n.Output[0]]
	r := len(xs) - 2
	if r < 1 || len(ws) != r+2 || len(ys) != r+2 {
		return convGeom{}, fmt.Errorf("unexpected shapes X %v W %v Y %v", xs, ws, ys)
	}
	g := convGeom{k: ws[2:], in: xs[2:], out: ys[2:], group: attrInt(n, "group", 1), channels: xs[1]}
	g.s = defaults(attrInts(n, "strides"), r, 1)
	g.d = defaults(attrInts(n, "dilations"), r, 1)
	extent := make([]int64, r)
	for i := range extent {
		extent[i] = (g.k[i]-1)*g.d[i] + 1
	}
	var err error
	if g.pb, g.pe, err = resolvePads(n, g.in, g.s, extent); err != nil {
		return convGeom{}, err
	}
	g.rem = make([]int64, r)
	for i := 0; i < r; i++ {
		span := g.in[i] + g.pb[i] + g.pe[i] - extent[i]
		if g.pb[i] < 0 || g.pe[i] < 0 || span < 0 || span/g.s[i]+1 != g.out[i] {
			return convGeom{}, fmt.Errorf("cannot reconcile padding %v/%v with shapes X %v Y %v", g.pb, g.pe, xs, ys)
		}
		g.rem[i] = span % g.s[i]
	}
	return g, nil
}

// resolvePads gives a Conv's or pool's begin and end pads per spatial axis, resolving
// auto_pad the way ONNX Runtime does: extent is each axis's window span ((k−1)·d + 1).
func resolvePads(n *onnx.NodeProto, in, strides, extent []int64) (pb, pe []int64, err error) {
	r := len(in)
	pads := defaults(attrInts(n, "pads"), 2*r, 0)
	pb, pe = append([]int64(nil), pads[:r]...), append([]int64(nil), pads[r:]...)
	switch ap := attrString(n, "auto_pad", "NOTSET"); ap {
	case "NOTSET":
	case "VALID":
		for i := range pb {
			pb[i], pe[i] = 0, 0
		}
	case "SAME_UPPER", "SAME_LOWER":
		for i := range r {
			target := (in[i] + strides[i] - 1) / strides[i]
			need := max(0, (target-1)*strides[i]+extent[i]-in[i])
			if ap == "SAME_LOWER" {
				pb[i] = (need + 1) / 2
			} else {
				pb[i] = need / 2
			}
			pe[i] = need - pb[i]
		}
	default:
		return nil, nil, fmt.Errorf("unknown auto_pad %q", ap)
	}
	return pb, pe, nil
}

func gradConv(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	dy := dys[0]
	x, w := n.Input[0], n.Input[1]
	g, err := convGeometry(c, n)
	if err != nil {
		return nil, err
	}
	r := len(g.k)
	ws := c.pr.shape2[w]
	out := make([]string, len(need))
	if need[0] {
		stride1, small := true, true
		for i := 0; i < r; i++ {
			kd := (g.k[i]-1)*g.d[i] + 1
			stride1 = stride1 && g.s[i] == 1
			small = small && g.pb[i] <= kd-1 && g.pe[i] <= kd-1
		}
		var up string
		var upEnd []int64
		if !stride1 && !c.gpu && g.group == ws[0] && ws[1] == 1 {
			up, upEnd = zeroInsert(c, dy, g)
		}
		if (stride1 && small) || up != "" {
			// A "full" correlation with the flipped, in/out-swapped kernel: on CPU this
			// is much faster than ConvTranspose. A strided depthwise Conv's gradient is
			// the same correlation over dy with stride-1 zeros inserted (ConvTranspose
			// runs one small product per channel there).
			in, pads := dy, make([]int64, 2*r)
			for i := 0; i < r; i++ {
				kd := (g.k[i]-1)*g.d[i] + 1
				pads[i], pads[i+r] = kd-1-g.pb[i], kd-1-g.pe[i]
			}
			if up != "" {
				in = up
				copy(pads[r:], upEnd)
			}
			out[0] = e.opA("Conv", []string{in, flippedWeights(c, w, g)}, onnx.AttrInts("pads", pads...),
				onnx.AttrInts("dilations", g.d...), onnx.AttrInt("group", g.group))
		} else {
			gy, gw := dy, w
			if c.gpu && g.group == 1 && ws[1] == 1 && ws[0]%2 == 1 && ws[0] >= 5 {
				// ORT 1.24's WebGPU ConvTranspose with one output channel returns wrong
				// values for an odd number of input channels from 5 on (seen on
				// lavapipe): one zero channel more in dy and w makes it even.
				pads := make([]int64, 2*(r+2))
				pads[r+3] = 1
				gy = e.op("Pad", dy, e.ints(pads...))
				pads[r+3], pads[r+2] = 0, 1
				gw = e.op("Pad", w, e.ints(pads...))
			}
			out[0] = e.opA("ConvTranspose", []string{gy, gw},
				onnx.AttrInts("strides", g.s...), onnx.AttrInts("dilations", g.d...),
				onnx.AttrInts("pads", append(append([]int64(nil), g.pb...), g.pe...)...),
				onnx.AttrInts("output_padding", g.rem...), onnx.AttrInt("group", g.group))
		}
	}
	if need[1] {
		// dW[m,c,k] = sum_{n,o} dY[n,m,o] X[n,c,o*s+k*d]: a Conv of X (channels and batch
		// swapped, grouped) with dY as the kernel, stride = dilation and dilation = stride.
		spatial := seq(2, int64(r+2))
		cg := ws[1]
		var xt string
		if g.group == 1 {
			xt = e.transpose(x, append([]int64{1, 0}, spatial...)...)
		} else {
			xt = e.op("Reshape", x, e.ints(append([]int64{-1, g.group, cg}, g.in...)...))
			xt = e.transpose(xt, append([]int64{2, 1, 0}, seq(3, int64(r+3))...)...)
			xt = e.op("Reshape", xt, e.ints(append([]int64{cg, -1}, g.in...)...))
		}
		dyt := e.transpose(dy, append([]int64{1, 0}, spatial...)...)
		dw := e.opA("Conv", []string{xt, dyt}, onnx.AttrInts("strides", g.d...), onnx.AttrInts("dilations", g.s...),
			onnx.AttrInts("pads", append(append([]int64(nil), g.pb...), g.pe...)...), onnx.AttrInt("group", g.group))
		dw = e.sliceTo(dw, spatial, g.k, func(i int) int64 {
			return (g.k[i]-1)*g.d[i]/g.d[i] + g.rem[i]/g.d[i] + 1
		})
		out[1] = e.transpose(dw, append([]int64{1, 0}, spatial...)...)
	}
	if len(need) > 2 && need[2] {
		out[2] = e.reduceSum(dy, append([]int64{0}, seq(2, int64(r+2))...), false)
	}
	return out, nil
}

// flippedWeights is the kernel of a Conv's input gradient as a stride-1 correlation:
// in and out channels swapped (per group), spatial axes reversed.
func flippedWeights(c *buildCtx, w string, g convGeom) string {
	e := c.e
	r := len(g.k)
	ws := c.pr.shape2[w]
	m, cg := ws[0], ws[1]
	wt := w
	if g.group == 1 {
		wt = e.transpose(w, append([]int64{1, 0}, seq(2, int64(r+2))...)...)
	} else if cg != 1 || m != g.group {
		mg := m / g.group
		wt = e.op("Reshape", w, e.ints(append([]int64{g.group, mg, cg}, g.k...)...))
		wt = e.transpose(wt, append([]int64{0, 2, 1}, seq(3, int64(r+3))...)...)
		wt = e.op("Reshape", wt, e.ints(append([]int64{g.group * cg, mg}, g.k...)...))
	}
	starts, ends, axes, steps := make([]int64, r), make([]int64, r), make([]int64, r), make([]int64, r)
	for i := 0; i < r; i++ {
		starts[i], ends[i], axes[i], steps[i] = -1, -int64Max, int64(i+2), -1
	}
	return e.op("Slice", wt, e.ints(starts...), e.ints(ends...), e.ints(axes...), e.ints(steps...))
}

// zeroInsert spreads a strided Conv's output gradient dy over the input grid: s-1
// zeros after every element along each spatial axis (stride s), the last element's
// cut to what the correlation needs. It returns the result and the end pads that make
// a stride-1 correlation of it with the flipped kernel the input's size, or "" when
// the forward pads reach past the kernel.
func zeroInsert(c *buildCtx, dy string, g convGeom) (string, []int64) {
	e := c.e
	r := len(g.k)
	end, op := make([]int64, r), make([]int64, r)
	for i := 0; i < r; i++ {
		kd := (g.k[i]-1)*g.d[i] + 1
		tail := kd - 1 - g.pe[i] + g.rem[i] // zeros the correlation needs after the last element
		if g.pb[i] > kd-1 || tail < 0 {
			return "", nil
		}
		op[i] = min(tail, g.s[i]-1)
		end[i] = tail - op[i]
	}
	// A stride-s ConvTranspose with a 1×1 kernel of ones, per channel: exact (each
	// output is 0 or 1·dy) and several times cheaper than Pad or Concat of zeros here.
	ones := make([]float32, g.channels)
	for i := range ones {
		ones[i] = 1
	}
	k1 := e.floats(append([]int64{g.channels, 1}, slices.Repeat([]int64{1}, r)...), ones)
	return e.opA("ConvTranspose", []string{dy, k1}, onnx.AttrInts("strides", g.s...),
		onnx.AttrInts("output_padding", op...), onnx.AttrInt("group", g.channels)), end
}

// sliceTo trims axes to the given sizes when the computed size (got) is larger.
func (e *emitter) sliceTo(x string, axes, sizes []int64, got func(i int) int64) string {
	var ax, ends []int64
	for i := range axes {
		if got(i) > sizes[i] {
			ax = append(ax, axes[i])
			ends = append(ends, sizes[i])
		}
	}
	if len(ax) == 0 {
		return x
	}
	return e.op("Slice", x, e.ints(make([]int64, len(ax))...), e.ints(ends...), e.ints(ax...))
}

func checkConvTranspose(c *buildCtx, n *onnx.NodeProto) error {
	if ap := attrString(n, "auto_pad", "NOTSET"); ap != "NOTSET" {
		return fmt.Errorf("ConvTranspose auto_pad %s is not supported (give explicit pads)", ap)
	}
	if attrInts(n, "output_shape") != nil {
		return fmt.Errorf("ConvTranspose output_shape is not supported (give explicit pads and output_padding)")
	}
	if len(n.Input) < 2 {
		return fmt.Errorf("ConvTranspose without weights")
	}
	return nil
}

func gradConvTranspose(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	dy := dys[0]
	x, w := n.Input[0], n.Input[1]
	xs, ws, ys := c.pr.shape2[x], c.pr.shape2[w], c.pr.shape2[n.Output[0]]
	r := len(xs) - 2
	k := ws[2:]
	s := defaults(attrInts(n, "strides"), r, 1)
	d := defaults(attrInts(n, "dilations"), r, 1)
	op := defaults(attrInts(n, "output_padding"), r, 0)
	pads := defaults(attrInts(n, "pads"), 2*r, 0)
	group := attrInt(n, "group", 1)
	for i := 0; i < r; i++ {
		want := s[i]*(xs[i+2]-1) + op[i] + (k[i]-1)*d[i] + 1 - pads[i] - pads[i+r]
		if want != ys[i+2] {
			return nil, fmt.Errorf("cannot reconcile attributes with shapes X %v W %v Y %v", xs, ws, ys)
		}
	}
	spatial := seq(2, int64(r+2))
	out := make([]string, len(need))
	if need[0] {
		dx := e.opA("Conv", []string{dy, w}, onnx.AttrInts("strides", s...), onnx.AttrInts("dilations", d...),
			onnx.AttrInts("pads", pads...), onnx.AttrInt("group", group))
		out[0] = e.sliceTo(dx, spatial, xs[2:], func(i int) int64 { return xs[i+2] + op[i]/s[i] })
	}
	if need[1] {
		og := ws[1]
		var dyt string
		if group == 1 {
			dyt = e.transpose(dy, append([]int64{1, 0}, spatial...)...)
		} else {
			dyt = e.op("Reshape", dy, e.ints(append([]int64{-1, group, og}, ys[2:]...)...))
			dyt = e.transpose(dyt, append([]int64{2, 1, 0}, seq(3, int64(r+3))...)...)
			dyt = e.op("Reshape", dyt, e.ints(append([]int64{og, -1}, ys[2:]...)...))
		}
		xt := e.transpose(x, append([]int64{1, 0}, spatial...)...)
		dw := e.opA("Conv", []string{dyt, xt}, onnx.AttrInts("strides", d...), onnx.AttrInts("dilations", s...),
			onnx.AttrInts("pads", pads...), onnx.AttrInt("group", group))
		dw = e.sliceTo(dw, spatial, k, func(i int) int64 { return k[i] + op[i]/d[i] })
		out[1] = e.transpose(dw, append([]int64{1, 0}, spatial...)...)
	}
	if len(need) > 2 && need[2] {
		out[2] = e.reduceSum(dy, append([]int64{0}, spatial...), false)
	}
	return out, nil
}
