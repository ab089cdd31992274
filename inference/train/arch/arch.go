// Package arch defines Gibbon's built-in MNIST classifiers as ONNX graphs, built in Go
// with the graph builder and initialised from a seed. Every graph takes "image"
// [N,1,28,28] in [0,1] (N free) and returns "logits" [N,10]. None uses BatchNorm:
// gradients are taken through its inference form only, so the nets are shaped to train
// well without it (ReLU with Kaiming init, zero-initialised residual branches).
package arch

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"gibbon/inference/onnx"
)

// Graph input and output names.
const (
	Input  = "image"
	Output = "logits"
)

// Arch is one architecture.
type Arch struct {
	Name        string
	Description string
	body        func(n *net, x string) string
}

// Build returns the forward model with freshly initialised weights (the same for the
// same seed) and the names of its trainable initializers, in graph order.
func (a Arch) Build(seed uint64) (*onnx.ModelProto, []string) {
	b := onnx.NewBuilder(a.Name)
	n := &net{b: b, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	x := b.Input(Input, -1, 1, 28, 28)
	b.Output(Output, a.body(n, x), -1, 10)
	return b.Model(), n.params
}

var registry = map[string]Arch{}

func register(a Arch) Arch {
	registry[a.Name] = a
	return a
}

// Get finds an architecture by name.
func Get(name string) (Arch, error) {
	a, ok := registry[name]
	if !ok {
		return Arch{}, fmt.Errorf("unknown architecture %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return a, nil
}

// Names lists the architectures, sorted.
func Names() []string {
	out := make([]string, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// MLP: 784-512-512-10 (2.7 MB of weights; 1024-wide layers made a 7.5 MB file).
var MLP = register(Arch{
	Name:        "mlp",
	Description: "multilayer perceptron 784-512-512-10 with ReLU",
	body: func(n *net, x string) string {
		h := n.flatten(x)
		h = n.relu(n.linear(h, 784, 512, Kaiming))
		h = n.relu(n.linear(h, 512, 512, Kaiming))
		return n.linear(h, 512, 10, Xavier)
	},
})

// SmallCNN: two strided 5x5 convolutions, no pooling.
var SmallCNN = register(Arch{
	Name:        "cnn-small",
	Description: "small CNN: conv5x5/2 (32) - conv5x5/2 (64) - fc 128 - fc 10, ReLU, no pooling",
	body: func(n *net, x string) string {
		h := n.relu(n.conv(x, 1, 32, 5, 2, 2, Kaiming)) // 14x14
		h = n.relu(n.conv(h, 32, 64, 5, 2, 2, Kaiming)) // 7x7
		h = n.relu(n.linear(n.flatten(h), 64*7*7, 128, Kaiming))
		return n.linear(h, 128, 10, Xavier)
	},
})

// WideCNN: 3x3 convolutions widening 32-64-128 with a max-pool after each.
var WideCNN = register(Arch{
	Name:        "cnn-wide",
	Description: "wider CNN: conv3x3 (32) - maxpool - conv3x3 (64) - maxpool - conv3x3 (128) - maxpool - fc 256 - fc 10, ReLU",
	body: func(n *net, x string) string {
		h := n.maxPool(n.relu(n.conv(x, 1, 32, 3, 1, 1, Kaiming)), 2)  // 14x14
		h = n.maxPool(n.relu(n.conv(h, 32, 64, 3, 1, 1, Kaiming)), 2)  // 7x7
		h = n.maxPool(n.relu(n.conv(h, 64, 128, 3, 1, 1, Kaiming)), 2) // 3x3
		h = n.relu(n.linear(n.flatten(h), 128*3*3, 256, Kaiming))
		return n.linear(h, 256, 10, Xavier)
	},
})

// ResNet: a small residual net; each block's second convolution starts at zero, so
// the net begins as a plain shallow CNN and needs no normalisation.
var ResNet = register(Arch{
	Name:        "resnet-small",
	Description: "small residual net: conv3x3/2 (32) - conv3x3/2 (64) - 2 residual blocks (2 conv3x3 each) at 7x7 - global average pool - fc 10, ReLU, no normalisation",
	body: func(n *net, x string) string {
		block := func(h string, c int) string {
			r := n.relu(n.conv(h, c, c, 3, 1, 1, Kaiming))
			r = n.conv(r, c, c, 3, 1, 1, Zero)
			return n.relu(n.add(h, r))
		}
		h := n.relu(n.conv(x, 1, 32, 3, 2, 1, Kaiming)) // 14x14
		h = n.relu(n.conv(h, 32, 64, 3, 2, 1, Kaiming)) // 7x7
		h = block(h, 64)
		h = block(h, 64)
		return n.linear(n.flatten(n.globalAvgPool(h)), 64, 10, Xavier)
	},
})

// RobustCNN: the CNN of Wong et al. 2020 ("Fast is better than free", MNIST) with a
// wider hidden layer. Adversarial training runs several attack passes per step, so it
// is kept small: two strided 4x4 convolutions cost a fraction of the other CNNs.
var RobustCNN = register(Arch{
	Name:        "cnn-robust",
	Description: "CNN for adversarial training: conv4x4/2 (16) - conv4x4/2 (32) - fc 256 - fc 10, ReLU",
	body: func(n *net, x string) string {
		h := n.relu(n.conv(x, 1, 16, 4, 2, 1, Kaiming)) // 14x14
		h = n.relu(n.conv(h, 16, 32, 4, 2, 1, Kaiming)) // 7x7
		h = n.relu(n.linear(n.flatten(h), 32*7*7, 256, Kaiming))
		return n.linear(h, 256, 10, Xavier)
	},
})
