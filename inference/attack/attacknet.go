package attack

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"gibbon/inference"
	"gibbon/inference/onnx"
)

// AttackNetwork is the method results of RunNetwork carry. Run does not take it: an
// attack network is a trained model, not a loop (see inference/attacknet).
const AttackNetwork Method = "attack-network"

// Network is a trained attack network: one forward pass maps clean images [N, ...] to
// adversarial ones, one per head, [N, K, ...] for K budgets ε. Safe for concurrent use.
type Network struct {
	name   string
	sess   *inference.Session
	input  string
	output string
	shape  []int64 // image shape, batch −1
	eps    []float32
	heads  []float64 // eps as the manifest writes them
	rng    [2]float32

	forwards atomic.Int64
}

// NetworkOptions says how to read an attack network's graph.
type NetworkOptions struct {
	Name string
	// Eps are the heads' budgets on Range, in output order (the manifest's attack.eps).
	Eps []float64
	// Range is the pixel range of input and output; zero means [0,1].
	Range [2]float64
}

// NewNetwork loads an attack network's graph (one image input, one output) and checks
// it with one pass on a blank image.
func NewNetwork(ctx context.Context, rt *inference.Runtime, m *onnx.ModelProto, opts NetworkOptions) (*Network, error) {
	if rt == nil {
		return nil, errors.New("no ONNX Runtime")
	}
	if m == nil || m.Graph == nil || len(m.Graph.Node) == 0 {
		return nil, fmt.Errorf("attack network %s: not an ONNX model (no graph)", opts.Name)
	}
	if len(opts.Eps) == 0 {
		return nil, fmt.Errorf("attack network %s: no ε heads given", opts.Name)
	}
	rng := opts.Range
	if rng == [2]float64{} {
		rng = [2]float64{0, 1}
	}
	if !(rng[1] > rng[0]) {
		return nil, fmt.Errorf("attack network %s: pixel range [%g,%g] is empty", opts.Name, rng[0], rng[1])
	}
	n := &Network{name: opts.Name, rng: [2]float32{float32(rng[0]), float32(rng[1])}}
	for _, e := range opts.Eps {
		if !(e > 0) || e > rng[1]-rng[0] {
			return nil, fmt.Errorf("attack network %s: head ε %g must be positive and at most the range width", opts.Name, e)
		}
		n.eps = append(n.eps, float32(e))
		n.heads = append(n.heads, e)
	}
	var err error
	if n.input, n.shape, err = ImageInput(m.Graph, "", nil); err != nil {
		return nil, fmt.Errorf("attack network %s: %w", opts.Name, err)
	}
	if len(m.Graph.Output) != 1 {
		return nil, fmt.Errorf("attack network %s: the graph has %d outputs, want one (the adversarial images)", opts.Name, len(m.Graph.Output))
	}
	n.output = m.Graph.Output[0].GetName()
	data, err := onnx.Encode(m)
	if err != nil {
		return nil, fmt.Errorf("attack network %s: encode: %w", opts.Name, err)
	}
	if n.sess, err = rt.NewSession(data); err != nil {
		return nil, fmt.Errorf("attack network %s: %w", opts.Name, err)
	}
	probe := inference.NewTensor(append([]int64{1}, n.shape[1:]...)...)
	for i := range probe.Data {
		probe.Data[i] = n.rng[0]
	}
	if _, err := n.Generate(ctx, probe); err != nil {
		n.sess.Close()
		return nil, fmt.Errorf("attack network %s: test run on a blank image: %w", opts.Name, err)
	}
	n.forwards.Store(0)
	return n, nil
}

// Name is the network's name.
func (n *Network) Name() string { return n.name }

// Provider is the execution provider the network's session runs on.
func (n *Network) Provider() string { return n.sess.Provider() }

// Eps are the heads' budgets, in output order.
func (n *Network) Eps() []float32 { return append([]float32(nil), n.eps...) }

// Heads are the budgets as given (float64, e.g. exactly 0.1), in output order.
func (n *Network) Heads() []float64 { return append([]float64(nil), n.heads...) }

// Range is the pixel range of its images.
func (n *Network) Range() [2]float32 { return n.rng }

// InputShape is the image shape with the batch as −1.
func (n *Network) InputShape() []int64 { return append([]int64(nil), n.shape...) }

// Passes counts the images the network has transformed.
func (n *Network) Passes() int64 { return n.forwards.Load() }

// Close releases the session.
func (n *Network) Close() { n.sess.Close() }

// Head finds the head of budget eps (equal up to float32 rounding).
func (n *Network) Head(eps float32) (int, error) {
	for k, e := range n.eps {
		if math.Abs(float64(e)-float64(eps)) <= 1e-6*math.Max(1, float64(e)) {
			return k, nil
		}
	}
	heads := make([]string, len(n.eps))
	for k, e := range n.eps {
		heads[k] = inference.EpsOn(e, n.rng).String()
	}
	return 0, fmt.Errorf("attack network %s has no head for ε %s (its heads: %s)", n.name, inference.EpsOn(eps, n.rng).String(), strings.Join(heads, ", "))
}

// Generate runs the network once: one tensor per head, each shaped like x. The values
// are the network's own (not quantised); RunNetwork puts them on the 8-bit grid.
func (n *Network) Generate(ctx context.Context, x *inference.Tensor) ([]*inference.Tensor, error) {
	if x == nil {
		return nil, errors.New("no images")
	}
	if err := x.Validate(); err != nil {
		return nil, err
	}
	if len(x.Shape) != len(n.shape) || x.Shape[0] < 1 || !sameShape(x.Shape[1:], n.shape[1:]) {
		return nil, fmt.Errorf("images have shape %v, attack network %s takes %v (N images)", x.Shape, n.name, n.shape)
	}
	out, err := n.sess.Run(ctx, map[string]*inference.Tensor{n.input: x})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("attack network %s: %w", n.name, err)
	}
	y := out[n.output]
	K := len(n.eps)
	if y == nil || len(y.Data) != K*len(x.Data) || y.Shape[0] != x.Shape[0] {
		var shape []int64
		if y != nil {
			shape = y.Shape
		}
		return nil, fmt.Errorf("attack network %s returned shape %v for images %v; want %d heads per image", n.name, shape, x.Shape, K)
	}
	if !inference.AllFinite(y.Data) {
		return nil, fmt.Errorf("attack network %s returned a non-finite value", n.name)
	}
	N, per := int(x.Shape[0]), len(x.Data)/int(x.Shape[0])
	heads := make([]*inference.Tensor, K)
	for k := range heads {
		h := inference.NewTensor(x.Shape...)
		for i := range N {
			copy(h.Data[i*per:(i+1)*per], y.Data[(i*K+k)*per:(i*K+k+1)*per])
		}
		heads[k] = h
	}
	n.forwards.Add(int64(N))
	return heads, nil
}

// RunNetwork attacks req.Images with the head of budget cfg.Eps: one forward pass, the
// output put on the 8-bit grid inside the ε ball (unless cfg.NoQuantize), then judged
// on every model of req like Run's result. Surrogates here are the models the network
// was trained against (only reported as such). The Result's Forward and Backward are
// 0: the attack itself queries no classifier. onStep gets the one, final step.
func RunNetwork(ctx context.Context, net *Network, cfg Config, req Request, onStep StepFunc) (*Result, error) {
	if net == nil {
		return nil, errors.New("no attack network")
	}
	k, err := net.Head(cfg.Eps)
	if err != nil {
		return nil, err
	}
	res, err := runNetwork(ctx, net, cfg, req, []int{k}, onStep)
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// RunNetworkHeads is RunNetwork for every head from the same pass (cfg.Eps is ignored;
// each Result carries its head's). Each Result's Wall is the shared pass plus that
// head's quantisation.
func RunNetworkHeads(ctx context.Context, net *Network, cfg Config, req Request) ([]*Result, error) {
	if net == nil {
		return nil, errors.New("no attack network")
	}
	heads := make([]int, len(net.eps))
	for k := range heads {
		heads[k] = k
	}
	return runNetwork(ctx, net, cfg, req, heads, nil)
}

func runNetwork(ctx context.Context, net *Network, cfg Config, req Request, heads []int, onStep StepFunc) ([]*Result, error) {
	if cfg.Range == [2]float32{} {
		cfg.Range = net.rng
	}
	if cfg.Range != net.rng {
		return nil, fmt.Errorf("attack network %s works on [%g,%g], the request says [%g,%g]", net.name, net.rng[0], net.rng[1], cfg.Range[0], cfg.Range[1])
	}
	if cfg.Target != Untargeted {
		return nil, fmt.Errorf("attack network %s is untargeted: it cannot aim for a class", net.name)
	}
	cfg.Method, cfg.Steps, cfg.Loss = AttackNetwork, 1, LossCE
	if l, err := inference.ParseLayout(cfg.Layout); err == nil {
		cfg.Layout = l
	}
	x0 := req.Images
	if x0 == nil {
		return nil, errors.New("no images to attack")
	}
	if err := x0.Validate(); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	if len(x0.Shape) < 2 || x0.Shape[0] < 1 {
		return nil, fmt.Errorf("images must be a non-empty batch [N, ...], got shape %v", x0.Shape)
	}
	n := int(x0.Shape[0])
	models := append(append([]Model(nil), req.Surrogates...), req.Others...)
	seen := map[string]bool{}
	for _, m := range models {
		if m.Net == nil || m.Name == "" {
			return nil, errors.New("every model needs a name and a network")
		}
		if seen[m.Name] {
			return nil, fmt.Errorf("model %s is listed twice", m.Name)
		}
		seen[m.Name] = true
	}
	if len(models) == 0 {
		return nil, errors.New("no model to judge the attack network on")
	}
	if req.Labels != nil && len(req.Labels) != n {
		return nil, fmt.Errorf("%d labels for %d images", len(req.Labels), n)
	}
	// The balls check the range before any pass.
	balls := make([]*Ball, len(heads))
	for j, k := range heads {
		b, err := newBall(x0.Data, net.eps[k], cfg.Range, !cfg.NoQuantize)
		if err != nil {
			return nil, err
		}
		balls[j] = b
	}

	start := time.Now()
	out, err := net.Generate(ctx, x0)
	if err != nil {
		return nil, err
	}
	pass := time.Since(start)

	clean := make([]*inference.Tensor, len(models))
	classes := 0
	for i, m := range models {
		l, err := m.Net.Predict(ctx, x0)
		if err != nil {
			return nil, wrapModelErr(ctx, m.Name, err)
		}
		if err := checkLogits(m.Name, l, n, classes); err != nil {
			return nil, err
		}
		classes = int(l.Shape[1])
		clean[i] = l
	}
	labels := req.Labels
	if labels == nil {
		judges := clean[:max(len(req.Surrogates), 1)]
		labels = preds(meanLogits(judges))
	}
	for i, l := range labels {
		if l < 0 || l >= classes {
			return nil, fmt.Errorf("label %d of image %d is not a class of the models (they have %d)", l, i, classes)
		}
	}

	var results []*Result
	for j, k := range heads {
		hstart := time.Now()
		adv := out[k]
		offGrid := balls[j].Quantize(adv.Data)
		wall := pass + time.Since(hstart)
		c := cfg
		c.Eps = net.eps[k]
		res := &Result{Config: c, Adv: adv, Labels: append([]int(nil), labels...), Wall: wall, Seed: cfg.Seed, OffGrid: offGrid}
		res.Linf, res.L2 = norms(adv.Data, x0.Data, n)
		for _, v := range res.Linf {
			res.LinfMax = max(res.LinfMax, v)
		}
		var surLogits []*inference.Tensor
		for i, m := range models {
			l, err := m.Net.Predict(ctx, adv)
			if err != nil {
				return nil, wrapModelErr(ctx, m.Name, err)
			}
			if err := checkLogits(m.Name, l, n, classes); err != nil {
				return nil, err
			}
			sur := i < len(req.Surrogates)
			if sur {
				surLogits = append(surLogits, l)
			}
			res.Models = append(res.Models, judge(m.Name, sur, clean[i], l, labels))
		}
		if onStep != nil {
			step := Step{Step: 1, Steps: 1, Final: true, Adv: adv, Logits: surLogits}
			if len(surLogits) > 0 {
				step.Pred = preds(meanLogits(surLogits))
				step.Loss = make([]float32, n)
				for _, l := range surLogits {
					for i := range n {
						step.Loss[i] += crossEntropy(row(l, i), labels[i]) / float32(len(surLogits))
					}
				}
			}
			if err := onStep(step); err != nil {
				return nil, err
			}
		}
		results = append(results, res)
	}
	return results, nil
}

// judge is one model's untargeted verdict: success where the prediction on the
// adversarial image differs from the label.
func judge(name string, surrogate bool, clean, adv *inference.Tensor, labels []int) ModelResult {
	n := len(labels)
	mr := ModelResult{Name: name, Surrogate: surrogate, Clean: preds(clean), Adv: preds(adv), Success: make([]bool, n)}
	var succ, cc, ac int
	for i := range n {
		mr.Success[i] = mr.Adv[i] != labels[i]
		if mr.Success[i] {
			succ++
		}
		if mr.Clean[i] == labels[i] {
			cc++
		}
		if mr.Adv[i] == labels[i] {
			ac++
		}
	}
	mr.SuccessRate = float64(succ) / float64(n)
	mr.CleanAccuracy = float64(cc) / float64(n)
	mr.AdvAccuracy = float64(ac) / float64(n)
	return mr
}
