package gradbench

import (
	"context"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"gibbon/inference/benchnets"
	"gibbon/internal/testrt"
)

// A profile as ONNX Runtime writes it: a warm-up run, then two runs; node a was
// preempted in one of them.
const twoRuns = `[
{"cat":"Session","name":"model_run","ts":100,"dur":50},
{"cat":"Node","name":"a_kernel_time","ts":110,"dur":900,"args":{"op_name":"Conv"}},
{"cat":"Node","name":"a_fence_before","ts":110,"dur":0,"args":{"op_name":"Conv"}},
{"cat":"Session","name":"model_run","ts":200,"dur":50},
{"cat":"Node","name":"a_kernel_time","ts":210,"dur":40,"args":{"op_name":"Conv"}},
{"cat":"Node","name":"b_kernel_time","ts":220,"dur":10,"args":{"op_name":"Mul"}},
{"cat":"Node","name":"c_kernel_time","ts":230,"dur":12,"args":{"op_name":"Mul"}},
{"cat":"Session","name":"model_run","ts":300,"dur":50},
{"cat":"Node","name":"a_kernel_time","ts":310,"dur":30,"args":{"op_name":"Conv","output_type_shape":[{"float":[1,16,8,8]}]}},
{"cat":"Node","name":"b_kernel_time","ts":320,"dur":11,"args":{"op_name":"Mul"}},
{"cat":"Node","name":"c_kernel_time","ts":330,"dur":10,"args":{"op_name":"Mul"}}
]`

func TestParseProfile(t *testing.T) {
	ops, kernels, err := parseProfile([]byte(twoRuns), 2)
	if err != nil {
		t.Fatal(err)
	}
	// kernels slowest first, each at its fastest run, with the output shape the
	// profile gives (b and c tie at 10 µs: by name)
	wantK := []Kernel{{"a", "Conv", 30 * time.Microsecond, []int64{1, 16, 8, 8}}, {"b", "Mul", 10 * time.Microsecond, nil}, {"c", "Mul", 10 * time.Microsecond, nil}}
	if len(kernels) != len(wantK) {
		t.Fatalf("kernels %+v, want %+v", kernels, wantK)
	}
	for i, w := range wantK {
		k := kernels[i]
		if k.Node != w.Node || k.Op != w.Op || k.Time != w.Time || !slices.Equal(k.Shape, w.Shape) {
			t.Errorf("kernel %d: %+v, want %+v", i, k, w)
		}
	}
	// the warm-up's 900 µs is left out; each node counts at its fastest run
	want := []OpTime{{Op: "Conv", Time: 30 * time.Microsecond, Nodes: 1}, {Op: "Mul", Time: 20 * time.Microsecond, Nodes: 2}}
	if len(ops) != len(want) {
		t.Fatalf("got %d op types %+v, want %d", len(ops), ops, len(want))
	}
	for i, w := range want {
		if ops[i].Op != w.Op || ops[i].Time != w.Time || ops[i].Nodes != w.Nodes {
			t.Errorf("op %d: %+v, want %+v", i, ops[i], w)
		}
	}
	if s := ops[0].Share + ops[1].Share; math.Abs(s-1) > 1e-9 || math.Abs(ops[0].Share-0.6) > 1e-9 {
		t.Errorf("shares %v, %v: want 0.6 and 0.4", ops[0].Share, ops[1].Share)
	}
	for _, bad := range []struct{ data, want string }{
		{"not json", "read ONNX Runtime profile"},
		{`[{"cat":"Session","name":"model_run","ts":1}]`, "1 runs, want at least 2"},
		{`[{"cat":"Session","name":"model_run","ts":1},{"cat":"Session","name":"model_run","ts":2}]`, "no kernel times"},
	} {
		if _, _, err := parseProfile([]byte(bad.data), 2); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("parseProfile(%q): error %v, want one mentioning %q", bad.data, err, bad.want)
		}
	}
}

// Measure on the MNIST CNN: both graphs run, the ratio is of the same runs, and the
// profiler attributes the gradient graph's time to the ops that compute it.
func TestMeasure(t *testing.T) {
	rt := testrt.Open(t)
	a, err := benchnets.Get("mnist-cnn")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Measure(context.Background(), rt, a.Name, a.Build(1), Options{Batch: 2, Reps: 3, Profile: true, ProfileRuns: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Forward <= 0 || r.Grad <= 0 || r.Ratio <= 0 || r.RatioWall <= 0 || r.Reps != 3 || r.Batch != 2 {
		t.Errorf("result %+v: want positive times and ratios for 3 reps of batch 2", r)
	}
	if r.GradNodes <= r.ForwardNodes {
		t.Errorf("gradient graph has %d nodes, the forward %d", r.GradNodes, r.ForwardNodes)
	}
	if runtime.GOOS == "linux" && (!r.HasCPU || r.ForwardCPU <= 0 || r.GradCPU <= 0) {
		t.Errorf("no CPU times on Linux: %+v", r)
	}
	// the test runtime runs one intra-op thread on the CPU: the times are the calling
	// thread's, which does all of ONNX Runtime's work
	if runtime.GOOS == "linux" && !r.ThreadCPU {
		t.Errorf("CPU times of the process, want the thread's with one intra-op thread on the CPU: %+v", r)
	}
	for _, ops := range [][]OpTime{r.ForwardOps, r.GradOps} {
		share := 0.0
		has := map[string]bool{}
		for _, o := range ops {
			share += o.Share
			has[o.Op] = true
		}
		if math.Abs(share-1) > 1e-6 || !has["Conv"] {
			t.Errorf("profile %+v: want shares summing to 1 and the Conv kernels", ops)
		}
	}
	// the backward pass routes the gradient through the max pool and the ReLUs
	has := map[string]bool{}
	for _, o := range r.GradOps {
		has[o.Op] = true
	}
	if !has["MaxUnpool"] || !has["Greater"] {
		t.Errorf("gradient graph profile lacks the backward ops: %+v", r.GradOps)
	}
	// the kernels add up to the op types' times, and each Conv's output is a batch
	// of feature maps
	var sum time.Duration
	for i, k := range r.GradKernels {
		sum += k.Time
		if i > 0 && k.Time > r.GradKernels[i-1].Time {
			t.Errorf("kernel %d (%+v) is slower than the one before it", i, k)
		}
		if k.Op == "Conv" && (len(k.Shape) != 4 || k.Shape[0] != 2) {
			t.Errorf("Conv kernel %+v: want a [2,C,H,W] output shape", k)
		}
	}
	var opSum time.Duration
	for _, o := range r.GradOps {
		opSum += o.Time
	}
	if len(r.GradKernels) == 0 || sum != opSum {
		t.Errorf("%d kernels summing to %v, op types to %v", len(r.GradKernels), sum, opSum)
	}
}
