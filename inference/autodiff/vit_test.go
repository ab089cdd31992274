package autodiff_test

import (
	"math/rand/v2"
	"testing"

	"gibbon/inference/autodiff"
	"gibbon/inference/benchnets"
)

// A DeiT/ConViT-shaped vision transformer in miniature (benchnets.ViT: patch embedding
// Conv, class token Expanded and Concatenated, LayerNormalization, multi-head
// attention with batched MatMuls, Softmax, Transpose, Reshape and Gather, an Erf GELU
// MLP, the class token's row or the tokens' mean, a Gemm head) differentiates: the
// input gradient and those of the class token, position embeddings, a LayerNorm scale
// and an attention weight match finite differences.
func TestViTGradients(t *testing.T) {
	for _, meanPool := range []bool{false, true} {
		name := "class-token"
		if meanPool {
			name = "mean-pool"
		}
		t.Run(name, func(t *testing.T) {
			cfg := benchnets.ViTConfig{Image: 8, Channels: 3, Patch: 4, Width: 8, Depth: 2, Heads: 2, MLP: 16, Classes: 4, MeanPool: meanPool}
			m := benchnets.ViT(cfg, 3)
			params := []string{"pos", "blk0.ln1.s", "blk1.qkv.w", "blk0.fc1.b"}
			if !meanPool {
				params = append(params, "cls")
			}
			rng := rand.New(rand.NewPCG(31, 32))
			x := randTensor(rng, 0, 1, 2, 3, 8, 8)
			h := newHarness(t, m, autodiff.Options{Loss: autodiff.CrossEntropy, Params: params}, x, 4, 33)
			h.check()
		})
	}
}
