package autodiff

import (
	"fmt"
	"math"

	"gibbon/inference/onnx"
)

func checkMaxPool(c *buildCtx, n *onnx.NodeProto) error {
	if attrInt(n, "storage_order", 0) != 0 {
		return fmt.Errorf("MaxPool storage_order=1 is not supported")
	}
	return nil
}

// gradMaxPool routes each output's gradient to the input element it took: the forward
// node is given its optional Indices output (flat over N*C*spatial) and the gradient is
// scatter-added (windows may overlap, so add, never overwrite).
func gradMaxPool(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x := n.Input[0]
	if c.gpu && (len(n.Output) < 2 || n.Output[1] == "") {
		if dx, ok := gradMaxPoolMask(c, n, dys[0]); ok {
			return only0(dx, len(need)), nil
		}
	}
	if len(n.Output) < 2 || n.Output[1] == "" {
		idx := e.b.Fresh("maxpool_indices")
		if len(n.Output) < 2 {
			n.Output = append(n.Output, idx)
		} else {
			n.Output[1] = idx
		}
	}
	idx := n.Output[1]
	if nonOverlapping(n) && unpoolFits(c, n) {
		// Every input element is in at most one window, so the indices are distinct:
		// MaxUnpool places each gradient at its index, several times faster than a
		// scatter-add on CPU.
		attrs := []*onnx.AttributeProto{onnx.AttrInts("kernel_shape", attrInts(n, "kernel_shape")...)}
		if s := attrInts(n, "strides"); s != nil {
			attrs = append(attrs, onnx.AttrInts("strides", s...))
		}
		if p := attrInts(n, "pads"); p != nil && attrString(n, "auto_pad", "NOTSET") == "NOTSET" {
			attrs = append(attrs, onnx.AttrInts("pads", p...))
		}
		return only0(e.opA("MaxUnpool", []string{dys[0], idx, e.op("Shape", x)}, attrs...), len(need)), nil
	}
	flat := e.ints(-1)
	zeros := e.zerosLike(e.op("Reshape", x, flat))
	dx := e.opA("ScatterElements", []string{zeros, e.op("Reshape", idx, flat), e.op("Reshape", dys[0], flat)},
		onnx.AttrInt("axis", 0), onnx.AttrString("reduction", "add"))
	return only0(e.reshapeLike(dx, x), len(need)), nil
}

// nonOverlapping reports pooling windows that never share an input element.
func nonOverlapping(n *onnx.NodeProto) bool {
	k := attrInts(n, "kernel_shape")
	s := defaults(attrInts(n, "strides"), len(k), 1)
	for _, d := range attrInts(n, "dilations") {
		if d != 1 {
			return false
		}
	}
	for i := range k {
		if k[i] > s[i] {
			return false
		}
	}
	return true
}

// unpoolFits reports whether MaxUnpool's own idea of the input size, (out-1)*s+k-pads,
// is at most the real one (ceil_mode windows past the end break it).
func unpoolFits(c *buildCtx, n *onnx.NodeProto) bool {
	g, err := poolGeometry(c, n)
	if err != nil {
		return false
	}
	for i := range g.k {
		if (g.out[i]-1)*g.s[i]+g.k[i]-g.pb[i]-g.pe[i] > g.in[i] {
			return false
		}
	}
	return true
}

// poolGeom resolves a pooling node's window geometry (auto_pad as ONNX Runtime does).
type poolGeom struct {
	k, s, pb, pe, in, out []int64
}

func poolGeometry(c *buildCtx, n *onnx.NodeProto) (poolGeom, error) {
	xs, ys := c.pr.shape2[n.Input[0]], c.pr.shape2[n.Output[0]]
	k := attrInts(n, "kernel_shape")
	r := len(k)
	if r == 0 || len(xs) != r+2 || len(ys) != r+2 {
		return poolGeom{}, fmt.Errorf("unexpected kernel %v for shapes X %v Y %v", k, xs, ys)
	}
	g := poolGeom{k: k, s: defaults(attrInts(n, "strides"), r, 1), in: xs[2:], out: ys[2:]}
	var err error
	if g.pb, g.pe, err = resolvePads(n, g.in, g.s, g.k); err != nil {
		return poolGeom{}, err
	}
	return g, nil
}

func checkAveragePool(c *buildCtx, n *onnx.NodeProto) error {
	for _, d := range attrInts(n, "dilations") {
		if d != 1 {
			return fmt.Errorf("AveragePool dilations are not supported")
		}
	}
	return nil
}

// extraAveragePool asks the probe to run the pool on ones shaped like one channel of
// its input: with the number of real (non-pad) elements in each window known, that
// gives ORT's divisor for every output position, whatever count_include_pad and
// ceil_mode make of the windows at the edges.
func extraAveragePool(c *buildCtx, n *onnx.NodeProto, req *probeRequest) {
	if c.avgProbe == nil {
		c.avgProbe = map[*onnx.NodeProto]string{}
	}
	id := len(req.nodes)
	name := func(s string) string { return fmt.Sprintf("__gibbon_probe_%d_%s", id, s) }
	req.inits = append(req.inits,
		onnx.Int64Tensor(name("zeros"), []int64{2}, []int64{0, 0}),
		onnx.Int64Tensor(name("ones"), []int64{2}, []int64{1, 1}),
		onnx.Int64Tensor(name("axes"), []int64{2}, []int64{0, 1}))
	node := func(op string, in []string, out string, attrs ...*onnx.AttributeProto) {
		opType, nn := op, out+"_node"
		req.nodes = append(req.nodes, &onnx.NodeProto{OpType: &opType, Name: &nn, Input: in, Output: []string{out}, Attribute: attrs})
	}
	node("Slice", []string{n.Input[0], name("zeros"), name("ones"), name("axes")}, name("one_channel"))
	node("Shape", []string{name("one_channel")}, name("shape"))
	node("ConstantOfShape", []string{name("shape")}, name("all_ones"),
		onnx.AttrTensor("value", onnx.FloatTensor("", []int64{1}, []float32{1})))
	node("AveragePool", []string{name("all_ones")}, name("pool"), n.Attribute...)
	req.outs = append(req.outs, name("pool"))
	c.avgProbe[n] = name("pool")
}

func numel(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

func gradAveragePool(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	g, err := poolGeometry(c, n)
	if err != nil {
		return nil, err
	}
	r := len(g.k)
	pname, ok := c.avgProbe[n]
	yOnes := c.pr.values[pname]
	if !ok || len(yOnes) != numel(g.out) {
		return nil, fmt.Errorf("the divisor map probe failed")
	}
	// scale[o] = 1/divisor[o] = pool(ones)[o] / (real elements in window o)
	scale := make([]float32, len(yOnes))
	for flat := range yOnes {
		rest, cnt := flat, int64(1)
		for i := r - 1; i >= 0; i-- {
			o := int64(rest) % g.out[i]
			rest /= int(g.out[i])
			start := o*g.s[i] - g.pb[i]
			lo, hi := max(start, 0), min(start+g.k[i], g.in[i])
			cnt *= max(hi-lo, 0)
		}
		if cnt > 0 {
			scale[flat] = float32(yOnes[flat] / float64(cnt))
		}
	}
	sc := e.floats(append([]int64{1, 1}, g.out...), scale)
	ch := c.pr.shape2[n.Input[0]][1]
	kshape := append([]int64{ch, 1}, g.k...)
	ones := make([]float32, numel(kshape))
	for i := range ones {
		ones[i] = 1
	}
	pads := make([]int64, 2*r)
	op := make([]int64, r)
	for i := 0; i < r; i++ {
		l := g.s[i]*(g.out[i]-1) + g.k[i]
		pads[i] = g.pb[i]
		if l-g.pb[i] >= g.in[i] {
			pads[i+r] = l - g.pb[i] - g.in[i]
		} else {
			op[i] = g.in[i] + g.pb[i] - l
			if op[i] >= g.s[i] {
				return nil, fmt.Errorf("cannot map the windows back onto the input (shapes %v -> %v)", g.in, g.out)
			}
		}
	}
	dx := e.opA("ConvTranspose", []string{e.op("Mul", dys[0], sc), e.floats(kshape, ones)},
		onnx.AttrInts("strides", g.s...), onnx.AttrInts("pads", pads...),
		onnx.AttrInts("output_padding", op...), onnx.AttrInt("group", ch))
	return only0(dx, len(need)), nil
}

func gradGlobalAveragePool(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x := n.Input[0]
	hw := int64(1)
	for _, d := range c.pr.shape2[x][2:] {
		hw *= d
	}
	target := e.op("Shape", x)
	if batchFirstOnly(c.pr.batch[x]) {
		// a constant target (Expand broadcasts the batch from dy): no Shape
		target = e.ints(append([]int64{1}, c.pr.shape2[x][1:]...)...)
	}
	dx := e.op("Expand", e.op("Mul", dys[0], e.scalar(float32(1/float64(hw)))), target)
	return only0(dx, len(need)), nil
}

func checkBatchNorm(c *buildCtx, n *onnx.NodeProto) error {
	if attrInt(n, "training_mode", 0) != 0 {
		return fmt.Errorf("BatchNormalization in training mode is not supported")
	}
	for _, o := range n.Output[1:] {
		if o != "" {
			return fmt.Errorf("BatchNormalization with running-statistics outputs is not supported")
		}
	}
	return nil
}

// gradBatchNorm differentiates the inference form y = (x-mean)/sqrt(var+eps)*scale + b.
func gradBatchNorm(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x, scale, mean, vr := n.Input[0], n.Input[1], n.Input[3], n.Input[4]
	dy := dys[0]
	rank := len(c.pr.shape2[x])
	eps := attrFloat(n, "epsilon", 1e-5)
	// per-channel vectors broadcast as [C,1,...,1]
	bshape := append([]int64{-1}, make([]int64, rank-2)...)
	for i := 1; i < len(bshape); i++ {
		bshape[i] = 1
	}
	bc := func(v string) string { return e.op("Reshape", v, e.ints(bshape...)) }
	rstd := e.op("Reciprocal", e.op("Sqrt", e.op("Add", vr, e.scalar(eps))))
	axes := append([]int64{0}, seq(2, int64(rank))...)
	out := make([]string, 5)
	if need[0] {
		out[0] = e.op("Mul", dy, bc(e.op("Mul", scale, rstd)))
	}
	var sumDyXc string
	if need[1] || need[4] {
		sumDyXc = e.reduceSum(e.op("Mul", dy, e.op("Sub", x, bc(mean))), axes, false)
	}
	if need[1] {
		out[1] = e.op("Mul", sumDyXc, rstd)
	}
	var sumDy string
	if need[2] || need[3] {
		sumDy = e.reduceSum(dy, axes, false)
	}
	if need[2] {
		out[2] = sumDy
	}
	if need[3] {
		out[3] = e.op("Neg", e.op("Mul", sumDy, e.op("Mul", scale, rstd)))
	}
	if need[4] {
		// d/dvar of (x-mean)*scale*(var+eps)^-1/2 = -1/2 (x-mean)*scale*rstd^3
		r3 := e.op("Mul", rstd, e.op("Mul", rstd, rstd))
		out[4] = e.op("Mul", e.op("Mul", sumDyXc, scale), e.op("Mul", r3, e.scalar(-0.5)))
	}
	return out, nil
}

var resizeModes = map[string]bool{"half_pixel": true, "pytorch_half_pixel": true, "align_corners": true,
	"asymmetric": true, "tf_half_pixel_for_nn": true}

func checkResize(c *buildCtx, n *onnx.NodeProto) error {
	if m := attrString(n, "mode", "nearest"); m != "nearest" {
		return fmt.Errorf("Resize mode %q is not supported (only nearest)", m)
	}
	if m := attrString(n, "coordinate_transformation_mode", "half_pixel"); !resizeModes[m] {
		return fmt.Errorf("Resize coordinate_transformation_mode %q is not supported", m)
	}
	return nil
}

// nearestIndex is the input index ONNX nearest Resize reads for output index o.
func nearestIndex(o, in, out int64, scale float64, ctm, nm string) int64 {
	var x float64
	fo := float64(o)
	switch ctm {
	case "half_pixel":
		x = (fo+0.5)/scale - 0.5
	case "pytorch_half_pixel":
		if out > 1 {
			x = (fo+0.5)/scale - 0.5
		}
	case "align_corners":
		if out > 1 {
			x = fo * float64(in-1) / float64(out-1)
		}
	case "asymmetric":
		x = fo / scale
	case "tf_half_pixel_for_nn":
		x = (fo + 0.5) / scale
	}
	var i float64
	switch nm {
	case "floor":
		i = math.Floor(x)
	case "ceil":
		i = math.Ceil(x)
	case "round_prefer_ceil":
		if x-math.Floor(x) == 0.5 {
			i = math.Ceil(x)
		} else {
			i = math.Round(x)
		}
	default: // round_prefer_floor
		if x-math.Floor(x) == 0.5 {
			i = math.Floor(x)
		} else {
			i = math.Round(x)
		}
	}
	return clamp(int64(i), 0, in-1)
}

// gradResize sums each output's gradient into the input element nearest-neighbour
// resizing copied it from: a reshape-and-sum for integer upscales that replicate
// blocks, otherwise a MatMul with the 0/1 selection matrix on the last two axes.
func gradResize(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x, y := n.Input[0], n.Output[0]
	xs, ys := c.pr.shape2[x], c.pr.shape2[y]
	rank := len(xs)
	if len(ys) != rank {
		return nil, fmt.Errorf("rank changes from %v to %v", xs, ys)
	}
	var scales []float64
	if input(n, 2) != "" {
		v, _, err := c.value(n, 2)
		if err != nil {
			return nil, err
		}
		if len(v) > 0 {
			if len(v) != rank {
				return nil, fmt.Errorf("scales has %d values for rank %d", len(v), rank)
			}
			scales = v
		}
	}
	ctm := attrString(n, "coordinate_transformation_mode", "half_pixel")
	nm := attrString(n, "nearest_mode", "round_prefer_floor")
	maps := make([][]int64, rank)
	var resized []int
	for a := 0; a < rank; a++ {
		scale := float64(ys[a]) / float64(xs[a])
		if scales != nil {
			scale = scales[a]
		}
		m := make([]int64, ys[a])
		ident := xs[a] == ys[a]
		for o := range m {
			m[o] = nearestIndex(int64(o), xs[a], ys[a], scale, ctm, nm)
			ident = ident && m[o] == int64(o)
		}
		if ident {
			continue
		}
		if c.pr.batch[x][a] {
			return nil, fmt.Errorf("resizing the batch axis is not supported")
		}
		maps[a] = m
		resized = append(resized, a)
	}
	dy := dys[0]
	if len(resized) == 0 {
		return only0(dy, len(need)), nil
	}
	// Block replication: out = f*in and out index o reads o/f.
	block := true
	factor := make([]int64, rank)
	for a := 0; a < rank; a++ {
		factor[a] = 1
		if maps[a] == nil {
			continue
		}
		if ys[a]%xs[a] != 0 {
			block = false
			continue
		}
		f := ys[a] / xs[a]
		factor[a] = f
		for o, i := range maps[a] {
			if i != int64(o)/f {
				block = false
			}
		}
	}
	if block {
		var target, axes []int64
		for a := 0; a < rank; a++ {
			d := xs[a]
			if c.pr.batch[x][a] {
				d = 0 // copy: the axes before any split keep their index
				for _, r := range resized {
					if r < a {
						return nil, fmt.Errorf("a batch axis after a resized axis is not supported")
					}
				}
			}
			target = append(target, d)
			if maps[a] != nil {
				target = append(target, factor[a])
				axes = append(axes, int64(len(target)-1))
			}
		}
		return only0(e.reduceSum(e.op("Reshape", dy, e.ints(target...)), axes, false), len(need)), nil
	}
	for _, a := range resized {
		if a < rank-2 {
			return nil, fmt.Errorf("non-block nearest resizing of axis %d (not one of the last two) is not supported", a)
		}
	}
	g := dy
	for _, a := range resized {
		in, out := xs[a], ys[a]
		if a == rank-1 {
			sel := make([]float32, out*in) // [out, in]
			for o, i := range maps[a] {
				sel[int64(o)*in+i] = 1
			}
			g = e.op("MatMul", g, e.floats([]int64{out, in}, sel))
		} else {
			sel := make([]float32, in*out) // [in, out]
			for o, i := range maps[a] {
				sel[i*out+int64(o)] = 1
			}
			g = e.op("MatMul", e.floats([]int64{in, out}, sel), g)
		}
	}
	return only0(g, len(need)), nil
}

// gradMaxPoolMask is MaxPool's backward pass without its Indices output, for GPU
// providers (see Target): each window's maximum is compared with the window's
// elements, a window whose maximum occurs several times shares the gradient among
// them (a subgradient; the Indices path gives it all to the first), and the
// contributions go back to the input:
//   - windows that tile the input (kernel = stride, no dilation): the input is viewed
//     as [N, C, o1, k1, o2, k2, ...] and compared with the pooled output broadcast
//     over each block, all elementwise;
//   - any other windows (overlapping ones included): the k1*k2*... strided views of
//     the input, one per window offset, are compared with the pooled output, and a
//     ConvTranspose with one-hot kernels, stride and dilation of the pool, adds each
//     offset's share back where it came from (overlaps add up).
//
// The input is first padded with -inf (MaxPool's padding never wins) or cropped to
// the span the windows cover, and the gradient cropped or padded with zeros back.
// ok is false where the shapes do not allow it (a dimension other than the first
// following the batch); the Indices path is used then.
func gradMaxPoolMask(c *buildCtx, n *onnx.NodeProto, dy string) (string, bool) {
	e := c.e
	x, y := n.Input[0], n.Output[0]
	xs, ys := c.pr.shape2[x], c.pr.shape2[y]
	if !batchFirstOnly(c.pr.batch[x]) || !batchFirstOnly(c.pr.batch[y]) || len(xs) != len(ys) || xs[1] != ys[1] {
		return "", false
	}
	if len(xs) > 4 && !tilesInput(n) {
		// The overlapping form needs a ConvTranspose over the spatial axes: ORT 1.24's
		// WebGPU provider claims 3-D ones and then fails at run time ("Only Conv2d or
		// Conv1d are supported").
		return "", false
	}
	g, err := poolGeometry(c, n)
	if err != nil {
		return "", false
	}
	r := len(g.k)
	d := defaults(attrInts(n, "dilations"), r, 1)
	ch := xs[1]
	span := make([]int64, r) // input extent the windows cover, padding included
	tiles := tilesInput(n)
	for i := 0; i < r; i++ {
		span[i] = (g.out[i]-1)*g.s[i] + (g.k[i]-1)*d[i] + 1
	}
	// Pad with -inf before and after, then crop to the span.
	pads := make([]int64, 2*(r+2))
	var cropEnds []int64
	padded, cropped := false, false
	for i := 0; i < r; i++ {
		pads[2+i] = g.pb[i]
		end := span[i] - g.pb[i] - g.in[i]
		pads[r+4+i] = max(end, 0)
		padded = padded || g.pb[i] > 0 || end > 0
		cropped = cropped || end < 0
		cropEnds = append(cropEnds, span[i])
	}
	spatial := seq(2, int64(r+2))
	xe := x
	if padded {
		xe = e.op("Pad", xe, e.ints(pads...), e.scalar(float32(math.Inf(-1))))
	}
	if cropped {
		xe = e.op("Slice", xe, e.ints(make([]int64, r)...), e.ints(cropEnds...), e.ints(spatial...))
	}
	var ge string // gradient over the span, [N, C, span...]
	if tiles {
		blocks := []int64{-1, ch}
		once := []int64{-1, ch}
		var within []int64
		for i := 0; i < r; i++ {
			blocks = append(blocks, g.out[i], g.k[i])
			once = append(once, g.out[i], 1)
			within = append(within, int64(3+2*i))
		}
		m := e.mask(e.op("Equal", e.op("Reshape", xe, e.ints(blocks...)), e.op("Reshape", y, e.ints(once...))))
		share := e.op("Div", e.op("Reshape", dy, e.ints(once...)), e.reduceSum(m, within, true))
		ge = e.op("Reshape", e.op("Mul", m, share), e.ints(append([]int64{-1, ch}, span...)...))
	} else {
		// one [N*C, 1, out...] view per window offset, stacked along axis 1
		one := append([]int64{-1, 1}, g.out...)
		kk := int64(1)
		for _, v := range g.k {
			kk *= v
		}
		views := make([]string, 0, kk)
		onehot := make([]float32, kk*kk)
		off := make([]int64, r)
		for j := int64(0); j < kk; j++ {
			rest := j
			for i := r - 1; i >= 0; i-- {
				off[i] = rest % g.k[i]
				rest /= g.k[i]
			}
			starts, ends := make([]int64, r), make([]int64, r)
			for i := 0; i < r; i++ {
				starts[i] = off[i] * d[i]
				ends[i] = starts[i] + (g.out[i]-1)*g.s[i] + 1
			}
			v := e.op("Slice", xe, e.ints(starts...), e.ints(ends...), e.ints(spatial...), e.ints(g.s...))
			views = append(views, e.op("Reshape", v, e.ints(one...)))
			onehot[j*kk+j] = 1 // kernel [kk, 1, k...]: offset j of input channel j
		}
		m := e.mask(e.op("Equal", e.opA("Concat", views, onnx.AttrInt("axis", 1)), e.op("Reshape", y, e.ints(one...))))
		share := e.op("Div", e.op("Reshape", dy, e.ints(one...)), e.reduceSum(m, []int64{1}, true))
		contrib := e.op("Mul", m, share)
		// ORT 1.24's WebGPU ConvTranspose with one output channel returns wrong values
		// for an odd number of input channels from 5 on (seen on lavapipe): zero
		// channels round them up to a multiple of 4.
		in := kk
		if kk > 4 && kk%4 != 0 {
			in = (kk + 3) / 4 * 4
			pads := make([]int64, 2*(r+2))
			pads[r+3] = in - kk
			contrib = e.op("Pad", contrib, e.ints(pads...))
			onehot = append(onehot, make([]float32, (in-kk)*kk)...)
		}
		w := e.floats(append([]int64{in, 1}, g.k...), onehot)
		back := e.opA("ConvTranspose", []string{contrib, w},
			onnx.AttrInts("strides", g.s...), onnx.AttrInts("dilations", d...), onnx.AttrInts("kernel_shape", g.k...))
		ge = e.op("Reshape", back, e.ints(append([]int64{-1, ch}, span...)...))
	}
	// Back from the span to the input: drop the padding, zeros where no window reached.
	starts, ends := make([]int64, r), make([]int64, r)
	tail := make([]int64, 2*(r+2))
	crop, zeros := false, false
	for i := 0; i < r; i++ {
		starts[i], ends[i] = g.pb[i], min(span[i], g.pb[i]+g.in[i])
		crop = crop || starts[i] > 0 || ends[i] < span[i]
		tail[r+4+i] = g.pb[i] + g.in[i] - ends[i]
		zeros = zeros || tail[r+4+i] > 0
	}
	dx := ge
	if crop {
		dx = e.op("Slice", dx, e.ints(starts...), e.ints(ends...), e.ints(spatial...))
	}
	if zeros {
		dx = e.op("Pad", dx, e.ints(tail...))
	}
	return dx, true
}

// tilesInput reports pooling windows that tile the input: kernel = stride, no
// dilation.
func tilesInput(n *onnx.NodeProto) bool {
	k := attrInts(n, "kernel_shape")
	s := defaults(attrInts(n, "strides"), len(k), 1)
	for _, d := range attrInts(n, "dilations") {
		if d != 1 {
			return false
		}
	}
	for i := range k {
		if k[i] != s[i] {
			return false
		}
	}
	return len(k) > 0
}

// batchFirstOnly reports shapes whose first dimension, and only it, follows the batch.
func batchFirstOnly(b []bool) bool {
	if len(b) < 3 || !b[0] {
		return false
	}
	for _, v := range b[1:] {
		if v {
			return false
		}
	}
	return true
}
