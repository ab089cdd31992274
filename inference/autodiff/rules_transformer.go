package autodiff

import (
	"fmt"
	"math"
	"slices"

	"gibbon/inference/onnx"
)

// Rules for the ops vision transformers add to CNNs (DeiT, ConViT exported at opset
// 17): LayerNormalization, Erf (exact GELU), Pow, Where, Expand, Gather, and
// GlobalMaxPool.

func checkLayerNorm(c *buildCtx, n *onnx.NodeProto) error {
	if len(n.Input) < 2 || n.Input[1] == "" {
		return fmt.Errorf("LayerNormalization without a Scale input")
	}
	if st := attrInt(n, "stash_type", 1); st != 1 {
		return fmt.Errorf("LayerNormalization stash_type %d is not supported (only 1, float)", st)
	}
	return nil
}

// gradLayerNorm differentiates y = (x-mean)*invstd*scale + bias over the axes from
// `axis` on. The forward node is given its optional Mean and InvStdDev outputs (ONNX
// Runtime computes them anyway), so nothing is recomputed:
//
//	xhat = (x-mean)*invstd, g = dy*scale
//	dx = invstd * (g - mean(g) - xhat*mean(g*xhat))  (means over the normalised axes)
//	dscale = sum over the leading axes of dy*xhat, dbias = sum of dy
func gradLayerNorm(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	if (len(dys) > 1 && dys[1] != "") || (len(dys) > 2 && dys[2] != "") {
		return nil, fmt.Errorf("gradients through LayerNormalization's Mean or InvStdDev outputs are not supported")
	}
	x, scale, y := n.Input[0], n.Input[1], n.Output[0]
	xs := c.pr.shape2[x]
	rank := len(xs)
	axis := normAxis(attrInt(n, "axis", -1), rank)
	if axis < 0 || axis >= int64(rank) {
		return nil, fmt.Errorf("axis %d out of range for rank %d", attrInt(n, "axis", -1), rank)
	}
	for a := axis; a < int64(rank); a++ {
		if c.pr.batch[x][a] {
			return nil, fmt.Errorf("normalising over the batch axis is not supported")
		}
	}
	for len(n.Output) < 3 {
		n.Output = append(n.Output, "")
	}
	if n.Output[1] == "" {
		n.Output[1] = e.b.Fresh("layernorm_mean")
	}
	if n.Output[2] == "" {
		n.Output[2] = e.b.Fresh("layernorm_invstd")
	}
	mean, invstd := n.Output[1], n.Output[2]
	dy := dys[0]
	axes := seq(axis, int64(rank))
	xhat := e.op("Mul", e.op("Sub", x, mean), invstd)
	out := make([]string, len(need))
	if need[0] {
		g := e.op("Mul", dy, scale)
		mg := e.opA("ReduceMean", []string{g}, onnx.AttrInts("axes", axes...), onnx.AttrInt("keepdims", 1))
		mgx := e.opA("ReduceMean", []string{e.op("Mul", g, xhat)}, onnx.AttrInts("axes", axes...), onnx.AttrInt("keepdims", 1))
		out[0] = e.op("Mul", invstd, e.op("Sub", e.op("Sub", g, mg), e.op("Mul", xhat, mgx)))
	}
	if need[1] {
		out[1] = e.unbroadcast(e.op("Mul", dy, xhat), y, scale)
	}
	if len(need) > 2 && need[2] {
		out[2] = e.unbroadcast(dy, y, n.Input[2])
	}
	return out, nil
}

// gradErf: d/dx erf(x) = 2/sqrt(pi) exp(-x^2).
func gradErf(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x := n.Input[0]
	d := e.op("Exp", e.op("Neg", e.op("Mul", x, x)))
	d = e.op("Mul", d, e.scalar(float32(2/math.Sqrt(math.Pi))))
	return only0(e.op("Mul", dys[0], d), len(need)), nil
}

// gradPow: y = x^p; dx = p*x^(p-1), dp = y*ln(x) (real only for x > 0, as in torch).
func gradPow(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x, p, y := n.Input[0], n.Input[1], n.Output[0]
	out := make([]string, 2)
	if need[0] {
		var d string
		if v, ok := c.pr.values[p]; ok && len(v) == 1 {
			switch v[0] {
			case 1:
				d = ""
			case 2:
				d = e.op("Mul", x, e.scalar(2))
			default:
				d = e.op("Mul", e.op("Pow", x, e.scalar(float32(v[0]-1))), e.scalar(float32(v[0])))
			}
		} else {
			pf := p
			if !c.isFloat[p] {
				pf = e.mask(p) // Cast to float
			}
			d = e.op("Mul", e.op("Pow", x, e.op("Sub", pf, e.scalar(1))), pf)
		}
		g := dys[0]
		if d != "" {
			g = e.op("Mul", g, d)
		}
		out[0] = e.unbroadcast(g, y, x)
	}
	if need[1] {
		out[1] = e.unbroadcast(e.op("Mul", dys[0], e.op("Mul", y, e.op("Log", x))), y, p)
	}
	return out, nil
}

// gradWhere routes the gradient to the branch each element came from.
func gradWhere(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	cond, y := n.Input[0], n.Output[0]
	out := make([]string, 3)
	zero := e.scalar(0)
	if need[1] {
		out[1] = e.unbroadcast(e.op("Where", cond, dys[0], zero), y, n.Input[1])
	}
	if need[2] {
		out[2] = e.unbroadcast(e.op("Where", cond, zero, dys[0]), y, n.Input[2])
	}
	return out, nil
}

// gradExpand sums the gradient over the broadcast axes.
func gradExpand(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	return only0(c.e.unbroadcast(dys[0], n.Output[0], n.Input[0]), len(need)), nil
}

// gradGather supports constant scalar or 1-d indices on an axis that is not the
// batch's: a scalar index (a class token, q/k/v of an attention) pads the gradient
// back into place; a run of consecutive indices likewise; any other list sums into
// place with a 0/1 selection matrix (repeated indices add up).
func gradGather(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	data := n.Input[0]
	ds := c.pr.shape2[data]
	rank := len(ds)
	axis := normAxis(attrInt(n, "axis", 0), rank)
	if axis < 0 || axis >= int64(rank) {
		return nil, fmt.Errorf("axis %d out of range for rank %d", attrInt(n, "axis", 0), rank)
	}
	if c.pr.batch[data][axis] {
		return nil, fmt.Errorf("Gather along the batch axis is not supported")
	}
	iv, _, err := c.value(n, 1)
	if err != nil {
		return nil, err
	}
	is := c.pr.shape2[n.Input[1]]
	if len(is) > 1 {
		return nil, fmt.Errorf("Gather with %d-d indices is not supported (scalar or 1-d only)", len(is))
	}
	dim := ds[axis]
	idx := ints64(iv)
	for i, v := range idx {
		if v < -dim || v >= dim {
			return nil, fmt.Errorf("index %d out of range for dimension %d", v, dim)
		}
		if v < 0 {
			idx[i] = v + dim
		}
	}
	dy := dys[0]
	if len(is) == 0 {
		dy = e.op("Unsqueeze", dy, e.ints(axis))
	}
	consecutive := len(idx) > 0
	for i := 1; i < len(idx); i++ {
		consecutive = consecutive && idx[i] == idx[i-1]+1
	}
	if consecutive {
		pads := make([]int64, 2*rank)
		pads[axis], pads[int(axis)+rank] = idx[0], dim-idx[len(idx)-1]-1
		if slices.ContainsFunc(pads, func(p int64) bool { return p != 0 }) {
			dy = e.op("Pad", dy, e.ints(pads...))
		}
		return only0(dy, len(need)), nil
	}
	if len(idx) == 0 {
		return only0(e.zerosLike(data), len(need)), nil
	}
	// move the axis last, multiply by sel[k, dim] (1 where index k reads position d), move back
	sel := make([]float32, int64(len(idx))*dim)
	for k, v := range idx {
		sel[int64(k)*dim+v] = 1
	}
	perm := seq(0, int64(rank))
	perm[axis], perm[rank-1] = perm[rank-1], perm[axis]
	g := e.transpose(dy, perm...)
	g = e.op("MatMul", g, e.floats([]int64{int64(len(idx)), dim}, sel))
	return only0(e.transpose(g, perm...), len(need)), nil
}

// gradGlobalMaxPool sends each channel's gradient to the elements equal to its
// maximum, split evenly between ties (a subgradient; torch picks one of them).
func gradGlobalMaxPool(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x, y := n.Input[0], n.Output[0]
	rank := len(c.pr.shape2[x])
	m := e.mask(e.op("Equal", x, y))
	cnt := e.reduceSum(m, seq(2, int64(rank)), true)
	return only0(e.op("Mul", m, e.op("Div", dys[0], cnt)), len(need)), nil
}
