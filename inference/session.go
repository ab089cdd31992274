package inference

import (
	"context"
	"fmt"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// Session is one loaded ONNX graph. It is safe for concurrent Run calls (ORT sessions are).
type Session struct {
	rt       *Runtime
	s        *ort.DynamicAdvancedSession
	inputs   []ort.InputOutputInfo
	outputs  []ort.InputOutputInfo
	provider string

	closeOnce sync.Once
}

// IOInfo describes one graph input or output.
type IOInfo struct {
	Name  string
	Shape []int64 // -1 for a dynamic dimension
	Float bool    // element type is float32
	Type  string
}

// NewSession loads a serialized ONNX model on the runtime's execution provider,
// falling back (one warning per provider) to the next one that starts.
func (r *Runtime) NewSession(model []byte) (*Session, error) {
	return r.newSession(model, r.cfg.EP, "")
}

// NewSessionOn is NewSession with another execution provider than the runtime's
// (auto, cpu, webgpu or cuda), e.g. to compare a GPU provider with the CPU.
func (r *Runtime) NewSessionOn(model []byte, ep string) (*Session, error) {
	ep, err := ParseEP(ep)
	if err != nil {
		return nil, err
	}
	return r.newSession(model, ep, "")
}

// newSession tries the candidate providers in order. A provider's failure is only
// blamed on the provider (warned about, not tried again) once a later one loaded the
// same model: when every provider fails, the model is at fault and its CPU error
// is returned. profilePrefix, when set, turns on ORT's profiler.
func (r *Runtime) newSession(model []byte, ep, profilePrefix string) (*Session, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("runtime is closed")
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		return nil, fmt.Errorf("read model inputs/outputs: %s", oneLine(err.Error()))
	}
	type failure struct {
		ep  string
		err error
	}
	var failed []failure
	for _, p := range r.candidates(ep) {
		s, err := r.createSession(model, ins, outs, p, profilePrefix)
		if err != nil {
			if p == EPWebGPU {
				r.mu.Lock()
				r.webgpuFailed = true
				r.mu.Unlock()
			}
			if p == EPCPU {
				return nil, err
			}
			failed = append(failed, failure{p, err})
			continue
		}
		for _, f := range failed {
			r.mu.Lock()
			st := r.eps[f.ep]
			everStarted := st != nil && st.started
			r.mu.Unlock()
			if everStarted {
				// It works for other models: warn about this one only.
				r.logger().Warn("execution provider could not load this model; falling back", "ep", f.ep, "using", p, "err", oneLine(f.err.Error()))
				continue
			}
			r.giveUp(f.ep, f.err, p)
		}
		r.started(p)
		sess := &Session{rt: r, s: s, inputs: ins, outputs: outs, provider: p}
		r.mu.Lock()
		r.sessions[sess] = struct{}{}
		r.mu.Unlock()
		return sess, nil
	}
	return nil, fmt.Errorf("no execution provider to try for %q", ep)
}

func (r *Runtime) createSession(model []byte, ins, outs []ort.InputOutputInfo, p, profilePrefix string) (*ort.DynamicAdvancedSession, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(r.cfg.IntraOpThreads); err != nil {
		return nil, err
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, err
	}
	var forceCPU []string
	if p == EPWebGPU {
		if model, forceCPU, err = webgpuForceCPU(model); err != nil {
			return nil, fmt.Errorf("read model: %w", err)
		}
	}
	hint := ""
	if p == EPCUDA {
		hint = " " + cudaHint
	}
	if err := appendProvider(opts, p, forceCPU); err != nil {
		return nil, fmt.Errorf("%s: %s%s", ORTProviderName(p), oneLine(err.Error()), hint)
	}
	if profilePrefix != "" {
		if err := opts.EnableProfiling(profilePrefix); err != nil {
			return nil, fmt.Errorf("enable profiling: %w", err)
		}
	}
	names := func(infos []ort.InputOutputInfo) []string {
		n := make([]string, len(infos))
		for i, v := range infos {
			n[i] = v.Name
		}
		return n
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, names(ins), names(outs), opts)
	if err != nil {
		return nil, fmt.Errorf("create session on %s: %s%s", p, oneLine(err.Error()), hint)
	}
	return s, nil
}

// Provider is the execution provider this session runs on (cpu, webgpu or cuda).
// Nodes the provider has no kernel for still run on the CPU: see Runtime.Placement.
func (s *Session) Provider() string { return s.provider }

// Inputs describes the graph inputs.
func (s *Session) Inputs() []IOInfo { return ioInfos(s.inputs) }

// Outputs describes the graph outputs.
func (s *Session) Outputs() []IOInfo { return ioInfos(s.outputs) }

func ioInfos(in []ort.InputOutputInfo) []IOInfo {
	out := make([]IOInfo, len(in))
	for i, v := range in {
		out[i] = IOInfo{Name: v.Name, Shape: append([]int64(nil), v.Dimensions...),
			Float: v.DataType == ort.TensorElementDataTypeFloat, Type: v.DataType.String()}
	}
	return out
}

// Close releases the session; safe to call twice.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		s.s.Destroy()
		s.rt.mu.Lock()
		delete(s.rt.sessions, s)
		s.rt.mu.Unlock()
	})
}

// Run feeds float inputs by name and returns every float output by name.
func (s *Session) Run(ctx context.Context, inputs map[string]*Tensor) (map[string]*Tensor, error) {
	feed := make(map[string]any, len(inputs))
	for k, v := range inputs {
		feed[k] = v
	}
	raw, err := s.RunValues(ctx, feed)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Tensor, len(raw))
	for k, v := range raw {
		if t, ok := v.(*Tensor); ok {
			out[k] = t
		}
	}
	return out, nil
}

// RunValues is Run for graphs with int64 inputs or outputs: values are *Tensor or
// *Int64Tensor. The context cancels a run in progress (ORT's RunOptions.Terminate).
func (s *Session) RunValues(ctx context.Context, inputs map[string]any) (map[string]any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	in := make([]ort.Value, len(s.inputs))
	defer func() {
		for _, v := range in {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	for i, info := range s.inputs {
		v, ok := inputs[info.Name]
		if !ok {
			return nil, fmt.Errorf("missing input %q", info.Name)
		}
		var err error
		switch t := v.(type) {
		case *Tensor:
			if err = t.Validate(); err == nil {
				in[i], err = ort.NewTensor(ort.Shape(t.Shape), t.Data)
			}
		case *Int64Tensor:
			in[i], err = ort.NewTensor(ort.Shape(t.Shape), t.Data)
		default:
			err = fmt.Errorf("unsupported value type %T", v)
		}
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", info.Name, err)
		}
	}
	if len(inputs) != len(s.inputs) {
		return nil, fmt.Errorf("graph takes %d inputs, got %d", len(s.inputs), len(inputs))
	}
	runOpts, err := ort.NewRunOptions()
	if err != nil {
		return nil, err
	}
	defer runOpts.Destroy()
	// ctx's end terminates the run. context.AfterFunc spawns no goroutine unless ctx
	// ends (a goroutine per run cost about a third of a one-digit MNIST pass in
	// scheduling); when the callback has started, wait for it before the deferred
	// Destroy frees the options it uses.
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		runOpts.Terminate()
	})
	out := make([]ort.Value, len(s.outputs))
	err = s.s.RunWithOptions(in, out, runOpts)
	if !stop() {
		<-terminated
	}
	defer func() {
		for _, v := range out {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("run: %w", err)
	}
	// The binding returns each output that the runtime allocated as a Go copy of its
	// values (out[i] was nil), which the deferred Destroy does not free: the results
	// keep those slices rather than copy them again.
	res := make(map[string]any, len(out))
	for i, v := range out {
		switch t := v.(type) {
		case *ort.Tensor[float32]:
			res[s.outputs[i].Name] = &Tensor{Shape: append([]int64(nil), t.GetShape()...), Data: t.GetData()}
		case *ort.Tensor[int64]:
			res[s.outputs[i].Name] = &Int64Tensor{Shape: append([]int64(nil), t.GetShape()...), Data: t.GetData()}
		case *ort.Tensor[bool]:
			b := t.GetData()
			f := make([]float32, len(b))
			for j, x := range b {
				if x {
					f[j] = 1
				}
			}
			res[s.outputs[i].Name] = &Tensor{Shape: append([]int64(nil), t.GetShape()...), Data: f}
		default:
			return nil, fmt.Errorf("output %q has unsupported type %T", s.outputs[i].Name, v)
		}
	}
	return res, nil
}
