package inference

import (
	"context"
	"fmt"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// Session is one loaded ONNX graph. It is safe for concurrent Run calls (ORT sessions are).
type Session struct {
	rt      *Runtime
	s       *ort.DynamicAdvancedSession
	inputs  []ort.InputOutputInfo
	outputs []ort.InputOutputInfo

	closeOnce sync.Once
}

// IOInfo describes one graph input or output.
type IOInfo struct {
	Name  string
	Shape []int64 // -1 for a dynamic dimension
	Float bool    // element type is float32
	Type  string
}

// NewSession loads a serialized ONNX model.
func (r *Runtime) NewSession(model []byte) (*Session, error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("runtime is closed")
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		return nil, fmt.Errorf("read model inputs/outputs: %w", err)
	}
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
	names := func(infos []ort.InputOutputInfo) []string {
		n := make([]string, len(infos))
		for i, v := range infos {
			n[i] = v.Name
		}
		return n
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, names(ins), names(outs), opts)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	sess := &Session{rt: r, s: s, inputs: ins, outputs: outs}
	r.mu.Lock()
	r.sessions[sess] = struct{}{}
	r.mu.Unlock()
	return sess, nil
}

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
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			runOpts.Terminate()
		case <-done:
		}
	}()
	out := make([]ort.Value, len(s.outputs))
	err = s.s.RunWithOptions(in, out, runOpts)
	close(done)
	<-stopped
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
	res := make(map[string]any, len(out))
	for i, v := range out {
		switch t := v.(type) {
		case *ort.Tensor[float32]:
			res[s.outputs[i].Name] = &Tensor{Shape: append([]int64(nil), t.GetShape()...), Data: append([]float32(nil), t.GetData()...)}
		case *ort.Tensor[int64]:
			res[s.outputs[i].Name] = &Int64Tensor{Shape: append([]int64(nil), t.GetShape()...), Data: append([]int64(nil), t.GetData()...)}
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
