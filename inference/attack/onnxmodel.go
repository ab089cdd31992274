package attack

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"gibbon/inference"
	"gibbon/inference/onnx"
)

// ModelOptions says how to adapt an ONNX classifier.
type ModelOptions struct {
	Name string
	// Input is the image input; "" means the graph's only non-initializer input.
	Input string
	// Mean and Std, per channel, are folded into the graph as (x−mean)/std in front, so
	// attacks work on the pixel range (the manifest's input contract).
	Mean, Std []float64
	// Layout places the channel axis for Mean/Std: "NCHW" (default) or "NHWC".
	Layout string
	// Shape is one image's shape [C,H,W] (or [H,W,C]), for graphs whose image
	// dimensions are dynamic; nil takes the graph's fixed dimensions.
	Shape []int64
	// RunBatch is the most images one ONNX Runtime run takes; larger batches are run
	// in consecutive slices of it. 0 picks it (see autoRunBatch); -1 runs every batch
	// whole.
	RunBatch int
}

// runBatchBudget is the input bytes per run autoRunBatch aims for on the CPU. A
// batch larger than the caches makes every pass of the gradient graph (masks,
// layout conversions, backward convolutions) stream its activations from memory:
// PGD-10 on MobileNetV2 at 224×224 runs slower per image at batch 16 than at batch 1
// (README, "Speed"). 256 KiB of input keeps 28×28 digits in batches of up to 83 and
// runs 224×224 colour images one at a time.
const runBatchBudget = 256 << 10

// autoRunBatch is the run batch for images of the given per-image shape on
// provider: on the CPU, as many as fit runBatchBudget bytes of input (at least one);
// elsewhere (a GPU), every batch whole.
func autoRunBatch(shape []int64, provider string) int {
	if provider != "cpu" {
		return 0
	}
	per := int64(4)
	for _, d := range shape[1:] {
		per *= max(d, 1)
	}
	return int(max(1, runBatchBudget/per))
}

// ONNXModel runs an ONNX classifier on ONNX Runtime: a forward session for Predict and,
// built on first use, autodiff graphs for Gradient. A terminal Softmax is cut off, so
// Predict returns logits. It is safe for concurrent use.
type ONNXModel struct {
	name    string
	rt      *inference.Runtime
	model   *onnx.ModelProto // image in pixel range → logits, single output
	input   string
	output  string
	shape   []int64 // image shape, batch -1
	classes int
	// cutSoftmax is set when the graph ended in a Softmax that was cut off.
	cutSoftmax bool
	// runBatch is the most images per session run (0: no limit); see
	// ModelOptions.RunBatch.
	runBatch int

	fwd *inference.Session

	mu    sync.Mutex
	grads map[LossKind]*inference.Session

	forwards, backwards atomic.Int64
}

// NewONNXModel adapts m (not modified) and checks it with one forward pass.
func NewONNXModel(ctx context.Context, rt *inference.Runtime, m *onnx.ModelProto, opts ModelOptions) (*ONNXModel, error) {
	if rt == nil {
		return nil, fmt.Errorf("no ONNX Runtime")
	}
	if m == nil || m.Graph == nil || len(m.Graph.Node) == 0 {
		return nil, fmt.Errorf("model %s: not an ONNX model (no graph)", opts.Name)
	}
	work := proto.Clone(m).(*onnx.ModelProto)
	input, shape, err := ImageInput(work.Graph, opts.Input, opts.Shape)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", opts.Name, err)
	}
	cut, err := logitsOnly(work)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", opts.Name, err)
	}
	if len(opts.Mean) > 0 || len(opts.Std) > 0 {
		if err := foldNormalization(work, input, shape, opts); err != nil {
			return nil, fmt.Errorf("model %s: %w", opts.Name, err)
		}
	}
	om, err := newFromPrepared(ctx, rt, opts.Name, work, input, shape)
	if err != nil {
		return nil, err
	}
	om.cutSoftmax = cut
	switch {
	case opts.RunBatch > 0:
		om.runBatch = opts.RunBatch
	case opts.RunBatch == 0:
		om.runBatch = autoRunBatch(shape, om.fwd.Provider())
	}
	return om, nil
}

func newFromPrepared(ctx context.Context, rt *inference.Runtime, name string, m *onnx.ModelProto, input string, shape []int64) (*ONNXModel, error) {
	data, err := onnx.Encode(m)
	if err != nil {
		return nil, fmt.Errorf("model %s: encode: %w", name, err)
	}
	s, err := rt.NewSession(data)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	om := &ONNXModel{name: name, rt: rt, model: m, input: input, output: m.Graph.Output[0].GetName(), shape: shape, fwd: s, grads: map[LossKind]*inference.Session{}}
	probe := append([]int64{1}, shape[1:]...)
	l, err := om.Predict(ctx, inference.NewTensor(probe...))
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("model %s: test run on a blank image %v: %w", name, probe, err)
	}
	om.forwards.Store(0)
	if len(l.Shape) != 2 || l.Shape[0] != 1 || l.Shape[1] < 2 {
		s.Close()
		return nil, fmt.Errorf("model %s: output has shape %v for one image, want logits [1, classes]", name, l.Shape)
	}
	om.classes = int(l.Shape[1])
	return om, nil
}

// Name is the model's name.
func (m *ONNXModel) Name() string { return m.name }

// Classes is the number of logits.
func (m *ONNXModel) Classes() int { return m.classes }

// InputShape is the image shape with the batch as −1.
func (m *ONNXModel) InputShape() []int64 { return append([]int64(nil), m.shape...) }

// CutSoftmax reports whether the graph ended in a Softmax that Predict leaves out.
func (m *ONNXModel) CutSoftmax() bool { return m.cutSoftmax }

// Proto is the adapted graph (pixel-range image → logits); do not modify it.
func (m *ONNXModel) Proto() *onnx.ModelProto { return m.model }

// Passes counts the images this model has passed forward and backward.
func (m *ONNXModel) Passes() (forward, backward int64) {
	return m.forwards.Load(), m.backwards.Load()
}

// Predict returns logits [N, classes].
func (m *ONNXModel) Predict(ctx context.Context, x *inference.Tensor) (*inference.Tensor, error) {
	if err := m.checkImages(x); err != nil {
		return nil, err
	}
	out, err := m.run(ctx, m.fwd, map[string]*inference.Tensor{m.input: x})
	if err != nil {
		return nil, err
	}
	l := out[m.output]
	if l == nil {
		return nil, fmt.Errorf("the graph returned no float output %q", m.output)
	}
	m.forwards.Add(x.Shape[0])
	return l, nil
}

// Gradient runs the autodiff graph for kind (built and cached on first use).
func (m *ONNXModel) Gradient(ctx context.Context, x *inference.Tensor, kind LossKind, w *inference.Tensor) (*Gradient, error) {
	if err := m.checkImages(x); err != nil {
		return nil, err
	}
	if w == nil || w.Validate() != nil || len(w.Shape) != 2 || w.Shape[0] != x.Shape[0] || int(w.Shape[1]) != m.classes {
		var shape []int64
		if w != nil {
			shape = w.Shape
		}
		return nil, fmt.Errorf("loss weights have shape %v, want [%d %d]", shape, x.Shape[0], m.classes)
	}
	s, err := m.gradSession(kind)
	if err != nil {
		return nil, err
	}
	out, err := m.run(ctx, s, map[string]*inference.Tensor{m.input: x, weightsInput(kind): w})
	if err != nil {
		return nil, err
	}
	g := &Gradient{Logits: out[outLogits], Input: out[outInputGrad]}
	if loss := out[outLoss]; loss != nil {
		g.Loss = loss.Data
	}
	if g.Logits == nil || g.Input == nil {
		return nil, fmt.Errorf("the gradient graph returned no %q or %q", outLogits, outInputGrad)
	}
	m.forwards.Add(x.Shape[0])
	m.backwards.Add(x.Shape[0])
	return g, nil
}

// CheckGradient builds the cross-entropy gradient graph (kept for Gradient) and
// returns why it cannot: an error wrapping autodiff.ErrUnsupported for a graph
// with ops or settings Gibbon cannot differentiate.
func (m *ONNXModel) CheckGradient() error {
	_, err := m.gradSession(CrossEntropy)
	return err
}

// Warm builds the gradient graphs of both loss kinds and runs each once on a blank
// image, so that the first attack pays neither the autodiff transform nor the
// runtime's first-run set-up; the passes are not counted as an attack's. It returns
// why the graphs cannot be built (wrapping autodiff.ErrUnsupported for a graph
// Gibbon cannot differentiate).
func (m *ONNXModel) Warm(ctx context.Context) error {
	x := inference.NewTensor(append([]int64{1}, m.shape[1:]...)...)
	w := inference.NewTensor(1, int64(m.classes))
	w.Data[0] = 1
	for _, kind := range []LossKind{CrossEntropy, LogitSeed} {
		s, err := m.gradSession(kind)
		if err != nil {
			return err
		}
		if _, err := s.Run(ctx, map[string]*inference.Tensor{m.input: x, weightsInput(kind): w}); err != nil {
			return err
		}
	}
	return nil
}

func (m *ONNXModel) gradSession(kind LossKind) (*inference.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.grads[kind]; s != nil {
		return s, nil
	}
	gm, err := buildGradient(m.rt, m.model, m.input, kind)
	if err != nil {
		return nil, fmt.Errorf("gradient graph: %w", err)
	}
	data, err := onnx.Encode(gm)
	if err != nil {
		return nil, fmt.Errorf("gradient graph: %w", err)
	}
	s, err := m.rt.NewSession(data)
	if err != nil {
		return nil, fmt.Errorf("gradient graph: %w", err)
	}
	m.grads[kind] = s
	return s, nil
}

// RunBatch is the most images one session run takes (0: no limit).
func (m *ONNXModel) RunBatch() int { return m.runBatch }

// run runs s on feeds whose first axis is the batch, in slices of at most
// m.runBatch images, and joins the outputs (every one batch-first) along that axis.
// The graphs treat each image on its own, so the result is the whole batch's.
func (m *ONNXModel) run(ctx context.Context, s *inference.Session, feeds map[string]*inference.Tensor) (map[string]*inference.Tensor, error) {
	n := int(feeds[m.input].Shape[0])
	if m.runBatch <= 0 || n <= m.runBatch {
		return s.Run(ctx, feeds)
	}
	parts := (n + m.runBatch - 1) / m.runBatch
	size := (n + parts - 1) / parts // even slices: 100 at 83 runs 50 + 50, not 83 + 17
	joined := map[string]*inference.Tensor{}
	for lo := 0; lo < n; lo += size {
		hi := min(lo+size, n)
		part := make(map[string]*inference.Tensor, len(feeds))
		for k, t := range feeds {
			part[k] = batchSlice(t, lo, hi)
		}
		out, err := s.Run(ctx, part)
		if err != nil {
			return nil, err
		}
		for k, t := range out {
			if len(t.Shape) == 0 || t.Shape[0] != int64(hi-lo) {
				return nil, fmt.Errorf("output %q has shape %v for a run of %d images, want the batch first", k, t.Shape, hi-lo)
			}
			j := joined[k]
			if j == nil {
				if lo > 0 {
					return nil, fmt.Errorf("output %q came only from a later run", k)
				}
				shape := append([]int64{int64(n)}, t.Shape[1:]...)
				j = &inference.Tensor{Shape: shape, Data: make([]float32, 0, n*(len(t.Data)/(hi-lo)))}
				joined[k] = j
			}
			j.Data = append(j.Data, t.Data...)
		}
	}
	for k, t := range joined {
		if t.Validate() != nil {
			return nil, fmt.Errorf("output %q: slices do not add up to shape %v", k, t.Shape)
		}
	}
	return joined, nil
}

// batchSlice is images lo..hi of t (batch first), sharing t's data.
func batchSlice(t *inference.Tensor, lo, hi int) *inference.Tensor {
	per := len(t.Data) / int(t.Shape[0])
	return &inference.Tensor{Shape: append([]int64{int64(hi - lo)}, t.Shape[1:]...), Data: t.Data[lo*per : hi*per]}
}

// Providers says where the model runs: the forward session's execution provider
// and the gradient graph's ("" until an attack builds one). A provider that did not
// start has already fallen back, so these are the providers in use.
func (m *ONNXModel) Providers() (forward, gradient string) {
	forward = m.fwd.Provider()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range []LossKind{CrossEntropy, LogitSeed} {
		if s := m.grads[k]; s != nil {
			return forward, s.Provider()
		}
	}
	return forward, ""
}

// Close releases the sessions.
func (m *ONNXModel) Close() {
	m.fwd.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, s := range m.grads {
		s.Close()
		delete(m.grads, k)
	}
}

func (m *ONNXModel) checkImages(x *inference.Tensor) error {
	if x == nil {
		return fmt.Errorf("no images")
	}
	if err := x.Validate(); err != nil {
		return err
	}
	if len(x.Shape) != len(m.shape) || x.Shape[0] < 1 || !sameShape(x.Shape[1:], m.shape[1:]) {
		return fmt.Errorf("images have shape %v, model %s takes %v (N images)", x.Shape, m.name, append([]int64{-1}, m.shape[1:]...))
	}
	return nil
}

// ImageInput finds a graph's image input and its fixed shape (batch −1); a dynamic
// image dimension takes the one in fallback (one image's shape), if given.
func ImageInput(g *onnx.GraphProto, want string, fallback []int64) (string, []int64, error) {
	inits := map[string]bool{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = true
	}
	var real []*onnx.ValueInfoProto
	var names []string
	for _, v := range g.Input {
		if !inits[v.GetName()] {
			real = append(real, v)
			names = append(names, v.GetName())
		}
	}
	var img *onnx.ValueInfoProto
	switch {
	case want != "":
		for _, v := range real {
			if v.GetName() == want {
				img = v
			}
		}
		if img == nil {
			return "", nil, fmt.Errorf("no input %q (inputs: %s)", want, strings.Join(names, ", "))
		}
		if len(real) > 1 {
			return "", nil, fmt.Errorf("inputs besides the image %q (%s): attacks need single-input classifiers", want, strings.Join(names, ", "))
		}
	case len(real) == 1:
		img = real[0]
	default:
		return "", nil, fmt.Errorf("want exactly one image input, the graph has %d (%s)", len(real), strings.Join(names, ", "))
	}
	tt := img.GetType().GetTensorType()
	if tt == nil || onnx.TensorProto_DataType(tt.GetElemType()) != onnx.TensorProto_FLOAT {
		return "", nil, fmt.Errorf("input %q is not a float tensor", img.GetName())
	}
	dims := tt.GetShape().GetDim()
	if len(dims) < 2 {
		return "", nil, fmt.Errorf("input %q has rank %d; want [N, ...]", img.GetName(), len(dims))
	}
	shape := []int64{-1}
	for i, d := range dims[1:] {
		v := d.GetDimValue()
		if v <= 0 && len(fallback) == len(dims)-1 {
			v = fallback[i]
		}
		if v <= 0 {
			return "", nil, fmt.Errorf("input %q has a dynamic dimension %d: re-export the model with a fixed image size", img.GetName(), i+1)
		}
		shape = append(shape, v)
	}
	return img.GetName(), shape, nil
}

// logitsOnly leaves the graph one output: the first output, or the input of a
// terminal Softmax (through Identity nodes), and reports whether it cut one off.
// Nodes that no longer feed the output are dropped.
func logitsOnly(m *onnx.ModelProto) (bool, error) {
	g := m.Graph
	if len(g.Output) == 0 {
		return false, fmt.Errorf("the graph has no outputs")
	}
	prod := map[string]*onnx.NodeProto{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			prod[o] = n
		}
	}
	out := g.Output[0].GetName()
	cut := false
	for {
		n := prod[out]
		if n == nil || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") {
			break
		}
		if n.GetOpType() == "Identity" {
			out = n.Input[0]
			continue
		}
		if n.GetOpType() == "Softmax" {
			out, cut = n.Input[0], true
		}
		break
	}
	if out != g.Output[0].GetName() {
		b := onnx.BuilderOn(g, onnx.Opset(m))
		name := "logits"
		if b.Used(name) {
			name = b.Fresh("logits")
		} else {
			b.Reserve(name)
		}
		g.Output = nil
		g.Node = append(g.Node, &onnx.NodeProto{OpType: proto.String("Identity"), Name: proto.String(b.Fresh("n_logits")),
			Input: []string{out}, Output: []string{name}})
		et := int32(onnx.TensorProto_FLOAT)
		g.Output = []*onnx.ValueInfoProto{{Name: proto.String(name), Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{ElemType: &et}}}}}
	} else {
		g.Output = g.Output[:1]
	}
	prune(g)
	return cut, nil
}

// prune drops nodes whose outputs reach no graph output.
func prune(g *onnx.GraphProto) {
	need := map[string]bool{}
	for _, o := range g.Output {
		need[o.GetName()] = true
	}
	keep := make([]bool, len(g.Node))
	for i := len(g.Node) - 1; i >= 0; i-- {
		n := g.Node[i]
		for _, o := range n.Output {
			if need[o] {
				keep[i] = true
			}
		}
		if keep[i] {
			for _, in := range n.Input {
				need[in] = true
			}
			for _, a := range n.Attribute {
				// Subgraphs read outer values by name: keep whatever they might use.
				if a.G != nil || len(a.Graphs) > 0 {
					for _, v := range g.Node {
						for _, o := range v.Output {
							need[o] = true
						}
					}
				}
			}
		}
	}
	var nodes []*onnx.NodeProto
	for i, n := range g.Node {
		if keep[i] {
			nodes = append(nodes, n)
		}
	}
	// Nodes listed out of order could be dropped wrongly by one reverse sweep: keep all then.
	if len(nodes) != len(g.Node) && topoOrdered(g) {
		g.Node = nodes
	}
}

func topoOrdered(g *onnx.GraphProto) bool {
	have := map[string]bool{"": true}
	for _, v := range g.Input {
		have[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		have[t.GetName()] = true
	}
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			if a.G != nil || len(a.Graphs) > 0 {
				return false
			}
		}
		for _, in := range n.Input {
			if !have[in] {
				return false
			}
		}
		for _, o := range n.Output {
			have[o] = true
		}
	}
	return true
}

// foldNormalization puts (x − mean)/std in front of the graph under the image's name.
func foldNormalization(m *onnx.ModelProto, input string, shape []int64, opts ModelOptions) error {
	if len(shape) != 4 {
		return fmt.Errorf("mean/std need a 4-d image input, %q has shape %v", input, shape)
	}
	layout, err := inference.ParseLayout(opts.Layout)
	if err != nil {
		return err
	}
	cAxis := 1
	if layout == inference.LayoutNHWC {
		cAxis = 3
	}
	c := int(shape[cAxis])
	for _, v := range [][]float64{opts.Mean, opts.Std} {
		if len(v) > 1 && len(v) != c {
			return fmt.Errorf("mean/std have %d and %d values for %d channels (want 1 or %d each)", len(opts.Mean), len(opts.Std), c, c)
		}
	}
	norm := inference.InputContract{Mean: opts.Mean, Std: opts.Std}
	mean, std := make([]float32, c), make([]float32, c)
	for ch := range c {
		m, s := norm.MeanStd(ch)
		mean[ch], std[ch] = float32(m), float32(s)
	}
	for i, s := range std {
		if !(s > 0) {
			return fmt.Errorf("std[%d] is %g; it must be positive", i, s)
		}
	}
	bshape := []int64{1, 1, 1, 1}
	bshape[cAxis] = int64(c)
	g := m.Graph
	for _, o := range g.Output {
		if o.GetName() == input {
			return fmt.Errorf("the image input is also an output")
		}
	}
	b := onnx.BuilderOn(g, onnx.Opset(m))
	before := len(g.Node)
	sub := b.Op("Sub", []string{input, b.Const(bshape, mean...)})
	inner := b.Op("Div", []string{sub, b.Const(bshape, std...)})
	for _, n := range g.Node[:before] {
		for i, in := range n.Input {
			if in == input {
				n.Input[i] = inner
			}
		}
	}
	// Move the new nodes to the front (graphs are topologically sorted).
	added := append([]*onnx.NodeProto(nil), g.Node[before:]...)
	g.Node = append(added, g.Node[:before]...)
	return nil
}
