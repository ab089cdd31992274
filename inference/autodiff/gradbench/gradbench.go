// Package gradbench measures what a gradient graph built by autodiff costs against
// the forward pass it extends: both run on the same runtime, alternately, so that load
// from other processes touches both alike, and the per-pair ratios' median is
// reported. With profiling on, ONNX Runtime's profiler says which op types take the
// time. PGD times the attack that runs those graphs, PGD-10, in images per second;
// Passes and ProfilePass time and profile plain forward passes, such as an attack
// network's. Used by `gibbon bench grad`, `gibbon bench pgd` and `gibbon bench
// attack-net`, and the autodiff package's Go benchmark.
package gradbench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
)

// Options configures Measure.
type Options struct {
	Batch  int // images per run; 0 means 1
	Reps   int // timed forward/gradient pairs; 0 means 5
	Warmup int // untimed pairs first; 0 means 1
	// Params, when set, are differentiated too (training-shaped graphs); by default
	// only the input gradient is computed, as attacks need.
	Params []string
	// Target picks the gradient graph's forms (autodiff.Options.Target): comparing
	// TargetCPU and TargetGPU on the CPU says what the GPU forms cost there.
	Target autodiff.Target
	// Profile runs each graph ProfileRuns more times (0 means 3) under ONNX Runtime's
	// profiler with Threads intra-op threads (0 means 1, the runtime's default) and
	// reports the time per op type.
	Profile     bool
	ProfileRuns int // 0 means 3
	Threads     int
}

// Result is one model's measurement. Times are medians over the timed runs.
type Result struct {
	Name         string
	Batch        int
	ForwardNodes int
	GradNodes    int
	Build        time.Duration // autodiff.Build (probes included)
	Forward      time.Duration // wall clock
	Grad         time.Duration // forward + backward: one run of the gradient graph
	RatioWall    float64       // median over pairs of Grad/Forward (wall clock)
	// CPU times (Linux): the ratio is taken from them when they exist, as other
	// processes' load inflates wall times unevenly. ThreadCPU: they are the CPU time
	// of the thread that ran the graphs, not the whole process's (see Times).
	ForwardCPU, GradCPU time.Duration
	HasCPU, ThreadCPU   bool
	Ratio               float64 // median over pairs of GradCPU/ForwardCPU, else RatioWall
	Reps                int
	ForwardOps, GradOps []OpTime // from the profiler, by time, most first
	GradKernels         []Kernel // the gradient graph's kernels, slowest first
}

// OpTime is the kernel time of one op type in one run (each node at its fastest).
type OpTime struct {
	Op    string
	Time  time.Duration
	Share float64 // of all kernel time in the graph
	Nodes int     // kernels of this type that ran per run
}

// Pair is a model's forward and gradient sessions, loaded and fed.
type Pair struct {
	Name                string
	ForwardNodes        int
	GradNodes           int
	Build               time.Duration // autodiff.Build (probes included)
	fwd, grad           *inference.Session
	fwdData, gradData   []byte
	fwdFeeds, gradFeeds map[string]*inference.Tensor
	// threadCPU: both graphs run on the CPU with one intra-op thread, so all of ONNX
	// Runtime's work runs on the thread that calls Run (see Times).
	threadCPU bool
}

// NewPair builds m's gradient graph (cross-entropy loss; the input gradient and any
// opts.Params) and loads both graphs on rt, fed with a batch of opts.Batch images drawn
// uniformly from [0,1] and one-hot labels.
func NewPair(rt *inference.Runtime, name string, m *onnx.ModelProto, opts Options) (*Pair, error) {
	if opts.Batch <= 0 {
		opts.Batch = 1
	}
	p := &Pair{Name: name, ForwardNodes: len(m.Graph.Node)}
	start := time.Now()
	gm, err := autodiff.Build(rt, m, autodiff.Options{Loss: autodiff.CrossEntropy, Params: opts.Params, Target: opts.Target})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.Build = time.Since(start)
	p.GradNodes = len(gm.Graph.Node)
	if p.fwdData, err = onnx.Encode(m); err != nil {
		return nil, err
	}
	if p.gradData, err = onnx.Encode(gm); err != nil {
		return nil, err
	}
	if p.fwdFeeds, p.gradFeeds, err = feeds(m, gm, opts); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if p.fwd, err = rt.NewSession(p.fwdData); err != nil {
		return nil, fmt.Errorf("%s: load forward graph: %w", name, err)
	}
	if p.grad, err = rt.NewSession(p.gradData); err != nil {
		p.fwd.Close()
		return nil, fmt.Errorf("%s: load gradient graph: %w", name, err)
	}
	p.threadCPU = rt.IntraOpThreads() == 1 && p.fwd.Provider() == "cpu" && p.grad.Provider() == "cpu"
	return p, nil
}

// Close releases the sessions.
func (p *Pair) Close() {
	p.fwd.Close()
	p.grad.Close()
}

// Times are one forward run and one run of the gradient graph: wall clock, and CPU
// time where the OS gives it (Linux). On a machine other processes load, CPU time is
// the steadier measure of the work done: a preempted run's wall time counts the time
// other processes ran, its CPU time does not. With one intra-op thread on the CPU it
// is the CPU time of the thread that ran the graph, which is all of ONNX Runtime's
// work. The whole process's would also count what the Go runtime's other threads do
// meanwhile, mostly its monitor thread (sysmon), which takes the processor back from
// a cgo call longer than 10 ms and then polls every 20 µs for a while: on MobileNetV2
// that added about 1.1 ms to each 7.2 ms forward run, which follows the 20 ms
// gradient graph, and 0.2 ms to the gradient graph's, taking the ratio from 2.79 to
// 2.44. With more threads, or on a GPU, it is the process's.
type Times struct {
	Forward, Grad       time.Duration
	ForwardCPU, GradCPU time.Duration // zero when HasCPU is false
	HasCPU              bool
}

// Run times one forward run, then one run of the gradient graph.
func (p *Pair) Run(ctx context.Context) (Times, error) {
	var t Times
	cpu := cpuTime
	if p.threadCPU {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cpu = threadCPUTime
	}
	c0, ok0 := cpu()
	t0 := time.Now()
	if _, err := p.fwd.Run(ctx, p.fwdFeeds); err != nil {
		return t, fmt.Errorf("%s: forward: %w", p.Name, err)
	}
	t1 := time.Now()
	c1, ok1 := cpu()
	if _, err := p.grad.Run(ctx, p.gradFeeds); err != nil {
		return t, fmt.Errorf("%s: gradient: %w", p.Name, err)
	}
	t2 := time.Now()
	c2, ok2 := cpu()
	t.Forward, t.Grad = t1.Sub(t0), t2.Sub(t1)
	if ok0 && ok1 && ok2 {
		t.ForwardCPU, t.GradCPU, t.HasCPU = c1-c0, c2-c1, true
	}
	return t, nil
}

// Profile runs both graphs under the profiler (see Options.Profile): the time per op
// type of each, and the gradient graph's kernels.
func (p *Pair) Profile(ctx context.Context, opts Options) (fwdOps, gradOps []OpTime, gradKernels []Kernel, err error) {
	opts = opts.withDefaults()
	if fwdOps, _, err = profile(ctx, p.fwdData, p.fwdFeeds, opts); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: profile forward graph: %w", p.Name, err)
	}
	if gradOps, gradKernels, err = profile(ctx, p.gradData, p.gradFeeds, opts); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: profile gradient graph: %w", p.Name, err)
	}
	return fwdOps, gradOps, gradKernels, nil
}

func (o Options) withDefaults() Options {
	if o.Batch <= 0 {
		o.Batch = 1
	}
	if o.Reps <= 0 {
		o.Reps = 5
	}
	if o.Warmup <= 0 {
		o.Warmup = 1
	}
	if o.ProfileRuns <= 0 {
		o.ProfileRuns = 3
	}
	if o.Threads <= 0 {
		o.Threads = 1
	}
	return o
}

// Measure times m's gradient graph against its forward pass: opts.Warmup untimed
// pairs, then opts.Reps timed ones, alternating.
func Measure(ctx context.Context, rt *inference.Runtime, name string, m *onnx.ModelProto, opts Options) (*Result, error) {
	opts = opts.withDefaults()
	p, err := NewPair(rt, name, m, opts)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	res := &Result{Name: name, Batch: opts.Batch, ForwardNodes: p.ForwardNodes, GradNodes: p.GradNodes, Build: p.Build, Reps: opts.Reps}
	var fwdT, gradT, fwdC, gradC []time.Duration
	var ratios, cpuRatios []float64
	hasCPU := true
	for i := 0; i < opts.Warmup+opts.Reps; i++ {
		t, err := p.Run(ctx)
		if err != nil {
			return nil, err
		}
		if i < opts.Warmup {
			continue
		}
		fwdT, gradT = append(fwdT, t.Forward), append(gradT, t.Grad)
		ratios = append(ratios, t.Grad.Seconds()/t.Forward.Seconds())
		hasCPU = hasCPU && t.HasCPU
		if t.HasCPU && t.ForwardCPU > 0 {
			fwdC, gradC = append(fwdC, t.ForwardCPU), append(gradC, t.GradCPU)
			cpuRatios = append(cpuRatios, t.GradCPU.Seconds()/t.ForwardCPU.Seconds())
		}
	}
	res.Forward, res.Grad, res.RatioWall = median(fwdT), median(gradT), median(ratios)
	res.Ratio = res.RatioWall
	if hasCPU && len(cpuRatios) == len(ratios) {
		res.HasCPU, res.ThreadCPU = true, p.threadCPU
		res.ForwardCPU, res.GradCPU, res.Ratio = median(fwdC), median(gradC), median(cpuRatios)
	}
	if opts.Profile {
		if res.ForwardOps, res.GradOps, res.GradKernels, err = p.Profile(ctx, opts); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// feeds makes the image (uniform in [0,1], fixed seed), one-hot labels and the
// params' current values.
func feeds(m, gm *onnx.ModelProto, opts Options) (fwdFeeds, gradFeeds map[string]*inference.Tensor, err error) {
	var img *onnx.ValueInfoProto
	inits := map[string]*onnx.TensorProto{}
	for _, t := range m.Graph.Initializer {
		inits[t.GetName()] = t
	}
	for _, v := range m.Graph.Input {
		if inits[v.GetName()] == nil {
			img = v
			break
		}
	}
	if img == nil {
		return nil, nil, fmt.Errorf("model has no input")
	}
	shape := []int64{int64(opts.Batch)}
	for _, d := range img.GetType().GetTensorType().GetShape().GetDim()[1:] {
		shape = append(shape, d.GetDimValue())
	}
	x := inference.NewTensor(shape...)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	var classes int64
	for _, o := range gm.Graph.Output {
		if o.GetName() == autodiff.OutputLogits {
			classes = o.GetType().GetTensorType().GetShape().GetDim()[1].GetDimValue()
		}
	}
	if classes <= 0 {
		return nil, nil, fmt.Errorf("gradient graph declares no class count")
	}
	y := inference.NewTensor(int64(opts.Batch), classes)
	for i := 0; i < opts.Batch; i++ {
		y.Data[int64(i)*classes+int64(i)%classes] = 1
	}
	fwdFeeds = map[string]*inference.Tensor{img.GetName(): x}
	gradFeeds = map[string]*inference.Tensor{img.GetName(): x, autodiff.InputLabelWeights: y}
	for _, p := range opts.Params {
		t := inits[p]
		v, err := onnx.FloatData(t)
		if err != nil {
			return nil, nil, fmt.Errorf("param %q: %w", p, err)
		}
		gradFeeds[p] = &inference.Tensor{Shape: append([]int64(nil), t.Dims...), Data: v}
	}
	return fwdFeeds, gradFeeds, nil
}

func median[T time.Duration | float64](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
