package gradbench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"gibbon/inference"
)

// profile runs a graph ProfileRuns+1 times on the CPU provider with ONNX Runtime's
// profiler on and returns the kernel time per op type per run, the first (warm-up)
// run left out. The session is made here rather than through inference.Runtime,
// which does not expose the profiler; the process-wide environment is the one the
// runtime opened.
func profile(ctx context.Context, model []byte, feeds map[string]*inference.Tensor, opts Options) ([]OpTime, []Kernel, error) {
	data, runs, err := profileRaw(ctx, model, feeds, opts)
	if err != nil {
		return nil, nil, err
	}
	return parseProfile(data, runs)
}

// profileRaw returns the profile's JSON and the number of runs after the warm-up.
func profileRaw(ctx context.Context, model []byte, feeds map[string]*inference.Tensor, opts Options) ([]byte, int, error) {
	dir, err := os.MkdirTemp("", "gibbon-gradbench-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		return nil, 0, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, 0, err
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(opts.Threads); err != nil {
		return nil, 0, err
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, 0, err
	}
	if err := so.EnableProfiling(filepath.Join(dir, "profile")); err != nil {
		return nil, 0, err
	}
	var inNames, outNames []string
	var inVals []ort.Value
	defer func() {
		for _, v := range inVals {
			v.Destroy()
		}
	}()
	for _, in := range ins {
		t, ok := feeds[in.Name]
		if !ok {
			return nil, 0, fmt.Errorf("no feed for input %q", in.Name)
		}
		v, err := ort.NewTensor(ort.NewShape(t.Shape...), t.Data)
		if err != nil {
			return nil, 0, err
		}
		inNames = append(inNames, in.Name)
		inVals = append(inVals, v)
	}
	for _, o := range outs {
		outNames = append(outNames, o.Name)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, inNames, outNames, so)
	if err != nil {
		return nil, 0, err
	}
	runs := 0
	for i := 0; i <= opts.ProfileRuns; i++ {
		if err := ctx.Err(); err != nil {
			s.Destroy()
			return nil, 0, err
		}
		out := make([]ort.Value, len(outNames))
		if err := s.Run(inVals, out); err != nil {
			s.Destroy()
			return nil, 0, err
		}
		for _, v := range out {
			if v != nil {
				v.Destroy()
			}
		}
		runs++
	}
	if err := s.Destroy(); err != nil { // ORT writes the profile when the session goes
		return nil, 0, err
	}
	files, _ := filepath.Glob(filepath.Join(dir, "profile*.json"))
	if len(files) != 1 {
		return nil, 0, fmt.Errorf("ONNX Runtime wrote %d profile files, want 1", len(files))
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return nil, 0, err
	}
	return data, runs - 1, nil
}

type event struct {
	Cat  string `json:"cat"`
	Name string `json:"name"`
	TS   int64  `json:"ts"`
	Dur  int64  `json:"dur"`
	Args struct {
		OpName string                     `json:"op_name"`
		Output []map[string][]json.Number `json:"output_type_shape"`
	} `json:"args"`
}

// nodeTime is one kernel's fastest time over the profiled runs.
type nodeTime struct {
	op    string
	min   int64   // microseconds
	shape []int64 // the first output's, where the profile gives it
}

// Kernel is one node's kernel time in one run (at its fastest): the node as ONNX
// Runtime names it after its graph optimisations (a fused Conv is named after the
// op fused into it, a blocked-layout one ends in _nchwc), its op type, and the shape
// of its first output.
type Kernel struct {
	Node  string
	Op    string
	Time  time.Duration
	Shape []int64
}

// nodeTimes reads the kernel times ("Node" events named <node>_kernel_time) of the
// last `runs` model runs, each node at its fastest: on a machine that other
// processes load, a kernel is often preempted in one run and not in another, and the
// minimum is the work it does.
func nodeTimes(data []byte, runs int) (map[string]*nodeTime, error) {
	var events []event
	if err := json.Unmarshal(data, &events); err != nil {
		return nil, fmt.Errorf("read ONNX Runtime profile: %w", err)
	}
	var starts []int64
	for _, e := range events {
		if e.Cat == "Session" && e.Name == "model_run" {
			starts = append(starts, e.TS)
		}
	}
	if len(starts) < runs || runs <= 0 {
		return nil, fmt.Errorf("the profile has %d runs, want at least %d", len(starts), runs)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	from := starts[len(starts)-runs]
	nodes := map[string]*nodeTime{}
	for _, e := range events {
		name, ok := strings.CutSuffix(e.Name, "_kernel_time")
		if e.Cat != "Node" || !ok || e.TS < from {
			continue
		}
		n := nodes[name]
		if n == nil {
			op := e.Args.OpName
			if op == "" {
				op = "?"
			}
			n = &nodeTime{op: op, min: e.Dur}
			nodes[name] = n
		}
		n.min = min(n.min, e.Dur)
		if n.shape == nil {
			n.shape = firstShape(e.Args.Output)
		}
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("the profile lists no kernel times")
	}
	return nodes, nil
}

// firstShape reads the first output's dimensions from a profile event's
// output_type_shape ([{"float":[1,96,112,112]}]); nil when it is not there.
func firstShape(outs []map[string][]json.Number) []int64 {
	if len(outs) == 0 {
		return nil
	}
	for _, dims := range outs[0] {
		shape := make([]int64, 0, len(dims))
		for _, d := range dims {
			v, err := d.Int64()
			if err != nil {
				return nil
			}
			shape = append(shape, v)
		}
		return shape
	}
	return nil
}

// parseProfile sums nodeTimes by op type, most time first, and lists the kernels,
// slowest first (ties by name).
func parseProfile(data []byte, runs int) ([]OpTime, []Kernel, error) {
	nodes, err := nodeTimes(data, runs)
	if err != nil {
		return nil, nil, err
	}
	kernels := make([]Kernel, 0, len(nodes))
	for name, n := range nodes {
		kernels = append(kernels, Kernel{Node: name, Op: n.op, Time: time.Duration(n.min) * time.Microsecond, Shape: n.shape})
	}
	sort.Slice(kernels, func(i, j int) bool {
		if kernels[i].Time != kernels[j].Time {
			return kernels[i].Time > kernels[j].Time
		}
		return kernels[i].Node < kernels[j].Node
	})
	type acc struct {
		us    int64
		nodes int
	}
	by := map[string]*acc{}
	var total int64
	for _, n := range nodes {
		a := by[n.op]
		if a == nil {
			a = &acc{}
			by[n.op] = a
		}
		a.us += n.min
		a.nodes++
		total += n.min
	}
	out := make([]OpTime, 0, len(by))
	for op, a := range by {
		share := 0.0
		if total > 0 {
			share = float64(a.us) / float64(total)
		}
		out = append(out, OpTime{Op: op, Time: time.Duration(a.us) * time.Microsecond, Share: share, Nodes: a.nodes})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		return out[i].Op < out[j].Op
	})
	return out, kernels, nil
}
