package attacknet

import (
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"gibbon/inference/onnx"
)

// Target is a frozen classifier the generator trains against: one image input on the
// pixel range (normalisation folded in, as attack.ONNXModel.Proto gives it) and logits
// as its first output.
type Target struct {
	Name    string
	Model   *onnx.ModelProto
	Classes int
}

// Objective is the training graph's output before differentiation: [N, 2·M·K + K] for
// M targets and K heads. Column m·K+k is target m's hinge loss on head k,
// relu(z_y − LSE_{j≠y} z_j + κ) (a smooth C&W margin, zero once the image is
// misclassified with room κ); column M·K + m·K+k is 1 where target m's prediction on
// head k's image differs from y and 0 elsewhere (no gradient; for progress reports).
// y is target m's prediction on the clean image, so unlabelled images train too.
// The last K columns are each head's mean squared tanh input (its saturation).
const Objective = "objective"

// bigLogit removes the label's logit from the log-sum-exp over the other classes.
const bigLogit = 1e4

// composeTraining joins the generator and the targets into one graph from the image
// to the Objective. The targets' weights are copied in as initializers (constants to
// autodiff); their clean forward pass is a separate copy of their nodes that shares
// those weights, so no gradient work is spent on it.
//
// With diverse, each target sees the adversarial images resampled first (input
// diversity, after Xie et al.'s DI-FGSM): rows and columns are mixed by matrices
// DiversityRows(i) [H,H] and DiversityCols(i) [W,W] (NCHW only), initializers set to
// the identity that the trainer feeds a fresh random zoom and shift every step.
func composeTraining(gen *onnx.ModelProto, spec Spec, targets []Target, kappa float64, diverse bool) (*onnx.ModelProto, error) {
	if len(targets) == 0 {
		return nil, fmt.Errorf("no target classifiers to train against")
	}
	s, err := spec.Normalized()
	if err != nil {
		return nil, err
	}
	m := proto.Clone(gen).(*onnx.ModelProto)
	g := m.Graph
	if len(g.Output) != 1 || g.Output[0].GetName() != Output {
		return nil, fmt.Errorf("generator graph must have the single output %q", Output)
	}
	g.Output = nil
	b := onnx.BuilderOn(g, onnx.DefaultOpset)
	K := int64(len(s.Eps))
	per := []int64{int64(s.Channels), int64(s.Height), int64(s.Width)}
	if s.Layout == "NHWC" {
		per = []int64{int64(s.Height), int64(s.Width), int64(s.Channels)}
	}
	// adv [N,K,...] → [K,N,...] → [K·N,...]: head-major, so logits reshape to [K,N,C].
	advT := b.Op("Transpose", []string{Output}, onnx.AttrInts("perm", 1, 0, 2, 3, 4))
	flat := b.Op("Reshape", []string{advT, b.Ints(-1, per[0], per[1], per[2])})

	var hinges, fooled []string
	for i, t := range targets {
		if t.Model == nil || t.Model.Graph == nil {
			return nil, fmt.Errorf("target %s has no graph", t.Name)
		}
		if t.Classes < 2 {
			return nil, fmt.Errorf("target %s has %d classes", t.Name, t.Classes)
		}
		if err := checkDomains(t); err != nil {
			return nil, err
		}
		prefix := fmt.Sprintf("target%d/", i)
		clean, err := graft(b, t.Model.Graph, Input, prefix+"clean/", prefix+"w/", true)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		seen := flat
		if diverse {
			if s.Layout != "NCHW" {
				return nil, fmt.Errorf("input diversity needs NCHW images")
			}
			rows, cols := DiversityRows(i), DiversityCols(i)
			b.Init(rows, []int64{per[1], per[1]}, identity(int(per[1])))
			b.Init(cols, []int64{per[2], per[2]}, identity(int(per[2])))
			seen = b.Op("MatMul", []string{rows, b.Op("MatMul", []string{flat, cols})})
		}
		z, err := graft(b, t.Model.Graph, seen, prefix+"adv/", prefix+"w/", false)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		C := int64(t.Classes)
		// y: the clean prediction, one-hot [N,C]; others: 1/(C−1) off y.
		y := b.Op("ArgMax", []string{clean}, onnx.AttrInt("axis", 1), onnx.AttrInt("keepdims", 0))
		oh := b.Op("OneHot", []string{y, b.Ints(C), b.Const([]int64{2}, 0, 1)}, onnx.AttrInt("axis", -1))
		others := b.Op("Mul", []string{b.Op("Sub", []string{b.Scalar(1), oh}), b.Scalar(1 / float32(C-1))})

		zk := b.Op("Reshape", []string{z, b.Ints(K, -1, C)}) // [K,N,C]
		zy := b.Op("ReduceSum", []string{b.Op("Mul", []string{zk, oh}), b.Ints(2)}, onnx.AttrInt("keepdims", 0))
		masked := b.Op("Sub", []string{zk, b.Op("Mul", []string{oh, b.Scalar(bigLogit)})})
		ls := b.Op("LogSoftmax", []string{masked}, onnx.AttrInt("axis", 2))
		// masked_j − logsoftmax_j is the log-sum-exp for every j; average it off y.
		lse := b.Op("ReduceSum", []string{b.Op("Mul", []string{b.Op("Sub", []string{masked, ls}), others}), b.Ints(2)},
			onnx.AttrInt("keepdims", 0))
		margin := b.Op("Sub", []string{zy, lse}) // [K,N]
		hinges = append(hinges, b.Op("Relu", []string{b.Op("Add", []string{margin, b.Scalar(float32(kappa))})}))

		pred := b.Op("ArgMax", []string{zk}, onnx.AttrInt("axis", 2), onnx.AttrInt("keepdims", 0))
		same := b.Op("Equal", []string{pred, y})
		fooled = append(fooled, b.Op("Cast", []string{b.Op("Not", []string{same})}, onnx.AttrInt("to", int64(onnx.TensorProto_FLOAT))))
	}
	// The heads' mean squared tanh input per image, [K, N]: penalised a little, it keeps
	// heads out of saturation, where tanh's gradient vanishes and a head would freeze.
	var pre string
	for _, n := range g.Node {
		if n.GetOpType() == "Tanh" {
			pre = n.Input[0]
		}
	}
	if pre == "" {
		return nil, fmt.Errorf("generator graph has no Tanh head")
	}
	sq := b.Op("ReduceMean", []string{b.Op("Mul", []string{pre, pre})}, onnx.AttrInts("axes", 2, 3, 4), onnx.AttrInt("keepdims", 0))
	sat := b.Op("Transpose", []string{sq}, onnx.AttrInts("perm", 1, 0))
	all := b.Op("Concat", append(append(slices.Clone(hinges), fooled...), sat), onnx.AttrInt("axis", 0)) // [2MK+K, N]
	b.Output(Objective, b.Op("Transpose", []string{all}, onnx.AttrInts("perm", 1, 0)), -1, 2*int64(len(targets))*K+K)
	return m, nil
}

// DiversityRows and DiversityCols name target i's resampling matrices in a training
// graph with input diversity: the target sees rows·x·cols per image and channel.
func DiversityRows(i int) string { return fmt.Sprintf("diversity/t%d/rows", i) }

// DiversityCols: see DiversityRows.
func DiversityCols(i int) string { return fmt.Sprintf("diversity/t%d/cols", i) }

func identity(n int) []float32 {
	m := make([]float32, n*n)
	for i := range n {
		m[i*n+i] = 1
	}
	return m
}

// resampleMatrix is bilinear resampling along one axis of n pixels, zoomed by s about
// the centre and shifted by d pixels, zero outside: out[i] = Σ_j A[i][j]·in[j].
// transpose gives Aᵀ (for x·Aᵀ on the last axis).
func resampleMatrix(n int, s, d float64, transpose bool) []float32 {
	m := make([]float32, n*n)
	c := float64(n-1) / 2
	for i := range n {
		p := (float64(i)-c-d)/s + c
		j := int(math.Floor(p))
		f := p - float64(j)
		for _, t := range []struct {
			j int
			w float64
		}{{j, 1 - f}, {j + 1, f}} {
			if t.j < 0 || t.j >= n || t.w == 0 {
				continue
			}
			if transpose {
				m[t.j*n+i] += float32(t.w)
			} else {
				m[i*n+t.j] += float32(t.w)
			}
		}
	}
	return m
}

// checkDomains refuses ops outside the default ONNX domain: the gradient rules cover
// standard ops only.
func checkDomains(t Target) error {
	for _, n := range t.Model.Graph.Node {
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			return fmt.Errorf("target %s uses %s.%s: Gibbon differentiates standard ONNX ops only", t.Name, d, n.GetOpType())
		}
		for _, a := range n.Attribute {
			if a.G != nil || len(a.Graphs) > 0 {
				return fmt.Errorf("target %s uses control flow (%s), which cannot be composed", t.Name, n.GetOpType())
			}
		}
	}
	return nil
}

// graft copies src's nodes into b's graph: its image input reads feed, its values get
// valuePrefix, its initializers initPrefix (added when addInits). It returns the name
// of src's first output inside b's graph.
func graft(b *onnx.Builder, src *onnx.GraphProto, feed, valuePrefix, initPrefix string, addInits bool) (string, error) {
	inits := map[string]bool{}
	for _, t := range src.Initializer {
		inits[t.GetName()] = true
	}
	var image string
	for _, v := range src.Input {
		if !inits[v.GetName()] {
			if image != "" {
				return "", fmt.Errorf("the classifier has more than one input (%s, %s)", image, v.GetName())
			}
			image = v.GetName()
		}
	}
	if image == "" {
		return "", fmt.Errorf("the classifier has no image input")
	}
	if len(src.Output) == 0 {
		return "", fmt.Errorf("the classifier has no outputs")
	}
	rename := func(s string) string {
		switch {
		case s == "":
			return ""
		case s == image:
			return feed
		case inits[s]:
			return initPrefix + s
		}
		return valuePrefix + s
	}
	g := b.Graph()
	if addInits {
		for _, t := range src.Initializer {
			c := proto.Clone(t).(*onnx.TensorProto)
			c.Name = proto.String(rename(t.GetName()))
			if !b.Reserve(c.GetName()) {
				return "", fmt.Errorf("initializer name %q clashes", c.GetName())
			}
			g.Initializer = append(g.Initializer, c)
		}
	}
	for _, n := range src.Node {
		c := proto.Clone(n).(*onnx.NodeProto)
		for i, s := range c.Input {
			c.Input[i] = rename(s)
		}
		for i, s := range c.Output {
			c.Output[i] = rename(s)
			if c.Output[i] != "" && !b.Reserve(c.Output[i]) {
				return "", fmt.Errorf("value name %q clashes", c.Output[i])
			}
		}
		c.Name = proto.String(b.Fresh(valuePrefix + "n"))
		g.Node = append(g.Node, c)
	}
	out := src.Output[0].GetName()
	if out == image {
		return "", fmt.Errorf("the classifier's output is its input")
	}
	return rename(out), nil
}
