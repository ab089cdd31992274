package benchnets

import (
	"fmt"
	"math"

	"gibbon/inference/onnx"
)

// ViTConfig shapes a vision transformer.
type ViTConfig struct {
	Image, Channels int64 // square input side and channels
	Patch           int64 // patch side (the embedding Conv's kernel and stride)
	Width, Depth    int64 // embedding width, number of blocks
	Heads, MLP      int64 // attention heads, hidden width of each block's MLP
	Classes         int64
	// MeanPool pools the tokens by their mean instead of reading a class token.
	MeanPool bool
}

// DeiTTiny is deit_tiny_patch16_224's shape.
var DeiTTiny = ViTConfig{Image: 224, Channels: 3, Patch: 16, Width: 192, Depth: 12, Heads: 3, MLP: 768, Classes: 1000}

// ViT builds a pre-norm vision transformer the way timm models export at opset 17:
// patch embedding Conv, Reshape+Transpose to tokens, a class token Expanded to the
// batch and Concatenated in front (unless MeanPool), position embeddings, blocks of
// LayerNormalization, multi-head attention (one MatMul to q,k,v, Reshape, Transpose,
// Gather of q/k/v, batched MatMul, Softmax) and a GELU MLP (written with Erf), both
// with residual Adds, a final LayerNormalization, the class token's row (Gather) or
// the tokens' mean (ReduceMean), and a Gemm head.
func ViT(cfg ViTConfig, seed uint64) *onnx.ModelProto {
	n := newNet(fmt.Sprintf("vit-d%d-w%d", cfg.Depth, cfg.Width), seed)
	b := n.b
	d, heads := cfg.Width, cfg.Heads
	dh := d / heads
	grid := cfg.Image / cfg.Patch
	tokens := grid * grid
	x := b.Input(Input, -1, cfg.Channels, cfg.Image, cfg.Image)

	pw := n.randn("patch.w", math.Sqrt(1/float64(cfg.Channels*cfg.Patch*cfg.Patch)), d, cfg.Channels, cfg.Patch, cfg.Patch)
	h := b.Op("Conv", []string{x, pw, n.fill("patch.b", 0, d)}, onnx.AttrInts("kernel_shape", cfg.Patch, cfg.Patch),
		onnx.AttrInts("strides", cfg.Patch, cfg.Patch))
	h = b.Op("Reshape", []string{h, b.Ints(0, d, tokens)})
	h = b.Op("Transpose", []string{h}, onnx.AttrInts("perm", 0, 2, 1)) // [N,T,D]
	t1 := tokens
	if !cfg.MeanPool {
		cls := n.randn("cls", 0.5, 1, 1, d)
		batch := b.Op("Slice", []string{b.Op("Shape", []string{x}), b.Ints(0), b.Ints(1)})
		shape := b.Op("Concat", []string{batch, b.Ints(1, d)}, onnx.AttrInt("axis", 0))
		h = b.Op("Concat", []string{b.Op("Expand", []string{cls, shape}), h}, onnx.AttrInt("axis", 1))
		t1++
	}
	h = b.Op("Add", []string{h, n.randn("pos", 0.5, 1, t1, d)})

	ln := func(x, name string) string {
		scale := make([]float32, d)
		for i := range scale {
			scale[i] = float32(1 + 0.1*n.rng.NormFloat64())
		}
		return b.Op("LayerNormalization", []string{x, b.Init(name+".s", []int64{d}, scale), n.randn(name+".b", 0.1, d)},
			onnx.AttrInt("axis", -1), onnx.AttrFloat("epsilon", 1e-6))
	}
	linear := func(x, name string, in, out int64, gain float64) string {
		w := n.randn(name+".w", gain*math.Sqrt(1/float64(in)), in, out)
		return b.Op("Add", []string{b.Op("MatMul", []string{x, w}), n.randn(name+".b", 0.02, out)})
	}
	invSqrt2 := b.Scalar(float32(1 / math.Sqrt2))
	half, one := b.Scalar(0.5), b.Scalar(1)
	gelu := func(x string) string {
		e := b.Op("Erf", []string{b.Op("Mul", []string{x, invSqrt2})})
		return b.Op("Mul", []string{b.Op("Mul", []string{x, half}), b.Op("Add", []string{e, one})})
	}
	scale := b.Scalar(float32(1 / math.Sqrt(float64(dh))))
	for i := range cfg.Depth {
		p := fmt.Sprintf("blk%d", i)
		y := ln(h, p+".ln1")
		qkv := linear(y, p+".qkv", d, 3*d, 1)
		qkv = b.Op("Reshape", []string{qkv, b.Ints(0, t1, 3, heads, dh)})
		qkv = b.Op("Transpose", []string{qkv}, onnx.AttrInts("perm", 2, 0, 3, 1, 4)) // [3,N,H,T,dh]
		var qkvs [3]string
		for j := range qkvs {
			idx := onnx.Int64Tensor(b.Fresh("idx"), nil, []int64{int64(j)})
			b.Graph().Initializer = append(b.Graph().Initializer, idx)
			qkvs[j] = b.Op("Gather", []string{qkv, idx.GetName()}, onnx.AttrInt("axis", 0))
		}
		q := b.Op("Mul", []string{qkvs[0], scale})
		kt := b.Op("Transpose", []string{qkvs[1]}, onnx.AttrInts("perm", 0, 1, 3, 2))
		attn := b.Op("Softmax", []string{b.Op("MatMul", []string{q, kt})}, onnx.AttrInt("axis", -1))
		o := b.Op("MatMul", []string{attn, qkvs[2]})                          // [N,H,T,dh]
		o = b.Op("Transpose", []string{o}, onnx.AttrInts("perm", 0, 2, 1, 3)) // [N,T,H,dh]
		o = b.Op("Reshape", []string{o, b.Ints(0, t1, d)})
		h = b.Op("Add", []string{h, linear(o, p+".proj", d, d, 0.5)})
		y = gelu(linear(ln(h, p+".ln2"), p+".fc1", d, cfg.MLP, 1))
		h = b.Op("Add", []string{h, linear(y, p+".fc2", cfg.MLP, d, 0.5)})
	}
	h = ln(h, "norm")
	if cfg.MeanPool {
		h = b.Op("ReduceMean", []string{h}, onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 0))
	} else {
		idx := onnx.Int64Tensor(b.Fresh("idx"), nil, []int64{0})
		b.Graph().Initializer = append(b.Graph().Initializer, idx)
		h = b.Op("Gather", []string{h, idx.GetName()}, onnx.AttrInt("axis", 1)) // the class token
	}
	hw := n.randn("head.w", math.Sqrt(1/float64(d)), cfg.Classes, d)
	z := b.Op("Gemm", []string{h, hw, n.fill("head.b", 0, cfg.Classes)}, onnx.AttrInt("transB", 1))
	return n.model(x, z, cfg.Classes)
}
