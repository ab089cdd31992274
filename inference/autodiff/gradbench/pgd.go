package gradbench

import (
	"context"
	"fmt"
	"math/rand/v2"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/flops"
	"gibbon/inference/onnx"
)

// PGDRow is PGD-10's speed on one model at one batch size.
type PGDRow struct {
	Batch int
	// RunBatch is the most images one ONNX Runtime run took (0: the whole batch);
	// see attack.ModelOptions.RunBatch.
	RunBatch int
	EP       string // where the gradient graph runs
	// FLOPs per image, as run: 10 gradient passes and one forward pass.
	FLOPs float64
	// WallRate and CPURate are images per second, medians over the timed runs;
	// CPURate is 0 where the process's CPU time is not read.
	WallRate, CPURate float64
}

// PGD times PGD-10 (ε 8/255) on model, adapted as attacks adapt it (a terminal
// Softmax cut off, runs of at most runBatch images as attack.ModelOptions.RunBatch
// says), at each batch size: one warm-up run that builds the gradient graph, then reps
// timed ones on random images. CPU time leaves out the clean forward pass attack.Run
// adds for its evaluation.
func PGD(ctx context.Context, rt *inference.Runtime, name string, model *onnx.ModelProto, batches []int, reps, runBatch int) ([]PGDRow, error) {
	net, err := attack.NewONNXModel(ctx, rt, model, attack.ModelOptions{Name: name, RunBatch: runBatch})
	if err != nil {
		return nil, err
	}
	defer net.Close()
	count, err := flops.CountAttack(ctx, rt, net.Proto(), 1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var rows []PGDRow
	for _, batch := range batches {
		row, err := timePGD(ctx, net, count, batch, reps)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// CountAttack counts model's forward pass and gradient graph per image, adapted as
// attacks adapt it (a terminal Softmax cut off).
func CountAttack(ctx context.Context, rt *inference.Runtime, name string, model *onnx.ModelProto) (*flops.Attack, error) {
	net, err := attack.NewONNXModel(ctx, rt, model, attack.ModelOptions{Name: name})
	if err != nil {
		return nil, err
	}
	defer net.Close()
	a, err := flops.CountAttack(ctx, rt, net.Proto(), 1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return a, nil
}

func timePGD(ctx context.Context, net *attack.ONNXModel, count *flops.Attack, batch, reps int) (PGDRow, error) {
	x := gridImages(batch, net.InputShape(), rand.New(rand.NewPCG(uint64(batch), 11)))
	labels := make([]int, batch)
	for i := range labels {
		labels[i] = i % net.Classes()
	}
	req := attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{{Name: net.Name(), Net: net}}}
	cfg := attack.Config{Method: attack.PGD, Eps: 8.0 / 255, Steps: 10, Seed: 1}
	res, err := attack.Run(ctx, cfg, req, nil) // warm-up: builds the gradient graph
	if err != nil {
		return PGDRow{}, err
	}
	fwdPasses, bwdPasses := res.PassesPerImage()
	row := PGDRow{Batch: batch, RunBatch: min(net.RunBatch(), batch), FLOPs: bwdPasses*count.Gradient.PerImage() + (fwdPasses-bwdPasses)*count.Forward.PerImage()}
	_, row.EP = net.Providers()
	var walls, cpus []float64
	for range reps {
		c0, okCPU := cpuTime()
		res, err := attack.Run(ctx, cfg, req, nil)
		if err != nil {
			return PGDRow{}, err
		}
		c1, _ := cpuTime()
		if _, err := net.Predict(ctx, x); err != nil {
			return PGDRow{}, err
		}
		c2, _ := cpuTime()
		walls = append(walls, float64(batch)/res.Wall.Seconds())
		if d := (c1 - c0) - (c2 - c1); okCPU && d > 0 {
			cpus = append(cpus, float64(batch)/d.Seconds())
		}
	}
	row.WallRate, row.CPURate = median(walls), median(cpus)
	return row, nil
}

// CPUTimeRead reports whether this platform reads the process's CPU time, so that
// PGDRow.CPURate is measured.
func CPUTimeRead() bool {
	_, ok := cpuTime()
	return ok
}
