package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/autodiff/gradbench"
	"gibbon/inference/benchnets"
)

// cmdBench runs Gibbon's benchmarks: the gradient graphs' cost against a forward
// pass, the FLOPs of attacking a model, PGD-10's speed against the FLOP limit, and an
// attack network's pass.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := "gibbon bench grad|flops|pgd|attack-net (gibbon bench SUBCOMMAND -h for flags)\n" +
		"  grad   gradient graph vs forward pass: gibbon bench grad [--arch NAMES] [--batch N] [--reps N] [--profile] [MODEL...]\n" +
		"  flops  FLOPs per image of a forward pass, the gradient graph and PGD-10: gibbon bench flops [--arch NAMES] [MODEL...]\n" +
		"  pgd    PGD-10 images/s, GFLOP/s and share of --peak: gibbon bench pgd [--arch mobilenetv2] [--batch 1,32] [--peak GFLOPS] [MODEL...]\n" +
		"  attack-net  an attack network's pass, side by side and by op type: gibbon bench attack-net [--batch 10,100] [--profile] [MODEL...]"
	return runSubcommand(ctx, "bench", usage, map[string]runFunc{
		"grad": benchGrad, "flops": benchFlops, "pgd": benchPGD, "attack-net": benchAttackNet,
	}, args, stdout, stderr)
}

func benchGrad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := []string{"Usage: gibbon bench grad [flags] [MODEL.onnx|BUILTIN...]",
		"Times each model's gradient graph (cross-entropy loss, input gradient: one attack",
		"step) against its forward pass, alternating runs so that load from other processes",
		"touches both alike; prints medians and the median per-pair ratio. MODEL arguments",
		"(ONNX files or built-in models) are timed after the --arch shapes, which are built",
		"in Go with random weights:"}
	for _, a := range benchnets.All() {
		usage = append(usage, fmt.Sprintf("  %-12s %s", a.Name, a.Description))
	}
	fs := newFlagSet("bench grad", stderr, usage...)
	arch := fs.String("arch", strings.Join(archList(), ","), "comma-separated shapes to time (empty: only MODEL arguments)")
	batch := fs.Int("batch", 1, "images per run")
	reps := fs.Int("reps", 5, "timed forward/gradient pairs per model")
	profile := fs.Bool("profile", false, "also run ONNX Runtime's profiler and list the op types that take the time")
	top := fs.Int("top", 8, "op types listed per graph with --profile")
	kernels := fs.Int("kernels", 0, "with --profile, also list the gradient graph's N slowest kernels (node, op type, output shape)")
	threads := fs.Int("threads", 1, "ONNX Runtime intra-op threads")
	seed := fs.Uint64("seed", 1, "weight seed")
	target := fs.String("target", "auto", "gradient graph forms, comma-separated to time several: cpu (MaxPool by its Indices), gpu (by a mask, as GPU providers run it whole), auto (those of the provider --ep starts)")
	rf := addRuntimeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *batch < 1 || *batch > 256:
		return usageError{"--batch must be between 1 and 256"}
	case *reps < 1:
		return usageError{"--reps must be at least 1"}
	case *threads < 1:
		return usageError{"--threads must be at least 1"}
	case *top < 1:
		return usageError{"--top must be at least 1"}
	case *kernels < 0:
		return usageError{"--kernels must be at least 0"}
	case *kernels > 0 && !*profile:
		return usageError{"--kernels lists the profiler's kernels: add --profile"}
	}
	models, err := benchModels(*arch, fs.Args(), *seed)
	if err != nil {
		return err
	}
	var targets []autodiff.Target
	for _, n := range strings.Split(*target, ",") {
		t, err := autodiff.ParseTarget(n)
		if err != nil {
			return usageError{"--target: " + err.Error()}
		}
		targets = append(targets, t)
	}
	rt, err := rf.open(*threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	fmt.Fprintf(stderr, "ONNX Runtime %s, %s requested, %d intra-op thread(s), batch %d, %d timed pairs per model\n", rt.Version(), rt.EP(), *threads, *batch, *reps)
	opts := gradbench.Options{Batch: *batch, Reps: *reps, Profile: *profile, Threads: *threads}
	var results []*gradbench.Result
	for _, m := range models {
		for _, t := range targets {
			opts.Target = t
			r, err := measureGrad(ctx, rt, m, opts, stderr)
			if err != nil {
				return err
			}
			results = append(results, r)
		}
	}
	return printGradBench(stdout, results, *profile, *top, *kernels)
}

// pickNets reads --arch: shapes built in Go with random weights, by name.
func pickNets(list string) ([]benchnets.Net, error) {
	var picked []benchnets.Net
	for _, n := range splitList(list) {
		a, err := benchnets.Get(n)
		if err != nil {
			return nil, usageError{"--arch: " + err.Error()}
		}
		picked = append(picked, a)
	}
	return picked, nil
}

// measureGrad times m's gradient graph in opts.Target's forms.
func measureGrad(ctx context.Context, rt *inference.Runtime, m benchModel, opts gradbench.Options, log io.Writer) (*gradbench.Result, error) {
	name := m.name
	if opts.Target != autodiff.TargetAuto {
		name += " (" + opts.Target.String() + " forms)"
	}
	fmt.Fprintf(log, "%s: building and timing...\n", name)
	return gradbench.Measure(ctx, rt, name, m.proto, opts)
}

// printGradBench writes the summary table, then with profiles one table per model of
// the op types that take the gradient graph's time and, with kernels > 0, one of its
// slowest kernels.
func printGradBench(w io.Writer, results []*gradbench.Result, profile bool, top, kernels int) error {
	t := newNumberTable("model", "batch", "fwd ms", "fwd+bwd ms", "ratio", "ratio (wall)")
	if profile {
		t.rows[0] = append(t.rows[0], "ratio (kernels)")
	}
	t.rows[0] = append(t.rows[0], "nodes fwd/grad", "build s")
	for _, r := range results {
		row := []string{r.Name, strconv.Itoa(r.Batch), fmt.Sprintf("%.1f", ms(r.Forward)), fmt.Sprintf("%.1f", ms(r.Grad)),
			fmt.Sprintf("%.2f", r.Ratio), fmt.Sprintf("%.2f", r.RatioWall)}
		if profile {
			row = append(row, fmt.Sprintf("%.2f", kernelTime(r.GradOps)/kernelTime(r.ForwardOps)))
		}
		t.add(append(row, fmt.Sprintf("%d/%d", r.ForwardNodes, r.GradNodes), fmt.Sprintf("%.1f", r.Build.Seconds()))...)
	}
	if err := t.write(w); err != nil {
		return err
	}
	if len(results) > 0 && results[0].HasCPU {
		whose := "of the process"
		if results[0].ThreadCPU {
			whose = "of the thread that ran the graphs (all of ONNX Runtime's work on one intra-op thread)"
		}
		fmt.Fprintf(w, "times: medians of wall time; ratio: median per-pair ratio of CPU time %s, steadier than wall time on a loaded machine\n", whose)
	}
	if !profile {
		return nil
	}
	for _, r := range results {
		fwd := map[string]time.Duration{}
		for _, o := range r.ForwardOps {
			fwd[o.Op] = o.Time
		}
		fmt.Fprintf(w, "\n%s: kernel time per run by op type (ONNX Runtime profiler, each node at its fastest run)\n", r.Name)
		t := newNumberTable("op", "forward ms", "gradient graph ms", "share", "nodes")
		for i, o := range r.GradOps {
			if i == top {
				break
			}
			f := "-"
			if d, ok := fwd[o.Op]; ok {
				f = fmt.Sprintf("%.2f", ms(d))
			}
			t.addf("%s\t%s\t%.2f\t%.0f%%\t%d", o.Op, f, ms(o.Time), 100*o.Share, o.Nodes)
		}
		t.addf("all\t%.2f\t%.2f\t\t", kernelTime(r.ForwardOps)*1e3, kernelTime(r.GradOps)*1e3)
		if err := t.write(w); err != nil {
			return err
		}
		if kernels > 0 {
			if err := printKernels(w, r, kernels); err != nil {
				return err
			}
		}
	}
	return nil
}

// printKernels lists the gradient graph's n slowest kernels with their share of its
// kernel time.
func printKernels(w io.Writer, r *gradbench.Result, n int) error {
	total := kernelTime(r.GradOps)
	slowest := r.GradKernels[:min(n, len(r.GradKernels))]
	fmt.Fprintf(w, "\n%s: the gradient graph's %d slowest kernels (of %d; nodes as ONNX Runtime names them after fusing)\n", r.Name, len(slowest), len(r.GradKernels))
	t := newNumberTable("ms", "share", "op", "node", "output")
	for _, k := range slowest {
		shape := "?"
		if k.Shape != nil {
			shape = fmt.Sprint(k.Shape)
		}
		share := 0.0
		if total > 0 {
			share = k.Time.Seconds() / total
		}
		t.addf("%.3f\t%.1f%%\t%s\t%s\t%s", ms(k.Time), 100*share, k.Op, k.Node, shape)
	}
	return t.write(w)
}

// kernelTime sums a profile, in seconds.
func kernelTime(ops []gradbench.OpTime) float64 {
	t := 0.0
	for _, o := range ops {
		t += o.Time.Seconds()
	}
	return t
}

func ms(d time.Duration) float64 { return d.Seconds() * 1e3 }
