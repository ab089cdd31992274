package autodiff

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gibbon/inference/onnx"
)

// emitter appends backward-pass nodes to the graph.
type emitter struct {
	b      *onnx.Builder
	pr     *probeResult
	consts map[string]string
}

func newEmitter(g *onnx.GraphProto, pr *probeResult) *emitter {
	return &emitter{b: onnx.BuilderOn(g, BuiltOpset), pr: pr, consts: map[string]string{}}
}

// op adds a node without attributes and returns its output.
func (e *emitter) op(opType string, inputs ...string) string { return e.b.Op(opType, inputs) }

// opA adds a node with attributes.
func (e *emitter) opA(opType string, inputs []string, attrs ...*onnx.AttributeProto) string {
	return e.b.Op(opType, inputs, attrs...)
}

// node adds a node whose output has a chosen name.
func (e *emitter) node(opType string, inputs []string, out string, attrs ...*onnx.AttributeProto) {
	e.b.Node(opType, inputs, []string{out}, attrs...)
}

// ints is a 1-d int64 constant, shared between uses.
func (e *emitter) ints(v ...int64) string {
	key := fmt.Sprint("i", v)
	if n, ok := e.consts[key]; ok {
		return n
	}
	n := e.b.Ints(v...)
	e.consts[key] = n
	return n
}

// scalar is a 0-d float constant, shared between uses.
func (e *emitter) scalar(v float32) string {
	key := fmt.Sprint("f", math.Float32bits(v))
	if n, ok := e.consts[key]; ok {
		return n
	}
	n := e.b.Scalar(v)
	e.consts[key] = n
	return n
}

// floats is a float constant of the given shape.
func (e *emitter) floats(shape []int64, v []float32) string { return e.b.Const(shape, v...) }

// sum adds gradient contributions with a balanced tree of Adds: ORT's WebGPU provider
// has no Sum kernel, and on the CPU the Adds cost the same (`gibbon bench grad`).
func (e *emitter) sum(gs []string) string {
	if len(gs) == 1 {
		return gs[0]
	}
	h := len(gs) / 2
	return e.op("Add", e.sum(gs[:h]), e.sum(gs[h:]))
}

func (e *emitter) reduceSum(x string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	return e.opA("ReduceSum", []string{x, e.ints(axes...)}, onnx.AttrInt("keepdims", k))
}

// mask turns a boolean tensor into 0/1 floats (Mul by a Cast mask is faster than Where).
func (e *emitter) mask(b string) string {
	return e.opA("Cast", []string{b}, onnx.AttrInt("to", int64(onnx.TensorProto_FLOAT)))
}

func (e *emitter) transpose(x string, perm ...int64) string {
	return e.opA("Transpose", []string{x}, onnx.AttrInts("perm", perm...))
}

// reshapeLike reshapes x to the runtime shape of like: to a constant target when at
// most one dimension follows the batch (it becomes -1), else to Shape(like). A Shape
// node's small int64 output lives on the CPU, and GPU providers leave the shape
// arithmetic ONNX Runtime derives from it (a Gather after a layout change) there.
func (e *emitter) reshapeLike(x, like string) string {
	if t, ok := e.constShape(like); ok {
		return e.op("Reshape", x, e.ints(t...))
	}
	return e.op("Reshape", x, e.op("Shape", like))
}

// constShape is a constant Reshape target for tensor t's shape, -1 for the batch.
func (e *emitter) constShape(t string) ([]int64, bool) {
	s, b := e.pr.shape2[t], e.pr.batch[t]
	if s == nil || len(b) != len(s) || slices.Contains(s, 0) {
		return nil, false // (a 0 in a Reshape target copies the input's dimension)
	}
	out, err := shapeFor(s, b)
	return out, err == nil
}

// zerosLike is a zero tensor shaped like t at run time, expanded from a scalar (on a
// GPU provider it is made there, not on the CPU by ConstantOfShape and copied).
func (e *emitter) zerosLike(t string) string {
	return e.op("Expand", e.scalar(0), e.op("Shape", t))
}

// unbroadcast sums gradient dy of a broadcasting op's output y down to the shape of
// operand x.
func (e *emitter) unbroadcast(dy, y, x string) string {
	return e.unbroadcastShapes(dy, e.pr.shape2[y], e.pr.batch[y], x)
}

// unbroadcastShapes is unbroadcast for a gradient whose shape (at probe batch 2) and
// batch flags the caller knows.
func (e *emitter) unbroadcastShapes(dy string, ys []int64, yb []bool, x string) string {
	xs, xb := e.pr.shape2[x], e.pr.batch[x]
	lead := len(ys) - len(xs)
	var axes []int64
	for i := 0; i < lead; i++ {
		axes = append(axes, int64(i))
	}
	for i := range xs {
		j := i + lead
		if xs[i] == 1 && !xb[i] && (ys[j] != 1 || yb[j]) {
			axes = append(axes, int64(j))
		}
	}
	if len(axes) == 0 {
		return dy
	}
	r := e.reduceSum(dy, axes, true)
	if lead > 0 {
		r = e.reshapeLike(r, x)
	}
	return r
}

// shapeFor turns a probed shape into a Reshape target: batch-following dims become 0
// (copy) when they keep their index, else -1 (at most one).
func shapeFor(s []int64, b []bool) ([]int64, error) {
	out := append([]int64(nil), s...)
	dyn := 0
	for i := range out {
		if b[i] {
			out[i] = -1
			dyn++
		}
	}
	if dyn > 1 {
		return nil, fmt.Errorf("shape %v has %d batch-dependent dimensions", s, dyn)
	}
	return out, nil
}

func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
