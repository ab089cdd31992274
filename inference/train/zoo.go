package train

import (
	"fmt"
	"strings"

	"gibbon/inference/train/arch"
)

// Recipe is how one built-in model is trained.
type Recipe struct {
	Name        string
	Description string
	Robust      bool
	Config      Config
}

// Zoo lists the built-in models, in the order `go tool task models` trains them.
var Zoo = []Recipe{
	{
		Name:        "mnist-mlp",
		Description: "Multilayer perceptron (784-512-512-10), Adam with cosine decay, random shifts of up to 2 pixels.",
		Config: Config{Arch: arch.MLP.Name, Seed: 1, Epochs: 16, BatchSize: 128,
			Optimizer: OptimizerConfig{Kind: Adam, WeightDecay: 0.02},
			Schedule:  Schedule{Kind: Cosine, LR: 1e-3, Warmup: 0.02},
			Shift:     2},
	},
	{
		Name:        "mnist-cnn-small",
		Description: "Small CNN with two strided 5x5 convolutions and no pooling, Adam with cosine decay, random shifts of up to 2 pixels.",
		Config: Config{Arch: arch.SmallCNN.Name, Seed: 2, Epochs: 10, BatchSize: 128,
			Optimizer: OptimizerConfig{Kind: Adam, WeightDecay: 0.02},
			Schedule:  Schedule{Kind: Cosine, LR: 2e-3, Warmup: 0.02},
			Shift:     2},
	},
	{
		Name:        "mnist-cnn-wide",
		Description: "Wider CNN with 3x3 convolutions (32-64-128 channels) and max-pooling, SGD with Nesterov momentum and cosine decay, random shifts of up to 2 pixels.",
		Config: Config{Arch: arch.WideCNN.Name, Seed: 3, Epochs: 8, BatchSize: 128,
			Optimizer: OptimizerConfig{Kind: SGD, Momentum: 0.9, Nesterov: true, WeightDecay: 5e-4},
			Schedule:  Schedule{Kind: Cosine, LR: 0.05, Warmup: 0.03},
			Shift:     2},
	},
	{
		Name:        "mnist-resnet-small",
		Description: "Small residual net without normalisation (zero-initialised residual branches), SGD with momentum and a step schedule, random shifts of up to 2 pixels.",
		Config: Config{Arch: arch.ResNet.Name, Seed: 4, Epochs: 8, BatchSize: 128,
			Optimizer: OptimizerConfig{Kind: SGD, Momentum: 0.9, WeightDecay: 5e-4},
			Schedule:  Schedule{Kind: Step, LR: 0.05, Warmup: 0.03, Milestones: []float64{0.5, 0.8}, Gamma: 0.1},
			Shift:     2},
	},
	{
		Name:        "mnist-cnn-robust",
		Description: "Adversarially trained CNN (Madry et al. 2018): each batch replaced by PGD-10 (step 0.05, random start) at eps 0.3, eps ramped up over the first 2 epochs; Adam with a one-cycle schedule, 10 epochs.",
		Robust:      true,
		// Recipes measured with gibbon's AutoAttack (eps 0.3, first 1000 test digits;
		// Square's share after the gradient stages in brackets): the first recipe,
		// PGD-5 (step 0.1) for 10 epochs, 88.8 % (1.8); this one, PGD-10 (step 0.05)
		// for 10 epochs, 90.0 % (1.0), clean 99.08 %; the same for 30 epochs 88.2 %
		// (first 500); PGD-20 for 20 epochs 88.7 % (1.9); TRADES (beta 6) for 15 epochs
		// 90.4 % (1.8) at clean 98.74 %; training eps 0.35 89.6 % (2.4), 0.4 90.0 %
		// (2.9); SiLU in place of ReLU 54.2 % (17.6); twice the convolution channels
		// (conv 32 - conv 64 - fc 256, PGD-10, 8 epochs, 35 min) 89.6 % (1.3) at clean
		// 99.17 %; PGD-10 started from random corners of the ball (each pixel ±eps, as
		// Square starts) instead of uniformly inside it 88.9 % (2.2) at clean 99.10 %;
		// AdamW weight decay 0.02 with random shifts of up to 2 pixels 89.1 % (1.9);
		// the weights' exponential moving average (decay 0.998) 90.0 % (0.9), no
		// different from the last weights under this schedule; every other batch
		// attacked through a smooth surrogate of ReLU's gradient (dy·sigmoid(4x),
		// which sees through inactive units) 86.6 % (3.5); each PGD example refined by
		// 10 or 20 queries of a Square-style random search (h×h windows set to ±eps,
		// kept where the margin drops) 90.1 % (1.0) and 90.1 % (1.4), 28 and 41 min;
		// half of each batch's PGD-10 started from Square's start (each column of
		// pixels moved by +eps or -eps) 89.3 % (1.5) at clean 99.10 %, 17 min; two
		// random starts per example, the end point of higher loss kept, 89.7 % (1.5)
		// at clean 99.00 %, 29 min; LeakyRelu (slope 0.1) in place of the first ReLU,
		// so that no first-layer unit passes a zero gradient, 88.9 % (1.5) at clean
		// 99.20 %, and in place of all three, 88.8 % (1.7) at clean 99.00 %, 14 min each;
		// half of each batch's PGD-10 on the margin z_t - z_y (t the strongest other
		// class at the previous step; label weights e_y - e_t) in place of the
		// cross-entropy, as Square's loss is a margin, 89.5 % (1.1) at clean 99.00 %,
		// 12 min; half of it targeted instead (z_t - z_y towards a random other class
		// t, as APGD-T aims), 88.8 % (1.7) at clean 99.20 %; eps ramped up over 5
		// epochs instead of 2, 88.7 % (1.4) at clean 98.60 %.
		// The same recipe with seeds 6, 7 and 8 instead of 5: 88.0 % (1.9), 89.2 %
		// (1.5) and 88.9 % (1.5), so the seed's spread covers most of the differences
		// above, and seed 5 is the best of the four.
		// Longer or stronger training, a wider net, corner and stripe starts, restarts,
		// regularisation, weight averaging, gradient-free steps in training, leaky
		// units, margin and targeted losses in training and a slower ramp did not
		// close Square's gap.
		Config: Config{Arch: arch.RobustCNN.Name, Seed: 5, Epochs: 10, BatchSize: 100,
			Optimizer: OptimizerConfig{Kind: Adam},
			Schedule:  Schedule{Kind: OneCycle, LR: 5e-3, Warmup: 0.4},
			Adversarial: &AdvConfig{PGDConfig: PGDConfig{Eps: 0.3, Step: 0.05, Steps: 10, RandomStart: true},
				RampEpochs: 2}},
	},
}

// RecipeNamed finds a built-in model's recipe.
func RecipeNamed(name string) (Recipe, error) {
	var names []string
	for _, r := range Zoo {
		if r.Name == name {
			return r, nil
		}
		names = append(names, r.Name)
	}
	return Recipe{}, fmt.Errorf("no built-in model %q (known: %s)", name, strings.Join(names, ", "))
}
