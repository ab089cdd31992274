package gradbench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/onnx"
)

// PassRow is one graph's forward pass at one batch size.
type PassRow struct {
	Name  string
	Batch int
	// Wall and CPU are per image, medians over the timed runs; CPU is 0 where the
	// process's CPU time is not read.
	Wall, CPU time.Duration
}

// passGraph is one graph loaded for Passes.
type passGraph struct {
	name  string
	input string
	shape []int64 // batch first, as the graph gives it
	sess  *inference.Session
}

// Passes times forward passes of graphs with one float input (attack networks,
// classifiers) at each batch size, interleaved: each of reps rounds runs every graph at
// every batch size once, after one untimed round, so that load from other processes
// touches them alike. Inputs are values on the 8-bit grid of [0,1], shaped like each
// graph's input with the batch set.
func Passes(ctx context.Context, rt *inference.Runtime, names []string, models [][]byte, batches []int, reps int) ([]PassRow, error) {
	if len(names) != len(models) || len(models) == 0 || len(batches) == 0 || reps < 1 {
		return nil, fmt.Errorf("passes: need graphs with names, batch sizes and at least one round")
	}
	var graphs []*passGraph
	defer func() {
		for _, g := range graphs {
			g.sess.Close()
		}
	}()
	for i, m := range models {
		input, shape, err := imageInputOf(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", names[i], err)
		}
		s, err := rt.NewSession(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", names[i], err)
		}
		graphs = append(graphs, &passGraph{name: names[i], input: input, shape: shape, sess: s})
	}
	feeds := make([][]*inference.Tensor, len(graphs)) // [graph][batch]
	rng := rand.New(rand.NewPCG(1, 12))
	for i, g := range graphs {
		for _, b := range batches {
			feeds[i] = append(feeds[i], gridImages(b, g.shape, rng))
		}
	}
	walls := make([][][]time.Duration, len(graphs))
	cpus := make([][][]time.Duration, len(graphs))
	for i := range graphs {
		walls[i] = make([][]time.Duration, len(batches))
		cpus[i] = make([][]time.Duration, len(batches))
	}
	for round := 0; round <= reps; round++ {
		for i, g := range graphs {
			for k, b := range batches {
				runtime.GC() // the last pass's garbage, collected outside the timing
				c0, okCPU := cpuTime()
				start := time.Now()
				if _, err := g.sess.Run(ctx, map[string]*inference.Tensor{g.input: feeds[i][k]}); err != nil {
					return nil, fmt.Errorf("%s, batch %d: %w", g.name, b, err)
				}
				wall := time.Since(start)
				c1, _ := cpuTime()
				if round == 0 {
					continue // warm-up
				}
				walls[i][k] = append(walls[i][k], wall/time.Duration(b))
				if okCPU {
					cpus[i][k] = append(cpus[i][k], (c1-c0)/time.Duration(b))
				}
			}
		}
	}
	var rows []PassRow
	for i, g := range graphs {
		for k, b := range batches {
			rows = append(rows, PassRow{Name: g.name, Batch: b, Wall: median(walls[i][k]), CPU: median(cpus[i][k])})
		}
	}
	return rows, nil
}

// ProfilePass runs ORT's profiler over runs passes of model at one batch size (after
// one warm-up pass) and returns the kernel time per op type per pass.
func ProfilePass(ctx context.Context, model []byte, batch, runs, threads int) ([]OpTime, error) {
	input, shape, err := imageInputOf(model)
	if err != nil {
		return nil, err
	}
	x := gridImages(batch, shape, rand.New(rand.NewPCG(2, 12)))
	ops, _, err := profile(ctx, model, map[string]*inference.Tensor{input: x}, Options{Threads: threads, ProfileRuns: runs})
	return ops, err
}

// imageInputOf is a graph's one input, as attacks find it: its name and shape (the
// batch −1, every other dimension fixed).
func imageInputOf(model []byte) (string, []int64, error) {
	m, err := onnx.Decode(model)
	if err != nil {
		return "", nil, err
	}
	return attack.ImageInput(m.GetGraph(), "", nil)
}

// gridImages is a batch of images shaped like shape (its batch dimension set to
// batch), each value drawn from rng on the 8-bit grid of [0,1]: what the timed
// graphs and attacks are fed.
func gridImages(batch int, shape []int64, rng *rand.Rand) *inference.Tensor {
	x := inference.NewTensor(append([]int64{int64(batch)}, shape[1:]...)...)
	for i := range x.Data {
		x.Data[i] = float32(rng.IntN(256)) / 255
	}
	return x
}
