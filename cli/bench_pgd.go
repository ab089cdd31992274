package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gibbon/inference/autodiff/gradbench"
	"gibbon/inference/benchnets"
	"gibbon/inference/onnx"
)

// benchModel is a model to count or time: an architecture built in Go, a file or
// a built-in model.
type benchModel struct {
	name  string
	proto *onnx.ModelProto
}

// benchModels resolves --arch names and MODEL arguments (files or built-in names).
func benchModels(arch string, args []string, seed uint64) ([]benchModel, error) {
	picked, err := pickNets(arch)
	if err != nil {
		return nil, err
	}
	var out []benchModel
	for _, a := range picked {
		out = append(out, benchModel{a.Name, a.Build(seed)})
	}
	for _, arg := range args {
		data, err := loadModelArg(arg)
		if err != nil {
			return nil, err
		}
		m, err := onnx.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", arg, err)
		}
		out = append(out, benchModel{arg, m})
	}
	if len(out) == 0 {
		return nil, usageError{"name a MODEL (.onnx file or built-in model) or --arch"}
	}
	return out, nil
}

func benchFlops(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench flops", stderr,
		"Usage: gibbon bench flops [--arch NAMES] [MODEL.onnx|BUILTIN...]",
		"Counts the arithmetic of attacking each model, per image: its forward pass, the",
		"gradient graph attacks run (forward, loss, backward to the input) and PGD-10 (10",
		"gradient passes and one forward pass). Conv, ConvTranspose, Gemm and MatMul",
		"multiply-adds are counted (2 FLOPs each) from the shapes of one run; the rest of the",
		"work is memory-bound and left out. Architectures: "+archNames())
	arch := fs.String("arch", "", "comma-separated architectures built with random weights (e.g. mobilenetv2)")
	seed := fs.Uint64("seed", 1, "weight seed for --arch")
	rf := addRuntimeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	picked, err := benchModels(*arch, fs.Args(), *seed)
	if err != nil {
		return err
	}
	rt, err := rf.open(1)
	if err != nil {
		return err
	}
	defer rt.Close()
	t := newNumberTable("model", "forward GFLOP", "gradient graph GFLOP", "backward GFLOP", "PGD-10 GFLOP", "counted ops")
	for _, b := range picked {
		a, err := gradbench.CountAttack(ctx, rt, b.name, b.proto)
		if err != nil {
			return err
		}
		var ops []string
		for _, op := range a.Gradient.Ops() {
			ops = append(ops, fmt.Sprintf("%s %d", op, a.Gradient.Nodes[op]))
		}
		t.addf("%s\t%.3f\t%.3f\t%.3f\t%.2f\t%s", b.name, a.Forward.PerImage()/1e9, a.Gradient.PerImage()/1e9,
			a.Backward()/1e9, a.PerImage(10, 1)/1e9, strings.Join(ops, ", "))
	}
	if err := t.write(stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "per image; 1 GFLOP = 1e9 floating-point operations, a multiply-add counting 2")
	return nil
}

// parseBatches reads a --batch list: batch sizes from 1 to 256 (a batch of 256
// ImageNet-sized images is about 150 MB of input), at least one.
func parseBatches(list string) ([]int, error) {
	var bs []int
	for _, s := range splitList(list) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 256 {
			return nil, usageError{fmt.Sprintf("--batch: %q is not a batch size from 1 to 256", s)}
		}
		bs = append(bs, n)
	}
	if len(bs) == 0 {
		return nil, usageError{"--batch names no batch size"}
	}
	return bs, nil
}

// archList names the architectures built in Go.
func archList() []string {
	var names []string
	for _, a := range benchnets.All() {
		names = append(names, a.Name)
	}
	return names
}

func archNames() string { return strings.Join(archList(), ", ") }

func benchPGD(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench pgd", stderr,
		"Usage: gibbon bench pgd [--arch NAMES] [--batch 1,32] [--reps N] [--peak GFLOPS] [MODEL...]",
		"Times PGD-10 (ε 8/255, 10 gradient steps and the end point's forward pass) on each",
		"model and prints images per second, the arithmetic rate it reaches (FLOPs counted as",
		"`gibbon bench flops` does) and, with --peak, its share of the machine's FLOP limit.",
		"Medians over the timed runs, by wall time and by this process's CPU time (steadier",
		"on a shared machine). Architectures: "+archNames())
	arch := fs.String("arch", "mobilenetv2", "comma-separated architectures built with random weights (empty: only MODEL arguments)")
	batches := fs.String("batch", "1,32", "comma-separated batch sizes")
	reps := fs.Int("reps", 3, "timed runs per model and batch (after one warm-up run)")
	peak := fs.Float64("peak", 0, "the machine's fp32 FLOP limit in GFLOP/s, for the ratio (e.g. cores × GHz × FLOPs per cycle)")
	threads := fs.Int("threads", 1, "ONNX Runtime intra-op threads")
	runBatches := fs.String("run-batch", "auto", "comma-separated: the most images per ONNX Runtime run, each timed in turn: auto (as attacks run: on the CPU, batches sliced to about 256 KiB of input), whole, or a number")
	seed := fs.Uint64("seed", 1, "weight seed for --arch")
	rf := addRuntimeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bs, err := parseBatches(*batches)
	if err != nil {
		return err
	}
	var runs []int // attack.ModelOptions.RunBatch values
	for _, s := range splitList(*runBatches) {
		switch n, err := strconv.Atoi(s); {
		case s == "auto":
			runs = append(runs, 0)
		case s == "whole":
			runs = append(runs, -1)
		case err == nil && n >= 1 && n <= 256:
			runs = append(runs, n)
		default:
			return usageError{fmt.Sprintf("--run-batch: %q is not auto, whole or a number from 1 to 256", s)}
		}
	}
	switch {
	case len(runs) == 0:
		return usageError{"--run-batch names nothing"}
	case *reps < 1:
		return usageError{"--reps must be at least 1"}
	case *threads < 1:
		return usageError{"--threads must be at least 1"}
	case *peak < 0:
		return usageError{"--peak cannot be negative"}
	}
	picked, err := benchModels(*arch, fs.Args(), *seed)
	if err != nil {
		return err
	}
	rt, err := rf.open(*threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	fmt.Fprintf(stderr, "ONNX Runtime %s, %s requested, %d intra-op thread(s), %d timed runs after a warm-up\n", rt.Version(), rt.EP(), *threads, *reps)

	rows := make([][]gradbench.PGDRow, len(picked))
	for i, b := range picked {
		fmt.Fprintf(stderr, "%s: counting and building...\n", b.name)
		for _, run := range runs {
			r, err := gradbench.PGD(ctx, rt, b.name, b.proto, bs, *reps, run)
			if err != nil {
				return err
			}
			rows[i] = append(rows[i], r...)
		}
	}
	return printPGDBench(stdout, picked, rows, *peak)
}

// printPGDBench is the table of PGD-10's speeds: per model and batch, by wall time,
// by CPU time where it is read, and as a share of peak when one is given. rows[i]
// are models[i]'s.
func printPGDBench(w io.Writer, models []benchModel, rows [][]gradbench.PGDRow, peak float64) error {
	t := newNumberTable("model", "batch", "images per run", "runs on", "GFLOP/image", "images/s", "GFLOP/s")
	cpu := gradbench.CPUTimeRead()
	if cpu {
		t.rows[0] = append(t.rows[0], "images/s (CPU time)", "GFLOP/s (CPU time)")
	}
	if peak > 0 {
		t.rows[0] = append(t.rows[0], "of peak")
	}
	for i, b := range models {
		for _, row := range rows[i] {
			perRun := row.Batch
			if row.RunBatch > 0 {
				perRun = row.RunBatch
			}
			line := fmt.Sprintf("%s\t%d\t%d\t%s\t%.2f\t%.2f\t%.1f", b.name, row.Batch, perRun, row.EP, row.FLOPs/1e9, row.WallRate, row.WallRate*row.FLOPs/1e9)
			best := row.WallRate
			if cpu {
				line += fmt.Sprintf("\t%.2f\t%.1f", row.CPURate, row.CPURate*row.FLOPs/1e9)
				best = row.CPURate
			}
			if peak > 0 {
				line += fmt.Sprintf("\t%.0f%%", 100*best*row.FLOPs/1e9/peak)
			}
			t.addf("%s", line)
		}
	}
	if err := t.write(w); err != nil {
		return err
	}
	if peak > 0 {
		what := "wall"
		if cpu {
			what = "CPU"
		}
		fmt.Fprintf(w, "of peak: GFLOP/s (%s time) / %g GFLOP/s\n", what, peak)
	}
	return nil
}
