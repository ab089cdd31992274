package attack

import (
	"context"
	"fmt"

	"gibbon/inference"
	"gibbon/inference/mnist"
)

// MNISTOptions say how EvaluateMNIST runs AutoAttack.
type MNISTOptions struct {
	N     int     // the first N test digits (1–10000)
	Batch int     // digits per Run
	Eps   float64 // budget as a fraction of the model's input range (0.3 on [0,1])
	Seed  int64   // batch b runs with Seed + b
	// Workers is how many batches run at once (0 means 1); the verdict is the same
	// for any number.
	Workers int
	// Progress, when non-nil, hears after each batch how many digits are done and how
	// many of them survived.
	Progress func(done, robust int)
}

// EvaluateMNIST runs standard AutoAttack on classifier m, which takes images by
// contract c, over the first opts.N MNIST test digits.
func EvaluateMNIST(ctx context.Context, m Model, c inference.InputContract, opts MNISTOptions) (*Evaluation, error) {
	if opts.N < 1 || opts.N > 10000 || opts.Batch < 1 || !(opts.Eps > 0 && opts.Eps <= 1) {
		return nil, inference.Invalidf("autoattack needs 1–10000 digits, a batch of at least 1 and ε in (0,1], got %d, %d, %g", opts.N, opts.Batch, opts.Eps)
	}
	test, err := mnist.LoadTest(ctx)
	if err != nil {
		return nil, err
	}
	x, labels, err := c.MNISTTensor(test, 0, opts.N)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name, err)
	}
	rng := c.PixelRange()
	cfg := Config{Method: AutoAttack, Eps: float32(opts.Eps) * (rng[1] - rng[0]), Range: rng, Layout: c.TensorLayout(), Seed: opts.Seed}
	return Evaluate(ctx, cfg, m, x, labels, opts.Batch, max(opts.Workers, 1), opts.Progress)
}
