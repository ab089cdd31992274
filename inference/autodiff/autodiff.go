// Package autodiff turns a forward ONNX classifier into a graph that also computes
// gradients, written entirely in standard ONNX ops so the stock, inference-only ONNX
// Runtime can run it (see shared/design/autodiff.md for why and what was measured).
//
// Build appends a reverse-mode backward pass to the model: it marks the tensors that
// depend on the differentiated inputs, walks the nodes in reverse and emits, for every
// forward node, the standard ops that compute its vector-Jacobian product. Shapes come
// from running the forward model once per probe batch size through ORT (probe.go); the
// spatial size is fixed per built graph, the batch stays dynamic.
package autodiff

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"gibbon/inference"
	"gibbon/inference/onnx"
)

// ErrUnsupported is wrapped by Build's errors for graphs it cannot differentiate:
// ops without a rule, or node settings a rule does not handle.
var ErrUnsupported = errors.New("autodiff: cannot differentiate")

// LossKind picks the scalar-per-sample function whose gradient the built graph computes.
type LossKind int

const (
	// CrossEntropy adds input "label_weights" [N,C] (one-hot or soft labels);
	// "loss" [N] is the softmax cross-entropy -sum_c w_c log softmax(logits)_c per sample.
	CrossEntropy LossKind = iota
	// LogitSeed adds input "logit_seed" [N,C]; "loss" [N] is sum_c seed_c*logits_c per
	// sample (margin losses, targeted attacks: the caller chooses the seed).
	LogitSeed
)

// ParseLoss reads a loss by its String: ce or seed.
func ParseLoss(s string) (LossKind, error) {
	for _, k := range []LossKind{CrossEntropy, LogitSeed} {
		if strings.EqualFold(strings.TrimSpace(s), k.String()) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("loss %q: want ce or seed", s)
}

func (k LossKind) String() string {
	switch k {
	case CrossEntropy:
		return "ce"
	case LogitSeed:
		return "seed"
	}
	return fmt.Sprintf("LossKind(%d)", int(k))
}

// Names of the inputs and outputs Build adds.
const (
	InputLabelWeights = "label_weights"
	InputLogitSeed    = "logit_seed"
	OutputLogits      = "logits"
	OutputLoss        = "loss"
	OutputInputGrad   = "input_grad"
	GradPrefix        = "grad_"
)

// Options configures Build.
type Options struct {
	// Input is the differentiated image input; "" means the first float graph input.
	Input string
	// Loss is the per-sample loss whose gradient is computed.
	Loss LossKind
	// Params are initializer names to differentiate: each becomes a graph input of the
	// same name (the caller feeds the current weights) and yields output "grad_"+name.
	Params []string
	// NoInputGrad skips "input_grad" (training only needs the parameters).
	NoInputGrad bool
	// Target picks the graph forms for the execution provider that will run the graph;
	// the zero value follows the runtime Build is given.
	Target Target
}

// Target is the execution provider a built graph is shaped for. On a GPU provider, a
// node it has no kernel for runs on the CPU with copies of its inputs and outputs
// either side (see `gibbon runtime placement --grad`). Every graph avoids the ops ONNX
// Runtime 1.24's WebGPU provider hands back where that costs the CPU nothing: the loss
// has no LogSoftmax (ReduceMax, Sub, Exp, ReduceSum, Log instead), gradients add up
// with Add (no Sum), reshapes back to a forward tensor's shape use constant targets
// (no Shape, whose int64 output lives on the CPU), zeros come from Expand (no
// ConstantOfShape). The target decides MaxPool's backward pass:
//   - TargetCPU: the forward node computes its Indices output, and MaxUnpool (windows
//     that do not overlap) or ScatterElements with reduction=add take each gradient
//     back to the element chosen. Fastest on the CPU. WebGPU cannot compute Indices
//     (the MaxPool runs on the CPU, forced by the inference package) and has no
//     MaxUnpool; CUDA has no MaxUnpool either.
//   - TargetGPU: no Indices; each window's maximum is compared with its elements
//     (Equal), ties share the gradient, and overlapping windows add their shares back
//     with a one-hot ConvTranspose (see gradMaxPoolMask). Everything stays on the GPU;
//     on the CPU the MNIST CNNs' gradient graphs cost 1.4-1.6x as much as with Indices.
type Target int

const (
	// TargetAuto is TargetGPU when the runtime's sessions run on a GPU provider
	// (its EP is webgpu, cuda or auto and that provider starts), else TargetCPU.
	TargetAuto Target = iota
	// TargetCPU shapes the graph for ONNX Runtime's CPU provider.
	TargetCPU
	// TargetGPU shapes the graph for the WebGPU and CUDA providers.
	TargetGPU
)

func (t Target) String() string {
	switch t {
	case TargetAuto:
		return "auto"
	case TargetCPU:
		return "cpu"
	case TargetGPU:
		return "gpu"
	}
	return fmt.Sprintf("Target(%d)", int(t))
}

// ParseTarget reads "auto", "cpu" or "gpu".
func ParseTarget(s string) (Target, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return TargetAuto, nil
	case "cpu":
		return TargetCPU, nil
	case "gpu":
		return TargetGPU, nil
	}
	return 0, fmt.Errorf("unknown autodiff target %q: use auto, cpu or gpu", s)
}

// For turns TargetAuto into the target for execution provider ep (cpu, webgpu or
// cuda, as inference names them; a session's Provider); other targets stay as they
// are.
func (t Target) For(ep string) Target {
	if t != TargetAuto {
		return t
	}
	switch ep {
	case inference.EPWebGPU, inference.EPCUDA, inference.EPAuto:
		return TargetGPU
	}
	return TargetCPU
}

// runtimeTarget resolves t for the provider rt's sessions actually run on: a
// requested GPU provider that does not start falls back to the CPU, and the CPU forms
// are then the faster ones (the MaxPool mask costs 1.5x the Indices path there).
func runtimeTarget(rt *inference.Runtime, t Target) Target {
	if t != TargetAuto || rt.EP() == inference.EPCPU {
		return t.For(rt.EP())
	}
	b := onnx.NewBuilder("autodiff_provider_probe")
	b.Output("y", b.Op("Relu", []string{b.Input("x", 1, 4)}), 1, 4)
	s, err := rt.NewSession(b.Bytes())
	if err != nil {
		return t.For(rt.EP())
	}
	defer s.Close()
	return t.For(s.Provider())
}

// Opset range Build accepts. Models at 13–16 are re-declared at 17: the ops whose
// definitions changed between 13 and 17 only gained types or optional attributes with
// backward-compatible defaults, and the backward pass needs 16+ (ScatterElements with
// reduction=add).
const (
	MinOpset   = 13
	MaxOpset   = 17
	BuiltOpset = 17
)

// Build returns a new model: the original inputs, plus "label_weights" or "logit_seed"
// [N,C], plus the Params as inputs; outputs "logits" [N,C] (the forward logits; a
// terminal Softmax is differentiated from its input, and "logits" are that input),
// "loss" [N], "input_grad" (the image's shape) unless NoInputGrad, and "grad_<param>"
// for each param. All gradients are of sum_i loss_i over the batch: divide by N for a
// mean. m is not modified.
func Build(rt *inference.Runtime, m *onnx.ModelProto, opts Options) (out *onnx.ModelProto, err error) {
	defer func() {
		// A model odd enough to trip an assumption is an error, never a crash.
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("autodiff: internal error differentiating the model: %v", r)
		}
	}()
	if rt == nil {
		return nil, fmt.Errorf("autodiff: no ONNX Runtime")
	}
	if m == nil || m.Graph == nil || len(m.Graph.Node) == 0 {
		return nil, fmt.Errorf("autodiff: not an ONNX model (no graph)")
	}
	if opts.Loss != CrossEntropy && opts.Loss != LogitSeed {
		return nil, fmt.Errorf("autodiff: unknown loss kind %d", int(opts.Loss))
	}
	if opts.Target < TargetAuto || opts.Target > TargetGPU {
		return nil, fmt.Errorf("autodiff: unknown target %d", int(opts.Target))
	}
	if err := checkOpset(m); err != nil {
		return nil, err
	}
	work := proto.Clone(m).(*onnx.ModelProto)
	prepareModel(work)
	g := work.Graph
	if err := sortNodes(g); err != nil {
		return nil, err
	}
	ctx := &buildCtx{rt: rt, m: work, g: g, opts: opts, gpu: runtimeTarget(rt, opts.Target) == TargetGPU}
	if err := ctx.resolveInputs(); err != nil {
		return nil, err
	}
	if err := ctx.run(); err != nil {
		return nil, err
	}
	return work, nil
}

func checkOpset(m *onnx.ModelProto) error {
	for _, o := range m.OpsetImport {
		d := o.GetDomain()
		if d != "" && d != "ai.onnx" {
			continue
		}
		v := o.GetVersion()
		if v < MinOpset {
			return fmt.Errorf("autodiff: model uses ONNX opset %d; Gibbon differentiates opsets %d-%d: re-export it at opset %d (torch.onnx.export(..., opset_version=%d))", v, MinOpset, MaxOpset, BuiltOpset, BuiltOpset)
		}
		if v > MaxOpset {
			return fmt.Errorf("autodiff: model uses ONNX opset %d; Gibbon differentiates opsets %d-%d: re-export it at opset %d", v, MinOpset, MaxOpset, BuiltOpset)
		}
		return nil
	}
	return fmt.Errorf("autodiff: model imports no default-domain ONNX opset")
}

// prepareModel re-declares the opset, raises the IR version to one that opset needs,
// and drops intermediate shape annotations (they may pin the batch size).
func prepareModel(m *onnx.ModelProto) {
	for _, o := range m.OpsetImport {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			v := int64(BuiltOpset)
			o.Version = &v
		}
	}
	if m.GetIrVersion() < 8 {
		ir := int64(8)
		m.IrVersion = &ir
	}
	m.Graph.ValueInfo = nil
}

type buildCtx struct {
	rt   *inference.Runtime
	m    *onnx.ModelProto
	g    *onnx.GraphProto
	opts Options
	gpu  bool // MaxPool's GPU form (see Target)

	inits      map[string]*onnx.TensorProto
	image      string
	imageShape []int64 // dim 0 is the batch (-1)
	params     []string

	isFloat map[string]bool
	types   map[string]string // ORT's element type names, for messages
	logits  string
	live    map[string]bool // depends on a differentiated input
	// nodes that carry a live value into a float16/double tensor: Build differentiates
	// float32 only, and must not silently drop that path
	lostPrecision []lostGrad
	needed        map[string]bool // the logits depend on it
	path          []*onnx.NodeProto

	pr         *probeResult
	e          *emitter
	batchParam string                     // the image's symbolic batch dimension
	shapeOf    map[string]string          // backward tensor -> forward tensor of the same shape
	avgProbe   map[*onnx.NodeProto]string // AveragePool node -> its divisor probe output
}

func (c *buildCtx) resolveInputs() error {
	g := c.g
	c.inits = map[string]*onnx.TensorProto{}
	for _, t := range g.Initializer {
		c.inits[t.GetName()] = t
	}
	var real []*onnx.ValueInfoProto
	for _, v := range g.Input {
		if c.inits[v.GetName()] == nil {
			real = append(real, v)
		}
	}
	var img *onnx.ValueInfoProto
	for _, v := range real {
		if c.opts.Input != "" && v.GetName() == c.opts.Input {
			img = v
		}
		if c.opts.Input == "" && img == nil && elemType(v) == onnx.TensorProto_FLOAT {
			img = v
		}
	}
	if img == nil {
		if c.opts.Input != "" {
			return fmt.Errorf("autodiff: model has no input %q (inputs: %s)", c.opts.Input, strings.Join(valueNames(real), ", "))
		}
		return fmt.Errorf("autodiff: model has no float image input (inputs: %s)", strings.Join(describeInputs(real), ", "))
	}
	if et := elemType(img); et != onnx.TensorProto_FLOAT {
		return fmt.Errorf("autodiff: input %q is %s, not float: Gibbon differentiates float image inputs", img.GetName(), et)
	}
	for _, v := range real {
		if v != img {
			return fmt.Errorf("autodiff: model has inputs besides the image %q (%s): Gibbon differentiates single-input classifiers", img.GetName(), strings.Join(describeInputs(real), ", "))
		}
	}
	c.image = img.GetName()
	// Old writers (IR < 4) also list initializers as inputs; the built graph keeps only
	// real inputs, so callers feed exactly the image, the labels and the params.
	g.Input = slices.DeleteFunc(g.Input, func(v *onnx.ValueInfoProto) bool { return c.inits[v.GetName()] != nil })
	tt := img.GetType().GetTensorType()
	if tt == nil || tt.GetShape() == nil {
		return fmt.Errorf("autodiff: input %q has no declared shape: Gibbon needs a fixed image size", c.image)
	}
	dims := tt.GetShape().GetDim()
	if len(dims) < 2 {
		return fmt.Errorf("autodiff: input %q has rank %d; want a batch dimension and at least one more", c.image, len(dims))
	}
	c.imageShape = make([]int64, len(dims))
	c.imageShape[0] = -1
	for i, d := range dims[1:] {
		v := d.GetDimValue()
		if _, isParam := d.GetValue().(*onnx.TensorShapeProto_Dimension_DimParam); isParam || v <= 0 {
			return fmt.Errorf("autodiff: input %q has a dynamic dimension %d (%s): Gibbon needs fixed image sizes; re-export the model with a fixed size", c.image, i+1, onnx.DimString(d))
		}
		c.imageShape[i+1] = v
	}
	// The batch is dynamic in the built graph, whatever the file declared.
	batch := "N"
	if p := dims[0].GetDimParam(); p != "" {
		batch = p
	}
	dims[0].Value = &onnx.TensorShapeProto_Dimension_DimParam{DimParam: batch}
	c.batchParam = batch

	seen := map[string]bool{}
	for _, p := range c.opts.Params {
		if seen[p] {
			return fmt.Errorf("autodiff: parameter %q listed twice", p)
		}
		seen[p] = true
		t := c.inits[p]
		if t == nil {
			return fmt.Errorf("autodiff: parameter %q is not an initializer of the model", p)
		}
		if onnx.TensorProto_DataType(t.GetDataType()) != onnx.TensorProto_FLOAT {
			return fmt.Errorf("autodiff: parameter %q is %s, not float", p, onnx.TensorProto_DataType(t.GetDataType()))
		}
		if p == c.image {
			return fmt.Errorf("autodiff: parameter %q is the image input", p)
		}
		c.params = append(c.params, p)
	}
	if c.opts.NoInputGrad && len(c.params) == 0 {
		return fmt.Errorf("autodiff: nothing to differentiate: NoInputGrad is set and no Params are given")
	}
	return nil
}

func (c *buildCtx) run() error {
	var err error
	if c.isFloat, c.types, err = probeTypes(c.rt, c.m); err != nil {
		return err
	}
	if err := c.findLogits(); err != nil {
		return err
	}
	if err := c.renameClashes(); err != nil {
		return err
	}
	c.markPath()
	if err := c.checkSupported(); err != nil {
		return err
	}
	if c.pr, err = probeShapes(c.rt, c.m, c.image, c.imageShape, c.probeRequests()); err != nil {
		return err
	}
	ls := c.pr.shape2[c.logits]
	if len(ls) != 2 {
		return fmt.Errorf("autodiff: the model's output %q has shape %v at batch %d: want logits [N, classes] with N the batch", c.logits, ls, probeBatch2)
	}
	if !c.pr.batch[c.logits][0] || c.pr.batch[c.logits][1] {
		return fmt.Errorf("autodiff: the model's output %q has shape %v whatever the batch size: want logits [N, classes] with N the batch (does the graph pin its batch size, e.g. in a Reshape?)", c.logits, ls)
	}
	c.e = newEmitter(c.g, c.pr)
	return c.backward()
}

// findLogits takes the first graph output, looks through trailing Identity nodes and
// a terminal Softmax (differentiated from its input, the logits).
func (c *buildCtx) findLogits() error {
	if len(c.g.Output) == 0 {
		return fmt.Errorf("autodiff: model has no outputs")
	}
	out := c.g.Output[0].GetName()
	prod := producers(c.g)
	for {
		n := prod[out]
		if n == nil {
			break
		}
		if n.GetOpType() == "Identity" && n.GetDomain() == "" {
			out = n.Input[0]
			continue
		}
		if n.GetOpType() == "Softmax" && n.GetDomain() == "" {
			out = n.Input[0]
		}
		break
	}
	if !c.isFloat[out] && c.inits[out] == nil && out != c.image {
		return fmt.Errorf("autodiff: the model's output %q is not a float tensor", out)
	}
	c.logits = out
	return nil
}

// markPath finds the tensors that depend on a differentiated input (live) and the
// nodes between those inputs and the logits.
func (c *buildCtx) markPath() {
	c.live = map[string]bool{}
	if !c.opts.NoInputGrad {
		c.live[c.image] = true
	}
	for _, p := range c.params {
		c.live[p] = true
	}
	for _, n := range c.g.Node {
		if zeroGradOps[n.GetOpType()] && n.GetDomain() == "" {
			continue
		}
		any := false
		for i, in := range n.Input {
			if c.live[in] && !nonDiffInput(n, i) {
				any = true
			}
		}
		if !any {
			continue
		}
		for _, o := range n.Output {
			if o != "" && c.isFloat[o] {
				c.live[o] = true
			}
			if t := c.types[o]; o != "" && !c.isFloat[o] && (strings.Contains(t, "FLOAT16") || strings.Contains(t, "DOUBLE")) {
				c.lostPrecision = append(c.lostPrecision, lostGrad{n, o})
			}
		}
	}
	// everything the logits depend on, then the live part of it
	needed := map[string]bool{c.logits: true}
	for i := len(c.g.Node) - 1; i >= 0; i-- {
		n := c.g.Node[i]
		on, use := false, false
		for _, o := range n.Output {
			if needed[o] {
				use = true
				on = on || c.live[o]
			}
		}
		if !use {
			continue
		}
		if on {
			c.path = append(c.path, n)
		}
		for _, in := range n.Input {
			if in != "" {
				needed[in] = true
			}
		}
	}
	slices.Reverse(c.path)
	c.needed = needed
}

type lostGrad struct {
	n   *onnx.NodeProto
	out string
}

// checkSupported lists every op type on the gradient path that has no backward rule,
// and every node whose attributes a rule cannot handle, in one error.
func (c *buildCtx) checkSupported() error {
	missing := map[string]bool{}
	var bad []string
	for _, l := range c.lostPrecision {
		if c.needed[l.out] {
			bad = append(bad, fmt.Sprintf("%s %q: its output %q is %s; only float32 tensors are differentiated", l.n.GetOpType(), l.n.GetName(), l.out, strings.TrimPrefix(c.types[l.out], "ONNX_TENSOR_ELEMENT_DATA_TYPE_")))
		}
	}
	for _, n := range c.path {
		key := n.GetOpType()
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			key = d + "." + key
			missing[key] = true
			continue
		}
		r, ok := rules[key]
		if !ok {
			missing[key] = true
			continue
		}
		if r.check != nil {
			if err := r.check(c, n); err != nil {
				bad = append(bad, fmt.Sprintf("%s %q: %v", key, n.GetName(), err))
			}
		}
	}
	if len(missing) == 0 && len(bad) == 0 {
		return nil
	}
	var parts []string
	if len(missing) > 0 {
		ops := make([]string, 0, len(missing))
		for k := range missing {
			ops = append(ops, k)
		}
		sort.Strings(ops)
		parts = append(parts, "unsupported op types on the gradient path: "+strings.Join(ops, ", "))
	}
	if len(bad) > 0 {
		parts = append(parts, "unsupported node settings: "+strings.Join(bad, "; "))
	}
	return fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(parts, "; "))
}

// probeRequests collects the constant-valued inputs the rules need and any extra
// probe nodes (AveragePool divisor maps).
func (c *buildCtx) probeRequests() probeRequest {
	req := probeRequest{}
	consts := constantValues(c.g)
	for _, n := range c.path {
		r := rules[n.GetOpType()]
		for _, i := range r.values {
			if i < len(n.Input) && n.Input[i] != "" {
				name := n.Input[i]
				if _, ok := consts[name]; !ok {
					req.values = append(req.values, name)
				}
			}
		}
		if r.extra != nil {
			r.extra(c, n, &req)
		}
	}
	return req
}

func (c *buildCtx) backward() error {
	e := c.e
	consts := constantValues(c.g)
	for k, v := range consts {
		c.pr.values[k] = v
	}
	// The loss and its gradient with respect to the logits.
	var dz string
	nc := c.pr.shape2[c.logits][1]
	switch c.opts.Loss {
	case CrossEntropy:
		y := c.addInput(InputLabelWeights, []int64{-1, nc})
		// LogSoftmax from ops every provider has (ORT's WebGPU provider has no
		// LogSoftmax): s = z - max z, log softmax = s - log sum exp s, softmax = exp s /
		// sum exp s. On the CPU it costs the same as the fused op.
		sz := e.op("Sub", c.logits, e.opA("ReduceMax", []string{c.logits}, onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 1)))
		ex := e.op("Exp", sz)
		se := e.reduceSum(ex, []int64{1}, true)
		ls := e.op("Sub", sz, e.op("Log", se))
		p := e.op("Div", ex, se)
		e.node("Neg", []string{e.reduceSum(e.op("Mul", y, ls), []int64{1}, false)}, OutputLoss)
		// d/dz of -sum_c y_c log softmax(z)_c is softmax(z)*sum_c y_c - y (y need not sum to 1).
		dz = e.op("Sub", e.op("Mul", p, e.reduceSum(y, []int64{1}, true)), y)
	case LogitSeed:
		s := c.addInput(InputLogitSeed, []int64{-1, nc})
		e.node("Identity", []string{e.reduceSum(e.op("Mul", s, c.logits), []int64{1}, false)}, OutputLoss)
		dz = s
	}
	grads := map[string][]string{c.logits: {dz}}
	var errs []string
	for i := len(c.path) - 1; i >= 0; i-- {
		n := c.path[i]
		dys := make([]string, len(n.Output))
		anyGrad := false
		for j, o := range n.Output {
			if gs := grads[o]; len(gs) > 0 && c.live[o] {
				dys[j] = e.sum(gs)
				grads[o] = []string{dys[j]}
				c.sameShape(dys[j], o)
				anyGrad = true
			}
		}
		if !anyGrad {
			continue
		}
		need := make([]bool, len(n.Input))
		anyNeed := false
		for j, in := range n.Input {
			need[j] = in != "" && c.live[in] && !nonDiffInput(n, j)
			anyNeed = anyNeed || need[j]
		}
		if !anyNeed {
			continue
		}
		dxs, err := rules[n.GetOpType()].grad(c, n, dys, need)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s %q: %v", n.GetOpType(), n.GetName(), err))
			continue
		}
		for j, dx := range dxs {
			if dx != "" && need[j] {
				grads[n.Input[j]] = append(grads[n.Input[j]], dx)
				c.sameShape(dx, n.Input[j])
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(errs, "; "))
	}

	// Outputs replace the model's own.
	c.g.Output = nil
	switch {
	case c.logits == OutputLogits:
	case producers(c.g)[c.logits] != nil:
		// The node writes the output itself: an Identity copy would be one more node,
		// and GPU providers were seen to leave it on the CPU with a copy before it.
		renameTensor(c.g, c.logits, OutputLogits)
	default:
		e.node("Identity", []string{c.logits}, OutputLogits)
	}
	c.addOutput(OutputLogits, []int64{-1, nc})
	c.addOutput(OutputLoss, []int64{-1})
	if !c.opts.NoInputGrad {
		c.finishGrad(grads[c.image], c.image, OutputInputGrad, c.imageShape)
	}
	for _, p := range c.params {
		c.finishGrad(grads[p], p, GradPrefix+p, c.inits[p].Dims)
	}
	c.paramsToInputs()
	pruneDead(c.g)
	c.annotateShapes()
	return nil
}

// finishGrad sums a tensor's gradient contributions into the named output (zeros when
// the logits do not depend on it).
func (c *buildCtx) finishGrad(gs []string, of, name string, shape []int64) {
	e := c.e
	if len(gs) == 0 {
		e.node("Expand", []string{e.scalar(0), e.op("Shape", of)}, name)
	} else {
		e.node("Identity", []string{e.sum(gs)}, name)
	}
	c.addOutput(name, shape)
}

func (c *buildCtx) addInput(name string, shape []int64) string {
	c.g.Input = append(c.g.Input, valueInfo(name, shape))
	return name
}

func (c *buildCtx) addOutput(name string, shape []int64) {
	c.g.Output = append(c.g.Output, valueInfo(name, shape))
}

// paramsToInputs turns the differentiated initializers into graph inputs of the same
// name, so the caller feeds the current weights.
func (c *buildCtx) paramsToInputs() {
	if len(c.params) == 0 {
		return
	}
	isParam := map[string]bool{}
	for _, p := range c.params {
		isParam[p] = true
	}
	var keep []*onnx.TensorProto
	for _, t := range c.g.Initializer {
		if !isParam[t.GetName()] {
			keep = append(keep, t)
		}
	}
	c.g.Initializer = keep
	declared := map[string]bool{}
	for _, v := range c.g.Input {
		declared[v.GetName()] = true
	}
	for _, p := range c.params {
		if !declared[p] {
			c.g.Input = append(c.g.Input, valueInfo(p, c.inits[p].Dims))
		}
	}
}

// renameClashes moves any model tensor whose name is one Build adds out of the way
// (a model may well call its own output "logits").
func (c *buildCtx) renameClashes() error {
	reserved := []string{OutputLogits, OutputLoss, OutputInputGrad, InputLabelWeights, InputLogitSeed}
	for _, p := range c.params {
		reserved = append(reserved, GradPrefix+p)
	}
	used := usedNames(c.g)
	for _, r := range reserved {
		if !used[r] || (r == OutputLogits && c.logits == OutputLogits) {
			continue
		}
		if r == c.image || slices.Contains(c.params, r) {
			return fmt.Errorf("autodiff: input %q has a name Gibbon reserves for its gradient graph; rename it", r)
		}
		to := r
		for i := 1; used[to]; i++ {
			to = fmt.Sprintf("%s_model_%d", r, i)
		}
		used[to] = true
		renameTensor(c.g, r, to)
		c.isFloat[to], c.types[to] = c.isFloat[r], c.types[r]
		if c.logits == r {
			c.logits = to
		}
	}
	c.inits = map[string]*onnx.TensorProto{}
	for _, t := range c.g.Initializer {
		c.inits[t.GetName()] = t
	}
	return nil
}
