package onnx

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
)

// MinUpgradeOpset is the oldest default-domain opset Upgrade converts. Most public
// model-zoo files are 7 to 12; older ones used ops ORT no longer runs.
const MinUpgradeOpset = 7

// UpgradeReport says what Upgrade changed.
type UpgradeReport struct {
	From, To int64
	// Rewrites counts the nodes rewritten, by their original op type.
	Rewrites map[string]int
}

func (r *UpgradeReport) String() string {
	if r.From == r.To {
		return fmt.Sprintf("opset %d (unchanged)", r.From)
	}
	s := fmt.Sprintf("opset %d -> %d", r.From, r.To)
	if len(r.Rewrites) == 0 {
		return s
	}
	ops := make([]string, 0, len(r.Rewrites))
	for op, n := range r.Rewrites {
		ops = append(ops, fmt.Sprintf("%s x%d", op, n))
	}
	sort.Strings(ops)
	return s + " (rewrote " + strings.Join(ops, ", ") + ")"
}

// compatibleOps lists default-domain ops whose meaning did not change between their
// opset 7-12 versions and opset 17, for the attributes inference graphs use. Ops with
// a rule in upgradeNode are handled there; anything else makes Upgrade fail.
var compatibleOps = map[string]bool{}

func init() {
	for _, op := range strings.Fields(`Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh
		AveragePool Cast Ceil Celu Concat Constant ConstantOfShape Conv ConvInteger ConvTranspose
		Cos Cosh CumSum DepthToSpace DequantizeLinear Det Div Einsum Elu Equal Erf Exp Expand
		EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool
		GlobalMaxPool Greater GreaterOrEqual HardSigmoid Identity InstanceNormalization IsInf IsNaN
		LeakyRelu Less LessOrEqual Log LpNormalization LpPool LRN MatMul MatMulInteger Max MaxPool
		MaxUnpool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot
		Or PRelu Pow QLinearConv QLinearMatMul QuantizeLinear Range Reciprocal ReduceL1 ReduceL2
		ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSumSquare Relu
		Reshape Round ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Softplus
		Softsign SpaceToDepth Sqrt Sub Sum Tan Tanh ThresholdedRelu Tile Transpose Where Xor`) {
		compatibleOps[op] = true
	}
}

// rewrittenOps have a rule in upgradeNode (applied only below the opset where they changed).
var rewrittenOps = map[string]bool{
	"Unsqueeze": true, "Squeeze": true, "ReduceSum": true, "Split": true,
	"Softmax": true, "LogSoftmax": true, "Hardmax": true, "Clip": true, "Pad": true,
	"BatchNormalization": true, "Dropout": true, "Upsample": true, "Resize": true,
	"Slice": true, "TopK": true, "Scatter": true,
}

// Upgrade rewrites m in place so that it imports default-domain opset `to` (13 to 17)
// and computes the same outputs. Models at opset 13 or newer only have their import
// raised (the ops Gibbon meets did not change meaning between 13 and 17); models at
// 7 to 12 have the ops that changed rewritten: attributes that became inputs
// (Unsqueeze, Squeeze, ReduceSum, Split, Clip, Pad, Slice, TopK, Dropout), the old
// Softmax/LogSoftmax/Hardmax that flattened to 2-D from axis, BatchNormalization's
// legacy attributes, and Upsample/Resize-10 (now Resize with asymmetric coordinates).
// It fails, changing nothing, with an error naming every op it has no rule for.
// Models newer than `to` are left alone.
func Upgrade(m *ModelProto, to int64) (*UpgradeReport, error) {
	if to < 13 || to > DefaultOpset {
		return nil, fmt.Errorf("upgrade: target opset %d is outside 13..%d", to, DefaultOpset)
	}
	g := m.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("upgrade: model has no graph")
	}
	from := Opset(m)
	rep := &UpgradeReport{From: from, To: from, Rewrites: map[string]int{}}
	if from == 0 {
		return nil, fmt.Errorf("upgrade: the model imports no default-domain (ai.onnx) opset")
	}
	if from >= to {
		return rep, nil
	}
	if from < MinUpgradeOpset {
		return nil, fmt.Errorf("upgrade: opset %d is older than %d, the oldest Gibbon converts: export the model again at opset 13 or newer",
			from, MinUpgradeOpset)
	}
	if from < 13 {
		if bad := unsupportedOps(g); len(bad) > 0 {
			return nil, fmt.Errorf("upgrade: cannot convert this opset %d model to %d: no rule for %s (export it again at opset 13 or newer)",
				from, to, strings.Join(bad, ", "))
		}
		u := newUpgrader(g, from)
		var nodes []*NodeProto
		for _, n := range g.Node {
			// Rules edit a copy, so a failure part-way leaves m as it was.
			out, err := u.upgradeNode(proto.Clone(n).(*NodeProto))
			if err != nil {
				return nil, fmt.Errorf("upgrade: node %q (%s): %w", n.GetName(), n.GetOpType(), err)
			}
			if len(out) != 1 || !proto.Equal(out[0], n) {
				rep.Rewrites[n.GetOpType()]++
			}
			nodes = append(nodes, out...)
		}
		g.Node = nodes
		g.Initializer = append(g.Initializer, u.inits...)
	}
	setOpset(m, to)
	if m.GetIrVersion() < 8 {
		ir := int64(8)
		m.IrVersion = &ir
	}
	dropInitializerInputs(g)
	rep.To = to
	return rep, nil
}

func unsupportedOps(g *GraphProto) []string {
	seen := map[string]bool{}
	var bad []string
	for _, n := range g.Node {
		op := n.GetOpType()
		if !isDefaultDomain(n.GetDomain()) {
			continue
		}
		if compatibleOps[op] || rewrittenOps[op] || seen[op] {
			continue
		}
		seen[op] = true
		bad = append(bad, op)
	}
	sort.Strings(bad)
	return bad
}

func isDefaultDomain(d string) bool { return d == "" || d == "ai.onnx" }

func setOpset(m *ModelProto, v int64) {
	for _, o := range m.OpsetImport {
		if isDefaultDomain(o.GetDomain()) {
			o.Version = &v
			return
		}
	}
	d := ""
	m.OpsetImport = append(m.OpsetImport, &OperatorSetIdProto{Domain: &d, Version: &v})
}

// dropInitializerInputs removes initializers from the graph inputs: IR 3 required
// listing them there, which later IRs read as "overridable", and Gibbon wants one input.
func dropInitializerInputs(g *GraphProto) {
	inits := map[string]bool{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = true
	}
	kept := g.Input[:0]
	for _, in := range g.Input {
		if !inits[in.GetName()] {
			kept = append(kept, in)
		}
	}
	g.Input = kept
}

// upgrader rewrites nodes of one graph, inventing unique names and new constants.
type upgrader struct {
	g     *GraphProto
	from  int64
	names map[string]bool
	seq   int
	inits []*TensorProto
	ranks map[string]int
	uses  map[string]int
}

func newUpgrader(g *GraphProto, from int64) *upgrader {
	u := &upgrader{g: g, from: from, names: map[string]bool{}, uses: map[string]int{}}
	for _, v := range g.Input {
		u.names[v.GetName()] = true
	}
	for _, v := range g.Output {
		u.names[v.GetName()] = true
		u.uses[v.GetName()]++
	}
	for _, t := range g.Initializer {
		u.names[t.GetName()] = true
	}
	for _, n := range g.Node {
		u.names[n.GetName()] = true
		for _, o := range n.Output {
			u.names[o] = true
		}
		for _, in := range n.Input {
			u.uses[in]++
		}
	}
	u.ranks = valueRanks(g)
	return u
}

func (u *upgrader) fresh(prefix string) string {
	for {
		u.seq++
		n := fmt.Sprintf("%s__up%d", prefix, u.seq)
		if !u.names[n] {
			u.names[n] = true
			return n
		}
	}
}

func (u *upgrader) ints(prefix string, vals []int64) string {
	name := u.fresh(prefix)
	u.inits = append(u.inits, Int64Tensor(name, []int64{int64(len(vals))}, vals))
	return name
}

func (u *upgrader) scalar(prefix string, v float32) string {
	name := u.fresh(prefix)
	u.inits = append(u.inits, FloatTensor(name, []int64{}, []float32{v}))
	return name
}

func (u *upgrader) floats(prefix string, vals []float32) string {
	name := u.fresh(prefix)
	u.inits = append(u.inits, FloatTensor(name, []int64{int64(len(vals))}, vals))
	return name
}

func (u *upgrader) node(op string, inputs, outputs []string, attrs ...*AttributeProto) *NodeProto {
	name := u.fresh("n_" + op)
	return &NodeProto{OpType: &op, Name: &name, Input: inputs, Output: outputs, Attribute: attrs}
}

// upgradeNode returns the nodes that replace n (n itself, maybe edited, when nothing changes).
func (u *upgrader) upgradeNode(n *NodeProto) ([]*NodeProto, error) {
	if !isDefaultDomain(n.GetDomain()) {
		return []*NodeProto{n}, nil
	}
	switch n.GetOpType() {
	case "Unsqueeze", "Squeeze", "ReduceSum":
		return u.axesToInput(n)
	case "Split":
		return u.splitToInput(n)
	case "Softmax", "LogSoftmax", "Hardmax":
		return u.softmax(n)
	case "Clip":
		if u.from >= 11 {
			return []*NodeProto{n}, nil
		}
		return u.clip(n)
	case "Pad":
		if u.from >= 11 {
			return []*NodeProto{n}, nil
		}
		return u.pad(n)
	case "BatchNormalization":
		return u.batchNorm(n)
	case "Dropout":
		return u.dropout(n)
	case "Upsample":
		return u.upsample(n)
	case "Resize":
		if u.from >= 11 {
			return []*NodeProto{n}, nil
		}
		return u.resize10(n)
	case "Slice":
		if u.from >= 10 {
			return []*NodeProto{n}, nil
		}
		return u.slice(n)
	case "TopK":
		if u.from >= 10 {
			return []*NodeProto{n}, nil
		}
		return u.topk(n)
	case "Scatter":
		op := "ScatterElements"
		n.OpType = &op
		return []*NodeProto{n}, nil
	}
	return []*NodeProto{n}, nil
}

// axesToInput: Unsqueeze/Squeeze/ReduceSum took `axes` as an attribute before opset 13.
func (u *upgrader) axesToInput(n *NodeProto) ([]*NodeProto, error) {
	a := Attr(n, "axes")
	if a == nil {
		if n.GetOpType() == "Unsqueeze" {
			return nil, fmt.Errorf("Unsqueeze needs axes")
		}
		return []*NodeProto{n}, nil // Squeeze all size-1 dims, ReduceSum over all: same at 13
	}
	axes := append([]int64(nil), a.GetInts()...)
	removeAttrs(n, "axes")
	n.Input = append(n.Input[:1:1], u.ints(n.GetOpType()+"_axes", axes))
	return []*NodeProto{n}, nil
}

func (u *upgrader) splitToInput(n *NodeProto) ([]*NodeProto, error) {
	a := Attr(n, "split")
	if a == nil || len(a.GetInts()) == 0 {
		removeAttrs(n, "split")
		return []*NodeProto{n}, nil // equal parts: same at 13
	}
	split := append([]int64(nil), a.GetInts()...)
	removeAttrs(n, "split")
	n.Input = append(n.Input[:1:1], u.ints("split", split))
	return []*NodeProto{n}, nil
}

// softmax: before opset 13 Softmax, LogSoftmax and Hardmax coerced the input to 2-D
// [prod(d[:axis]), prod(d[axis:])] (default axis 1) and normalised each row. Where the
// axis is the last one that is the opset-13 meaning; elsewhere it becomes
// Flatten(axis) -> op(axis=-1) -> Reshape(Shape(x)).
func (u *upgrader) softmax(n *NodeProto) ([]*NodeProto, error) {
	axis := int64(1)
	if a := Attr(n, "axis"); a != nil {
		axis = a.GetI()
	}
	x := n.Input[0]
	if r, ok := u.ranks[x]; ok {
		if axis < 0 {
			axis += int64(r)
		}
		if axis == int64(r-1) {
			removeAttrs(n, "axis")
			n.Attribute = append(n.Attribute, AttrInt("axis", -1))
			return []*NodeProto{n}, nil
		}
	}
	op := n.GetOpType()
	flat := u.fresh(op + "_2d")
	norm := u.fresh(op + "_rows")
	shape := u.fresh(op + "_shape")
	return []*NodeProto{
		u.node("Flatten", []string{x}, []string{flat}, AttrInt("axis", axis)),
		u.node(op, []string{flat}, []string{norm}, AttrInt("axis", -1)),
		u.node("Shape", []string{x}, []string{shape}),
		u.node("Reshape", []string{norm, shape}, []string{n.Output[0]}),
	}, nil
}

// clip: Clip-6 had min/max attributes; from 11 they are optional scalar inputs.
func (u *upgrader) clip(n *NodeProto) ([]*NodeProto, error) {
	lo, hi := Attr(n, "min"), Attr(n, "max")
	removeAttrs(n, "min", "max")
	ins := []string{n.Input[0]}
	minName, maxName := "", ""
	if lo != nil {
		minName = u.scalar("clip_min", lo.GetF())
	}
	if hi != nil {
		maxName = u.scalar("clip_max", hi.GetF())
	}
	switch {
	case maxName != "":
		ins = append(ins, minName, maxName)
	case minName != "":
		ins = append(ins, minName)
	}
	n.Input = ins
	return []*NodeProto{n}, nil
}

// pad: Pad-2 had pads/value attributes; from 11 they are inputs.
func (u *upgrader) pad(n *NodeProto) ([]*NodeProto, error) {
	p := Attr(n, "pads")
	if p == nil {
		return nil, fmt.Errorf("Pad needs pads")
	}
	pads := append([]int64(nil), p.GetInts()...)
	value := float32(0)
	if v := Attr(n, "value"); v != nil {
		value = v.GetF()
	}
	removeAttrs(n, "pads", "value")
	ins := []string{n.Input[0], u.ints("pads", pads)}
	if value != 0 {
		ins = append(ins, u.scalar("pad_value", value))
	}
	n.Input = ins
	return []*NodeProto{n}, nil
}

// batchNorm drops attributes later versions removed; spatial=0 (per-element statistics)
// has no opset-13 form.
func (u *upgrader) batchNorm(n *NodeProto) ([]*NodeProto, error) {
	if a := Attr(n, "spatial"); a != nil && a.GetI() == 0 {
		return nil, fmt.Errorf("BatchNormalization with spatial=0 has no opset-13 form")
	}
	for _, o := range n.Output[1:] {
		if o != "" && u.uses[o] > 0 {
			return nil, fmt.Errorf("BatchNormalization's training outputs (running mean/var) are used")
		}
	}
	removeAttrs(n, "spatial", "is_test", "consumed_inputs")
	n.Output = n.Output[:1]
	return []*NodeProto{n}, nil
}

// dropout is the identity at inference; before opset 12 its ratio was an attribute.
func (u *upgrader) dropout(n *NodeProto) ([]*NodeProto, error) {
	if u.from >= 12 {
		return []*NodeProto{n}, nil
	}
	if len(n.Output) > 1 && n.Output[1] != "" && u.uses[n.Output[1]] > 0 {
		ratio := float32(0.5)
		if a := Attr(n, "ratio"); a != nil {
			ratio = a.GetF()
		}
		removeAttrs(n, "ratio", "is_test")
		n.Input = []string{n.Input[0], u.scalar("dropout_ratio", ratio)}
		return []*NodeProto{n}, nil
	}
	return []*NodeProto{u.node("Identity", []string{n.Input[0]}, []string{n.Output[0]})}, nil
}

// upsample becomes Resize with Upsample's coordinate mapping (asymmetric; nearest takes
// the floor when enlarging).
func (u *upgrader) upsample(n *NodeProto) ([]*NodeProto, error) {
	mode := "nearest"
	if a := Attr(n, "mode"); a != nil {
		mode = string(a.GetS())
	}
	var scales string
	var scaleVals []float32
	if u.from < 9 {
		a := Attr(n, "scales")
		if a == nil {
			return nil, fmt.Errorf("Upsample needs scales")
		}
		scaleVals = a.GetFloats()
		scales = u.floats("upsample_scales", scaleVals)
	} else {
		if len(n.Input) < 2 {
			return nil, fmt.Errorf("Upsample needs a scales input")
		}
		scales = n.Input[1]
		if t := Initializer(u.g, scales); t != nil {
			scaleVals, _ = FloatData(t)
		}
	}
	attrs, err := resizeAttrs(mode, scaleVals)
	if err != nil {
		return nil, err
	}
	return []*NodeProto{u.node("Resize", []string{n.Input[0], "", scales}, []string{n.Output[0]}, attrs...)}, nil
}

// resize10: Resize-10 took (X, scales) and used Upsample's asymmetric mapping.
func (u *upgrader) resize10(n *NodeProto) ([]*NodeProto, error) {
	mode := "nearest"
	if a := Attr(n, "mode"); a != nil {
		mode = string(a.GetS())
	}
	if len(n.Input) < 2 {
		return nil, fmt.Errorf("Resize needs a scales input")
	}
	var scaleVals []float32
	if t := Initializer(u.g, n.Input[1]); t != nil {
		scaleVals, _ = FloatData(t)
	}
	attrs, err := resizeAttrs(mode, scaleVals)
	if err != nil {
		return nil, err
	}
	return []*NodeProto{u.node("Resize", []string{n.Input[0], "", n.Input[1]}, []string{n.Output[0]}, attrs...)}, nil
}

func resizeAttrs(mode string, scales []float32) ([]*AttributeProto, error) {
	switch mode {
	case "nearest":
		nearest := "floor"
		if len(scales) > 0 && slices.Min(scales) < 1 {
			if slices.Max(scales) > 1 {
				return nil, fmt.Errorf("nearest resize that both enlarges and shrinks has no exact opset-13 form")
			}
			nearest = "ceil"
		}
		return []*AttributeProto{AttrString("mode", "nearest"),
			AttrString("coordinate_transformation_mode", "asymmetric"),
			AttrString("nearest_mode", nearest)}, nil
	case "linear", "bilinear":
		return []*AttributeProto{AttrString("mode", "linear"),
			AttrString("coordinate_transformation_mode", "asymmetric")}, nil
	}
	return nil, fmt.Errorf("unknown resize mode %q", mode)
}

// slice: Slice-1 had starts/ends/axes attributes; from 10 they are inputs.
func (u *upgrader) slice(n *NodeProto) ([]*NodeProto, error) {
	st, en := Attr(n, "starts"), Attr(n, "ends")
	if st == nil || en == nil {
		return nil, fmt.Errorf("Slice needs starts and ends")
	}
	ins := []string{n.Input[0], u.ints("slice_starts", clampInts(st.GetInts())), u.ints("slice_ends", clampInts(en.GetInts()))}
	if ax := Attr(n, "axes"); ax != nil {
		ins = append(ins, u.ints("slice_axes", ax.GetInts()))
	}
	removeAttrs(n, "starts", "ends", "axes")
	n.Input = ins
	return []*NodeProto{n}, nil
}

func clampInts(v []int64) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		// Exporters wrote INT_MAX-ish "to the end" values; int64 holds them as they are.
		out[i] = min(max(x, math.MinInt64/2), math.MaxInt64/2)
	}
	return out
}

// topk: TopK-1 had k as an attribute; from 10 it is a 1-element input.
func (u *upgrader) topk(n *NodeProto) ([]*NodeProto, error) {
	k := Attr(n, "k")
	if k == nil {
		return nil, fmt.Errorf("TopK needs k")
	}
	n.Input = []string{n.Input[0], u.ints("topk_k", []int64{k.GetI()})}
	removeAttrs(n, "k")
	return []*NodeProto{n}, nil
}

// removeAttrs deletes the named attributes and returns those it found.
func removeAttrs(n *NodeProto, names ...string) []*AttributeProto {
	var removed []*AttributeProto
	kept := n.Attribute[:0]
	for _, a := range n.Attribute {
		if slices.Contains(names, a.GetName()) {
			removed = append(removed, a)
			continue
		}
		kept = append(kept, a)
	}
	n.Attribute = kept
	return removed
}
