package autodiff

import (
	"fmt"

	"gibbon/inference/onnx"
)

// gradGemm: Y = alpha*op(A)*op(B) + beta*C with op = transpose when trans is set.
func gradGemm(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	dy := dys[0]
	a, b := n.Input[0], n.Input[1]
	alpha := attrFloat(n, "alpha", 1)
	beta := attrFloat(n, "beta", 1)
	ta, tb := attrInt(n, "transA", 0) != 0, attrInt(n, "transB", 0) != 0
	flag := func(v bool) int64 {
		if v {
			return 1
		}
		return 0
	}
	gemm := func(x, y string, tx, ty bool) string {
		return e.opA("Gemm", []string{x, y}, onnx.AttrFloat("alpha", alpha),
			onnx.AttrInt("transA", flag(tx)), onnx.AttrInt("transB", flag(ty)))
	}
	out := make([]string, len(need))
	if need[0] {
		if !ta {
			out[0] = gemm(dy, b, false, !tb) // dY op(B)^T
		} else {
			out[0] = gemm(b, dy, tb, true) // (dY op(B)^T)^T = op(B) dY^T
		}
	}
	if need[1] {
		if !tb {
			out[1] = gemm(a, dy, !ta, false) // op(A)^T dY
		} else {
			out[1] = gemm(dy, a, true, ta) // dY^T op(A)
		}
	}
	if len(need) > 2 && need[2] {
		g := e.unbroadcast(dy, n.Output[0], n.Input[2])
		if beta != 1 {
			g = e.op("Mul", g, e.scalar(beta))
		}
		out[2] = g
	}
	return out, nil
}

// gradMatMul handles operands of rank 2 or more, with numpy batch broadcasting.
func gradMatMul(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	dy := dys[0]
	a, b, y := n.Input[0], n.Input[1], n.Output[0]
	as, bs := c.pr.shape2[a], c.pr.shape2[b]
	if len(as) < 2 || len(bs) < 2 {
		return nil, fmt.Errorf("MatMul with a 1-d operand (%v x %v) is not supported", as, bs)
	}
	ys, yb := c.pr.shape2[y], c.pr.batch[y]
	swap := func(x string, rank int) string {
		perm := seq(0, int64(rank))
		perm[rank-1], perm[rank-2] = perm[rank-2], perm[rank-1]
		return e.transpose(x, perm...)
	}
	full := func(of string) ([]int64, []bool) {
		s := append(append([]int64(nil), ys[:len(ys)-2]...), c.pr.shape2[of][len(c.pr.shape2[of])-2:]...)
		bm := append(append([]bool(nil), yb[:len(yb)-2]...), c.pr.batch[of][len(c.pr.batch[of])-2:]...)
		return s, bm
	}
	out := make([]string, 2)
	if need[0] {
		s, bm := full(a)
		out[0] = e.unbroadcastShapes(e.op("MatMul", dy, swap(b, len(bs))), s, bm, a)
	}
	if need[1] {
		s, bm := full(b)
		out[1] = e.unbroadcastShapes(e.op("MatMul", swap(a, len(as)), dy), s, bm, b)
	}
	return out, nil
}
