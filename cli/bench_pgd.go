package cli

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"gibbon/inference"
	"gibbon/inference/archs"
	"gibbon/inference/attack"
	"gibbon/inference/flops"
	"gibbon/inference/onnx"
)

// benchModel is a model to count or time: an architecture built in Go, a file or
// a built-in model, adapted as attacks adapt it (terminal Softmax cut off).
type benchModel struct {
	name  string
	proto *onnx.ModelProto
}

// benchModels resolves --arch names and MODEL arguments (files or built-in names).
func benchModels(arch string, args []string, seed uint64) ([]benchModel, error) {
	var out []benchModel
	for _, n := range splitList(arch) {
		a, err := archs.Get(n)
		if err != nil {
			return nil, usageError{"--arch: " + err.Error()}
		}
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

// adapt loads a bench model as attacks see it.
func (b benchModel) adapt(ctx context.Context, rt *inference.Runtime) (*attack.ONNXModel, error) {
	return attack.NewONNXModel(ctx, rt, b.proto, attack.ModelOptions{Name: b.name})
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
		a, err := countModel(ctx, rt, b)
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

// countModel counts a model's forward pass and gradient graph as attacks run them.
func countModel(ctx context.Context, rt *inference.Runtime, b benchModel) (*flops.Attack, error) {
	net, err := b.adapt(ctx, rt)
	if err != nil {
		return nil, err
	}
	defer net.Close()
	a, err := flops.CountAttack(ctx, rt, net.Proto(), 1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.name, err)
	}
	return a, nil
}

// archList names the architectures built in Go.
func archList() []string {
	var names []string
	for _, a := range archs.All() {
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
	seed := fs.Uint64("seed", 1, "weight seed for --arch")
	rf := addRuntimeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var bs []int
	for _, s := range splitList(*batches) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 256 {
			return usageError{fmt.Sprintf("--batch: %q is not a batch size from 1 to 256", s)}
		}
		bs = append(bs, n)
	}
	switch {
	case len(bs) == 0:
		return usageError{"--batch names no batch size"}
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

	t := newNumberTable("model", "batch", "runs on", "GFLOP/image", "images/s", "GFLOP/s")
	cpu := cpuTime() > 0
	if cpu {
		t.rows[0] = append(t.rows[0], "images/s (CPU time)", "GFLOP/s (CPU time)")
	}
	if *peak > 0 {
		t.rows[0] = append(t.rows[0], "of peak")
	}
	for _, b := range picked {
		fmt.Fprintf(stderr, "%s: counting and building...\n", b.name)
		r, err := timePGD(ctx, rt, b, bs, *reps)
		if err != nil {
			return err
		}
		for _, row := range r {
			line := fmt.Sprintf("%s\t%d\t%s\t%.2f\t%.2f\t%.1f", b.name, row.batch, row.ep, row.flops/1e9, row.wallRate, row.wallRate*row.flops/1e9)
			best := row.wallRate
			if cpu {
				line += fmt.Sprintf("\t%.2f\t%.1f", row.cpuRate, row.cpuRate*row.flops/1e9)
				best = row.cpuRate
			}
			if *peak > 0 {
				line += fmt.Sprintf("\t%.0f%%", 100*best*row.flops/1e9 / *peak)
			}
			t.addf("%s", line)
		}
	}
	if err := t.write(stdout); err != nil {
		return err
	}
	if *peak > 0 {
		what := "wall"
		if cpu {
			what = "CPU"
		}
		fmt.Fprintf(stdout, "of peak: GFLOP/s (%s time) / %g GFLOP/s\n", what, *peak)
	}
	return nil
}

type pgdRow struct {
	batch             int
	ep                string
	flops             float64 // per image, as run (PGD-10: 10 gradient passes and 1 forward)
	wallRate, cpuRate float64 // images/s, medians
}

// timePGD runs PGD-10 on b at each batch size: one warm-up run, then reps timed
// ones. CPU time excludes the clean forward pass Run's evaluation adds.
func timePGD(ctx context.Context, rt *inference.Runtime, b benchModel, batches []int, reps int) ([]pgdRow, error) {
	net, err := b.adapt(ctx, rt)
	if err != nil {
		return nil, err
	}
	defer net.Close()
	count, err := flops.CountAttack(ctx, rt, net.Proto(), 1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.name, err)
	}
	var rows []pgdRow
	for _, batch := range batches {
		shape := net.InputShape()
		shape[0] = int64(batch)
		x := inference.NewTensor(shape...)
		rng := rand.New(rand.NewPCG(uint64(batch), 11))
		for i := range x.Data {
			x.Data[i] = float32(rng.IntN(256)) / 255
		}
		labels := make([]int, batch)
		for i := range labels {
			labels[i] = i % net.Classes()
		}
		req := attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{{Name: b.name, Net: net}}}
		cfg := attack.Config{Method: attack.PGD, Eps: 8.0 / 255, Steps: 10, Seed: 1}
		res, err := attack.Run(ctx, cfg, req, nil) // warm-up: builds the gradient graph
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.name, err)
		}
		fwdPasses, bwdPasses := res.PassesPerImage()
		row := pgdRow{batch: batch, flops: bwdPasses*count.Gradient.PerImage() + (fwdPasses-bwdPasses)*count.Forward.PerImage()}
		_, row.ep = net.Providers()
		var walls, cpus []float64
		for range reps {
			c0 := cpuTime()
			res, err := attack.Run(ctx, cfg, req, nil)
			if err != nil {
				return nil, err
			}
			c1 := cpuTime()
			if _, err := net.Predict(ctx, x); err != nil {
				return nil, err
			}
			c2 := cpuTime()
			walls = append(walls, float64(batch)/res.Wall.Seconds())
			if d := (c1 - c0) - (c2 - c1); d > 0 {
				cpus = append(cpus, float64(batch)/d.Seconds())
			}
		}
		row.wallRate, row.cpuRate = median(walls), median(cpus)
		rows = append(rows, row)
	}
	return rows, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
