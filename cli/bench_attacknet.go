package cli

import (
	"context"
	"fmt"
	"io"
	"slices"

	"gibbon/inference/autodiff/gradbench"
)

// benchAttackNet times attack networks' passes (or any graph with one image input)
// side by side, and with --profile shows where a pass spends its time.
func benchAttackNet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench attack-net", stderr,
		"Usage: gibbon bench attack-net [--batch 10,100] [--reps N] [--profile] [MODEL...]",
		"Times one forward pass of each attack network (a built-in name or an .onnx file of",
		"any graph with one image input; default mnist-attack-net) at each batch size, the",
		"networks and sizes interleaved so that load from other processes touches them alike;",
		"prints the median time per image by wall clock and by this process's CPU time. With",
		"--profile, ONNX Runtime's profiler lists the op types that take a pass's time at the",
		"largest batch. `gibbon eval-attack` compares the network with PGD-10; this shows why",
		"a pass costs what it does.")
	batches := fs.String("batch", "10,100", "comma-separated batch sizes")
	reps := fs.Int("reps", 20, "timed rounds (after one warm-up round)")
	profile := fs.Bool("profile", false, "also run ONNX Runtime's profiler at the largest batch and list the op types that take the time")
	top := fs.Int("top", 10, "op types listed per network with --profile")
	threads := fs.Int("threads", 1, "ONNX Runtime intra-op threads")
	rf := addRuntimeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bs, err := parseBatches(*batches)
	if err != nil {
		return err
	}
	largest := slices.Max(bs)
	switch {
	case *reps < 1 || *reps > 10000:
		return usageError{"--reps must be from 1 to 10000"}
	case *threads < 1:
		return usageError{"--threads must be at least 1"}
	case *top < 1:
		return usageError{"--top must be at least 1"}
	}
	names := fs.Args()
	if len(names) == 0 {
		names = []string{"mnist-attack-net"}
	}
	var models [][]byte
	for _, n := range names {
		data, err := loadModelArg(n)
		if err != nil {
			return err
		}
		models = append(models, data)
	}
	rt, err := rf.open(*threads)
	if err != nil {
		return err
	}
	defer rt.Close()
	fmt.Fprintf(stderr, "ONNX Runtime %s, %s requested, %d intra-op thread(s), %d timed rounds\n", rt.Version(), rt.EP(), *threads, *reps)
	rows, err := gradbench.Passes(ctx, rt, names, models, bs, *reps)
	if err != nil {
		return err
	}
	first := map[int]gradbench.PassRow{} // the first network's row per batch size
	for _, r := range rows {
		if _, ok := first[r.Batch]; !ok {
			first[r.Batch] = r
		}
	}
	t := newNumberTable("network", "batch", "ms / image (wall)", "ms / image (CPU)", "CPU time vs the first")
	for _, r := range rows {
		cpu, ratio := "-", "-"
		if r.CPU > 0 {
			cpu = fmt.Sprintf("%.4f", ms(r.CPU))
			ratio = fmt.Sprintf("%.2f×", float64(r.CPU)/float64(first[r.Batch].CPU))
		}
		t.addf("%s\t%d\t%.4f\t%s\t%s", r.Name, r.Batch, ms(r.Wall), cpu, ratio)
	}
	if err := t.write(stdout); err != nil {
		return err
	}
	if !*profile {
		return nil
	}
	for i, n := range names {
		ops, err := gradbench.ProfilePass(ctx, models[i], largest, 10, *threads)
		if err != nil {
			return fmt.Errorf("%s: profile: %w", n, err)
		}
		fmt.Fprintf(stdout, "\n%s: kernel time per pass of %d images by op type (ONNX Runtime profiler, 10 passes, each node at its fastest)\n", n, largest)
		t := newNumberTable("op", "ms", "share", "nodes")
		for j, o := range ops {
			if j == *top {
				break
			}
			t.addf("%s\t%.3f\t%.0f%%\t%d", o.Op, ms(o.Time), 100*o.Share, o.Nodes)
		}
		t.addf("all\t%.3f\t\t", kernelTime(ops)*1e3)
		if err := t.write(stdout); err != nil {
			return err
		}
	}
	return nil
}
