package autodiff

import (
	"fmt"
	"math"
	"slices"

	"gibbon/inference/onnx"
)

const int64Max = math.MaxInt64

func gradReshape(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	return only0(c.e.reshapeLike(dys[0], n.Input[0]), len(need)), nil
}

func gradTranspose(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	rank := int64(len(c.pr.shape2[n.Input[0]]))
	perm := attrInts(n, "perm")
	if perm == nil {
		for i := rank - 1; i >= 0; i-- {
			perm = append(perm, i)
		}
	}
	inv := make([]int64, len(perm))
	for i, p := range perm {
		inv[p] = int64(i)
	}
	return only0(c.e.transpose(dys[0], inv...), len(need)), nil
}

func normAxis(axis int64, rank int) int64 {
	if axis < 0 {
		axis += int64(rank)
	}
	return axis
}

func gradConcat(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	rank := len(c.pr.shape2[n.Output[0]])
	axis := normAxis(attrInt(n, "axis", 0), rank)
	out := make([]string, len(need))
	off := int64(0)
	for i, in := range n.Input {
		if c.pr.batch[in][axis] {
			return nil, fmt.Errorf("Concat along the batch axis is not supported")
		}
		l := c.pr.shape2[in][axis]
		if need[i] {
			out[i] = e.op("Slice", dys[0], e.ints(off), e.ints(off+l), e.ints(axis))
		}
		off += l
	}
	return out, nil
}

func gradSplit(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	parts := make([]string, len(n.Output))
	for i, o := range n.Output {
		switch {
		case dys[i] != "":
			parts[i] = dys[i]
		case o != "":
			parts[i] = e.zerosLike(o)
		default:
			return nil, fmt.Errorf("Split with an omitted output is not supported")
		}
	}
	rank := len(c.pr.shape2[n.Input[0]])
	axis := normAxis(attrInt(n, "axis", 0), rank)
	if len(parts) == 1 {
		return only0(parts[0], len(need)), nil
	}
	return only0(e.opA("Concat", parts, onnx.AttrInt("axis", axis)), len(need)), nil
}

// value returns a constant input's values.
func (c *buildCtx) value(n *onnx.NodeProto, i int) ([]float64, bool, error) {
	name := input(n, i)
	if name == "" {
		return nil, false, nil
	}
	v, ok := c.pr.values[name]
	if !ok {
		return nil, false, fmt.Errorf("input %d (%q) changes with the batch size or could not be read; only constant %s inputs are supported", i, name, n.GetOpType())
	}
	return v, true, nil
}

func ints64(v []float64) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		switch {
		case x >= math.MaxInt64:
			out[i] = math.MaxInt64
		case x <= math.MinInt64:
			out[i] = math.MinInt64
		default:
			out[i] = int64(x)
		}
	}
	return out
}

func clamp(v, lo, hi int64) int64 {
	return max(lo, min(v, hi))
}

// gradSlice scatters the gradient back with Pad; a step s > 1 first interleaves s-1
// zeros after every element (Unsqueeze, Pad, Reshape).
func gradSlice(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x := n.Input[0]
	rank := len(c.pr.shape2[x])
	sv, _, err := c.value(n, 1)
	if err != nil {
		return nil, err
	}
	ev, _, err := c.value(n, 2)
	if err != nil {
		return nil, err
	}
	av, hasAxes, err := c.value(n, 3)
	if err != nil {
		return nil, err
	}
	stv, hasSteps, err := c.value(n, 4)
	if err != nil {
		return nil, err
	}
	starts, ends := ints64(sv), ints64(ev)
	axes := seq(0, int64(len(starts)))
	if hasAxes {
		axes = ints64(av)
	}
	steps := make([]int64, len(starts))
	for i := range steps {
		steps[i] = 1
	}
	if hasSteps {
		steps = ints64(stv)
	}
	if len(ends) != len(starts) || len(axes) != len(starts) || len(steps) != len(starts) {
		return nil, fmt.Errorf("starts, ends, axes and steps differ in length")
	}
	type span struct{ begin, count, step, dim int64 }
	// The padding is computed at both probe batch sizes; it must not depend on the batch.
	spans := func(shape []int64) ([]span, error) {
		out := make([]span, rank)
		for i := range out {
			out[i] = span{0, shape[i], 1, shape[i]}
		}
		for i, a := range axes {
			a = normAxis(a, rank)
			if a < 0 || a >= int64(rank) {
				return nil, fmt.Errorf("axis %d out of range", axes[i])
			}
			d, st := shape[a], steps[i]
			if st <= 0 {
				return nil, fmt.Errorf("non-positive Slice steps are not supported")
			}
			s, en := starts[i], ends[i]
			if s < 0 {
				s += d
			}
			if en < 0 {
				en += d
			}
			s, en = clamp(s, 0, d), clamp(en, 0, d)
			cnt := int64(0)
			if en > s {
				cnt = (en - s + st - 1) / st
			}
			out[a] = span{s, cnt, st, d}
		}
		return out, nil
	}
	sp1, err := spans(c.pr.shape1[x])
	if err != nil {
		return nil, err
	}
	sp2, err := spans(c.pr.shape2[x])
	if err != nil {
		return nil, err
	}
	g := dys[0]
	ys := append([]int64(nil), c.pr.shape2[n.Output[0]]...)
	yb := c.pr.batch[n.Output[0]]
	pads := make([]int64, 2*rank)
	for a := 0; a < rank; a++ {
		s1, s2 := sp1[a], sp2[a]
		if c.pr.batch[x][a] {
			if s2.begin != 0 || s2.count != s2.dim || s1.begin != 0 || s1.count != s1.dim || s2.step != 1 {
				return nil, fmt.Errorf("slicing the batch axis is not supported")
			}
			continue
		}
		if s2.count == 0 {
			return only0(e.zerosLike(x), len(need)), nil
		}
		length := s2.count
		if s2.step > 1 {
			// [.., k, ..] -> [.., k, 1, ..] -> pad to [.., k, s, ..] -> [.., k*s, ..] -> first (k-1)*s+1
			u := e.op("Unsqueeze", g, e.ints(int64(a+1)))
			up := make([]int64, 2*(rank+1))
			up[a+1+rank+1] = s2.step - 1
			u = e.op("Pad", u, e.ints(up...))
			target := append([]int64(nil), ys...)
			target[a] = s2.count * s2.step
			tb := append([]bool(nil), yb...)
			rt, err := shapeFor(target, tb)
			if err != nil {
				return nil, err
			}
			u = e.op("Reshape", u, e.ints(rt...))
			length = (s2.count-1)*s2.step + 1
			g = e.op("Slice", u, e.ints(0), e.ints(length), e.ints(int64(a)))
			ys[a] = length
		}
		pads[a] = s2.begin
		pads[a+rank] = s2.dim - s2.begin - length
	}
	for _, p := range pads {
		if p != 0 {
			g = e.op("Pad", g, e.ints(pads...))
			break
		}
	}
	return only0(g, len(need)), nil
}

func checkPad(c *buildCtx, n *onnx.NodeProto) error {
	if m := attrString(n, "mode", "constant"); m != "constant" {
		return fmt.Errorf("Pad mode %q is not supported (only constant)", m)
	}
	return nil
}

// gradPad crops the gradient back; negative pads (crops) are undone with zeros.
func gradPad(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	if len(need) > 2 && need[2] {
		return nil, fmt.Errorf("a Pad value that depends on the differentiated inputs is not supported")
	}
	x := n.Input[0]
	rank := len(c.pr.shape2[x])
	pv, _, err := c.value(n, 1)
	if err != nil {
		return nil, err
	}
	pads := ints64(pv)
	if len(pads) != 2*rank {
		return nil, fmt.Errorf("pads has %d values for a rank-%d input", len(pads), rank)
	}
	g := dys[0]
	undo := make([]int64, 2*rank)
	needUndo := false
	for i, p := range pads {
		if p < 0 {
			undo[i] = -p
			needUndo = true
		}
	}
	if needUndo {
		g = e.op("Pad", g, e.ints(undo...))
	}
	var starts, ends, axes []int64
	for a := 0; a < rank; a++ {
		b := max(pads[a], 0)
		en := max(pads[a+rank], 0)
		if b == 0 && en == 0 {
			continue
		}
		if c.pr.batch[x][a] {
			return nil, fmt.Errorf("padding the batch axis is not supported")
		}
		starts = append(starts, b)
		ends = append(ends, b+c.pr.shape2[x][a])
		axes = append(axes, int64(a))
	}
	if len(axes) > 0 {
		g = e.op("Slice", g, e.ints(starts...), e.ints(ends...), e.ints(axes...))
	}
	return only0(g, len(need)), nil
}

// gradReduce spreads the gradient back over the reduced axes (divided by their size for
// ReduceMean): ReduceSum takes axes as an input (opset 13), ReduceMean as an attribute
// (opsets 13-17).
func gradReduce(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x := n.Input[0]
	xs := c.pr.shape2[x]
	rank := len(xs)
	var axes []int64
	if n.GetOpType() == "ReduceSum" {
		v, ok, err := c.value(n, 1)
		if err != nil {
			return nil, err
		}
		if ok {
			axes = ints64(v)
		}
		if len(axes) == 0 && attrInt(n, "noop_with_empty_axes", 0) != 0 {
			return only0(dys[0], len(need)), nil
		}
	} else {
		axes = attrInts(n, "axes")
	}
	if len(axes) == 0 {
		axes = seq(0, int64(rank))
	}
	count := int64(1)
	for i, a := range axes {
		a = normAxis(a, rank)
		if a < 0 || a >= int64(rank) {
			return nil, fmt.Errorf("axis %d out of range", axes[i])
		}
		axes[i] = a
		if c.pr.batch[x][a] && n.GetOpType() == "ReduceMean" {
			return nil, fmt.Errorf("ReduceMean over the batch axis is not supported")
		}
		count *= xs[a]
	}
	g := dys[0]
	if attrInt(n, "keepdims", 1) == 0 {
		g = e.op("Unsqueeze", g, e.ints(sortedInts(axes)...))
	}
	if n.GetOpType() == "ReduceMean" {
		g = e.op("Mul", g, e.scalar(float32(1/float64(count))))
	}
	return only0(e.op("Expand", g, e.op("Shape", x)), len(need)), nil
}

func sortedInts(v []int64) []int64 {
	out := append([]int64(nil), v...)
	slices.Sort(out)
	return out
}
