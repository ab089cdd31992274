package autodiff_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
)

// opCase is a small model built around a few ops, with a smooth Flatten+Gemm head so
// the logits depend on every element. Together the cases cover every op Build supports.
type opCase struct {
	name   string
	build  func(b *onnx.Builder, rng *rand.Rand, x string) string // returns a [N,F] or larger tensor
	input  []int64                                                // without the batch
	lo, hi float32                                                // input range
	params []string
	loss   autodiff.LossKind
	// spread draws inputs as a shuffled grid of well-separated values (max pools: no
	// near-ties for the finite differences to trip on)
	spread bool
}

const classes = 3

func (oc opCase) model(rng *rand.Rand) *onnx.ModelProto {
	b := onnx.NewBuilder(oc.name)
	x := b.Input("x", append([]int64{-1}, oc.input...)...)
	b.Output("features", b.Op("Flatten", []string{oc.build(b, rng, x)}))
	return b.Model()
}

func opCases() []opCase {
	return []opCase{
		{name: "conv_stride_pads_dilation_group_bias", input: []int64{4, 9, 9}, lo: -1, hi: 1,
			params: []string{"w", "b"},
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				w := weights(b, rng, "w", 18, 6, 2, 3, 3)
				bb := weights(b, rng, "b", 18, 6)
				h := b.Op("Conv", []string{x, w, bb}, onnx.AttrInts("strides", 2, 1), onnx.AttrInts("pads", 1, 0, 2, 1),
					onnx.AttrInts("dilations", 1, 2), onnx.AttrInt("group", 2))
				return b.Op("Tanh", []string{h})
			}},
		{name: "conv_depthwise_same_upper", input: []int64{3, 7, 7}, lo: -1, hi: 1, params: []string{"w"},
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				w := weights(b, rng, "w", 9, 3, 1, 3, 3)
				return b.Op("Conv", []string{x, w}, onnx.AttrString("auto_pad", "SAME_UPPER"), onnx.AttrInts("strides", 2, 2), onnx.AttrInt("group", 3))
			}},
		{name: "conv_same_lower_even_kernel_then_valid", input: []int64{2, 6, 6}, lo: -1, hi: 1, params: []string{"w1", "w2"},
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				w1 := weights(b, rng, "w1", 8, 3, 2, 2, 2)
				h := b.Op("Conv", []string{x, w1}, onnx.AttrString("auto_pad", "SAME_LOWER"))
				w2 := weights(b, rng, "w2", 27, 2, 3, 3, 3)
				return b.Op("Conv", []string{h, w2}, onnx.AttrString("auto_pad", "VALID"), onnx.AttrInts("strides", 2, 2))
			}},
		{name: "conv_strided_phases", input: []int64{4, 7, 7}, lo: -1, hi: 1, params: []string{"w1", "w2", "w3", "w4", "w5"},
			// strided convolutions whose input gradient is split by output phase: a 1x1
			// kernel (phases with no taps), a 7x7 stem-like kernel, stride 3, pads
			// larger than the kernel's reach (crops before and after), grouped and
			// depthwise kernels, an odd input (a crop of the interleaved result)
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				w1 := weights(b, rng, "w1", 4, 6, 4, 1, 1)
				c1 := b.Op("Conv", []string{x, w1}, onnx.AttrInts("strides", 2, 2))
				w2 := weights(b, rng, "w2", 196, 3, 4, 7, 7)
				c2 := b.Op("Conv", []string{x, w2}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 3, 3, 3, 3))
				w3 := weights(b, rng, "w3", 18, 4, 2, 3, 3)
				c3 := b.Op("Conv", []string{x, w3}, onnx.AttrInts("strides", 3, 3), onnx.AttrInts("pads", 2, 0, 1, 2), onnx.AttrInt("group", 2))
				w4 := weights(b, rng, "w4", 9, 4, 1, 3, 3)
				c4 := b.Op("Conv", []string{x, w4}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 2, 2, 2, 2), onnx.AttrInt("group", 4))
				w5 := weights(b, rng, "w5", 16, 2, 4, 2, 2)
				c5 := b.Op("Conv", []string{x, w5}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 0, 1, 1, 0))
				parts := []string{}
				for _, p := range []string{c1, c2, c3, c4, c5} {
					parts = append(parts, b.Op("Flatten", []string{b.Op("Tanh", []string{p})}))
				}
				return b.Op("Concat", parts, onnx.AttrInt("axis", 1))
			}},
		{name: "conv_depthwise_strided", input: []int64{4, 8, 7}, lo: -1, hi: 1, params: []string{"w1", "w2", "w3", "w4"},
			// strided depthwise convolutions, whose input gradient on the CPU is a
			// correlation over dy with zeros inserted: MobileNet's 3x3 stride 2 pads 1 on
			// an even (8) and an odd (7) axis, dilation, stride 3 with uneven pads, an
			// end pad past the last window (a shorter zero tail)
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				w1 := weights(b, rng, "w1", 9, 4, 1, 3, 3)
				c1 := b.Op("Conv", []string{x, w1}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("group", 4))
				w2 := weights(b, rng, "w2", 9, 4, 1, 3, 3)
				c2 := b.Op("Conv", []string{x, w2}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("dilations", 2, 1), onnx.AttrInts("pads", 2, 0, 1, 1), onnx.AttrInt("group", 4))
				w3 := weights(b, rng, "w3", 15, 4, 1, 5, 3)
				c3 := b.Op("Conv", []string{x, w3}, onnx.AttrInts("strides", 3, 2), onnx.AttrInts("pads", 1, 2, 3, 0), onnx.AttrInt("group", 4))
				w4 := weights(b, rng, "w4", 4, 4, 1, 2, 2)
				c4 := b.Op("Conv", []string{x, w4}, onnx.AttrInts("strides", 2, 3), onnx.AttrInts("pads", 0, 1, 1, 1), onnx.AttrInt("group", 4))
				parts := []string{}
				for _, p := range []string{c1, c2, c3, c4} {
					parts = append(parts, b.Op("Flatten", []string{b.Op("Tanh", []string{p})}))
				}
				return b.Op("Concat", parts, onnx.AttrInt("axis", 1))
			}},
		{name: "conv_one_channel_to_odd", input: []int64{1, 7, 7}, lo: -1, hi: 1, params: []string{"w"},
			// the GPU forms pad the input gradient's ConvTranspose to 6 channels
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				w := weights(b, rng, "w", 9, 5, 1, 3, 3)
				return b.Op("Tanh", []string{b.Op("Conv", []string{x, w}, onnx.AttrInts("strides", 2, 2))})
			}},
		{name: "conv_transpose", input: []int64{4, 4, 4}, lo: -1, hi: 1, params: []string{"w1", "b1", "w2"},
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				w1 := weights(b, rng, "w1", 18, 4, 3, 3, 3) // group 2: [Cin, Cout/g, k, k]
				b1 := weights(b, rng, "b1", 18, 6)
				h := b.Op("ConvTranspose", []string{x, w1, b1}, onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 0, 1, 1),
					onnx.AttrInts("output_padding", 1, 0), onnx.AttrInt("group", 2))
				w2 := weights(b, rng, "w2", 12, 6, 2, 2, 2)
				return b.Op("ConvTranspose", []string{h, w2}, onnx.AttrInts("dilations", 2, 2))
			}},
		{name: "maxpool_overlap_ceil_dilation", input: []int64{2, 8, 8}, spread: true,
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				p1 := b.Op("MaxPool", []string{x}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInt("ceil_mode", 1))
				p2 := b.Op("MaxPool", []string{x}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("dilations", 2, 2), onnx.AttrInts("pads", 1, 1, 0, 0))
				// non-overlapping windows (another backward path), the last one past the end
				p3 := b.Op("MaxPool", []string{x}, onnx.AttrInts("kernel_shape", 2, 3), onnx.AttrInts("strides", 2, 3),
					onnx.AttrInts("pads", 1, 0, 0, 0), onnx.AttrInt("ceil_mode", 1))
				p4 := b.Op("MaxPool", []string{x}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 3, 3))
				parts := []string{}
				for _, p := range []string{p1, p2, p3, p4} {
					parts = append(parts, b.Op("Flatten", []string{p}))
				}
				return b.Op("Concat", parts, onnx.AttrInt("axis", 1))
			}},
		{name: "maxpool_1d_3d_gaps_same", input: []int64{2, 6, 6}, spread: true,
			// the shapes the GPU forms' mask handles besides 2-D: 1-D and 3-D windows,
			// windows with gaps between them (kernel < stride), SAME padding; and
			// overlapping 3-D windows, which keep the Indices path in both forms
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				x1 := b.Op("Reshape", []string{x, b.Ints(0, 2, 36)})
				p1 := b.Op("MaxPool", []string{x1}, onnx.AttrInts("kernel_shape", 3), onnx.AttrInts("strides", 2), onnx.AttrInts("pads", 1, 1))
				p2 := b.Op("MaxPool", []string{x1}, onnx.AttrInts("kernel_shape", 4), onnx.AttrInts("strides", 4))
				x3 := b.Op("Reshape", []string{x, b.Ints(0, 1, 2, 6, 6)})
				p3 := b.Op("MaxPool", []string{x3}, onnx.AttrInts("kernel_shape", 2, 3, 2), onnx.AttrInts("strides", 2, 3, 2))
				p4 := b.Op("MaxPool", []string{x}, onnx.AttrInts("kernel_shape", 2, 1), onnx.AttrInts("strides", 3, 2))
				p5 := b.Op("MaxPool", []string{x}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrString("auto_pad", "SAME_UPPER"))
				p6 := b.Op("MaxPool", []string{x3}, onnx.AttrInts("kernel_shape", 2, 2, 2), onnx.AttrInts("strides", 1, 2, 2))
				parts := []string{}
				for _, p := range []string{p1, p2, p3, p4, p5, p6} {
					parts = append(parts, b.Op("Flatten", []string{p}))
				}
				return b.Op("Concat", parts, onnx.AttrInt("axis", 1))
			}},
		{name: "averagepool_pads_ceil_global", input: []int64{2, 8, 8}, lo: -1, hi: 1,
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				a1 := b.Op("AveragePool", []string{x}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2),
					onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("ceil_mode", 1))
				a2 := b.Op("AveragePool", []string{x}, onnx.AttrInts("kernel_shape", 3, 2), onnx.AttrInts("strides", 2, 3),
					onnx.AttrInts("pads", 1, 0, 1, 1), onnx.AttrInt("count_include_pad", 1), onnx.AttrInt("ceil_mode", 1))
				a3 := b.Op("AveragePool", []string{x}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrString("auto_pad", "SAME_UPPER"))
				// windows past the input's end: ceil_mode with no padding to absorb them
				a4 := b.Op("AveragePool", []string{x}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2),
					onnx.AttrInt("count_include_pad", 1), onnx.AttrInt("ceil_mode", 1))
				g := b.Op("GlobalAveragePool", []string{b.Op("Mul", []string{x, x})})
				parts := []string{}
				for _, p := range []string{a1, a2, a3, a4, g} {
					parts = append(parts, b.Op("Flatten", []string{p}))
				}
				return b.Op("Concat", parts, onnx.AttrInt("axis", 1))
			}},
		{name: "batchnorm_all_params", input: []int64{3, 4, 4}, lo: -1, hi: 1, params: []string{"scale", "bias", "mean", "var"},
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				b.Init("scale", []int64{3}, []float32{1.5, -0.7, 0.9})
				b.Init("bias", []int64{3}, []float32{0.1, 0.2, -0.3})
				b.Init("mean", []int64{3}, []float32{0.05, -0.1, 0.2})
				b.Init("var", []int64{3}, []float32{0.8, 1.3, 0.5})
				h := b.Op("BatchNormalization", []string{x, "scale", "bias", "mean", "var"}, onnx.AttrFloat("epsilon", 1e-3))
				return b.Op("Mul", []string{h, h})
			}},
		{name: "activations_split_concat", input: []int64{8, 3, 3}, lo: -5, hi: 5,
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				parts := b.OpN("Split", []string{x, b.Ints(1, 1, 1, 1, 1, 1, 1, 1)}, 8, onnx.AttrInt("axis", 1))
				acts := []string{
					b.Op("Relu", []string{parts[0]}),
					b.Op("LeakyRelu", []string{parts[1]}, onnx.AttrFloat("alpha", 0.1)),
					b.Op("Clip", []string{parts[2], b.Scalar(-2), b.Scalar(3)}),
					b.Op("Sigmoid", []string{parts[3]}),
					b.Op("Tanh", []string{b.Op("Mul", []string{parts[4], b.Scalar(0.3)})}),
					b.Op("HardSigmoid", []string{parts[5]}, onnx.AttrFloat("alpha", 0.25)),
					b.Op("HardSwish", []string{parts[6]}),
					b.Op("Clip", []string{parts[7], "", b.Scalar(1)}),
				}
				return b.Op("Concat", acts, onnx.AttrInt("axis", 1))
			}},
		{name: "broadcast_arithmetic", input: []int64{3, 4, 5}, lo: 0.5, hi: 1.5, params: []string{"c", "w", "d"},
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				c := weights(b, rng, "c", 1, 3, 1, 1)
				w := weights(b, rng, "w", 1, 1, 3, 1, 5)
				d := b.Init("d", []int64{4, 5}, func() []float32 {
					v := make([]float32, 20)
					for i := range v {
						v[i] = 1 + rng.Float32()
					}
					return v
				}())
				h := b.Op("Add", []string{x, c})
				h = b.Op("Sub", []string{b.Scalar(0.5), h})
				h = b.Op("Mul", []string{h, w})
				h = b.Op("Div", []string{h, d})
				r := b.Op("Div", []string{b.Scalar(1), x}) // x in the denominator
				s := b.Op("Sum", []string{h, r, x})
				return b.Op("Add", []string{s, b.Op("Sqrt", []string{b.Op("Exp", []string{b.Op("Neg", []string{b.Op("Log", []string{x})})})})})
			}},
		{name: "gemm_flags_matmul_batch", input: []int64{4, 6}, lo: -1, hi: 1, params: []string{"a", "bm", "c", "m", "a2"},
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				a := weights(b, rng, "a", 6, 6, 5)
				bm := weights(b, rng, "bm", 5, 3, 5)
				c := weights(b, rng, "c", 1, 1, 3)
				m := weights(b, rng, "m", 6, 2, 6, 5)
				// [N,4,6] @ [2,1?] : MatMul with broadcasting of batch dims: x[N,1,4,6] @ m[2,6,5] -> [N,2,4,5]
				mm := b.Op("MatMul", []string{b.Op("Unsqueeze", []string{x, b.Ints(1)}), m})
				f := b.Op("Flatten", []string{x})                                            // [N,24]
				g1 := b.Op("Gemm", []string{b.Op("Reshape", []string{f, b.Ints(-1, 6)}), a}) // [4N,5]
				g2 := b.Op("Gemm", []string{b.Op("Transpose", []string{g1}), bm, c}, onnx.AttrInt("transA", 1), onnx.AttrInt("transB", 1),
					onnx.AttrFloat("alpha", 0.5), onnx.AttrFloat("beta", 2)) // [4N,3]
				g3 := b.Op("Gemm", []string{bm, b.Op("Transpose", []string{g1})}, onnx.AttrFloat("alpha", 1.5)) // [3,4N]... transposed use below
				g3 = b.Op("Transpose", []string{g3})                                                            // [4N,3]
				a2 := weights(b, rng, "a2", 5, 5, 3)
				g4 := b.Op("Gemm", []string{b.Op("Transpose", []string{g1}), a2}, onnx.AttrInt("transA", 1)) // [4N,3]
				g3 = b.Op("Add", []string{g3, g4})
				return b.Op("Concat", []string{b.Op("Reshape", []string{g2, b.Ints(-1, 12)}), b.Op("Reshape", []string{g3, b.Ints(-1, 12)}),
					b.Op("Flatten", []string{mm})}, onnx.AttrInt("axis", 1))
			}},
		{name: "shape_ops", input: []int64{3, 6, 5}, lo: -1, hi: 1,
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				s1 := b.Op("Slice", []string{x, b.Ints(1, -5), b.Ints(100, 6), b.Ints(2, 3), b.Ints(2, 1)}) // rows 1,3,5; cols 0..4
				s2 := b.Op("Slice", []string{x, b.Ints(0), b.Ints(2), b.Ints(1)})
				p := b.Op("Pad", []string{x, b.Ints(0, 0, 1, -1, 0, 1, 2, -2)}) // pad and crop
				t := b.Op("Transpose", []string{x}, onnx.AttrInts("perm", 0, 2, 3, 1))
				u := b.Op("Squeeze", []string{b.Op("Unsqueeze", []string{t, b.Ints(2)}), b.Ints(2)})
				sm := b.Op("Softmax", []string{b.Op("Identity", []string{u})}, onnx.AttrInt("axis", 2))
				d := b.OpN("Dropout", []string{s2}, 1)[0]
				ls := b.Op("LogSoftmax", []string{p}, onnx.AttrInt("axis", 1))
				parts := []string{}
				rs := b.Op("ReduceSum", []string{b.Op("Mul", []string{x, x}), b.Ints(1, -1)})
				for _, v := range []string{s1, d, ls, sm, rs} {
					parts = append(parts, b.Op("Flatten", []string{v}))
				}
				return b.Op("Concat", parts, onnx.AttrInt("axis", 1))
			}},
		{name: "resize_nearest", input: []int64{2, 3, 4}, lo: -1, hi: 1,
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				r1 := b.Op("Resize", []string{x, "", b.Const([]int64{4}, 1, 1, 2, 3)},
					onnx.AttrString("mode", "nearest"), onnx.AttrString("coordinate_transformation_mode", "asymmetric"), onnx.AttrString("nearest_mode", "floor"))
				r2 := b.Op("Resize", []string{x, "", b.Const([]int64{4}, 1, 1, 3, 2)}, onnx.AttrString("mode", "nearest"))
				r3 := b.Op("Resize", []string{x, "", b.Const([]int64{4}, 1, 1, 5.0/3, 1.5)}, onnx.AttrString("mode", "nearest"),
					onnx.AttrString("coordinate_transformation_mode", "align_corners"), onnx.AttrString("nearest_mode", "round_prefer_ceil"))
				parts := []string{}
				for _, v := range []string{r1, r2, r3} {
					parts = append(parts, b.Op("Flatten", []string{b.Op("Tanh", []string{v})}))
				}
				return b.Op("Concat", parts, onnx.AttrInt("axis", 1))
			}},
		{name: "layernorm_gelu_pow", input: []int64{4, 6}, lo: -1, hi: 1, params: []string{"s1", "b1", "s2", "e"},
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				s1 := b.Init("s1", []int64{6}, []float32{1.2, 0.8, -0.5, 1, 0.3, 1.5})
				b1 := weights(b, rng, "b1", 1, 6)
				l1 := b.Op("LayerNormalization", []string{x, s1, b1}, onnx.AttrInt("axis", -1), onnx.AttrFloat("epsilon", 1e-5))
				// over the last two axes, no bias, a given Mean output nobody reads
				s2 := weights(b, rng, "s2", 1, 4, 6)
				l2 := b.OpN("LayerNormalization", []string{x, s2}, 2, onnx.AttrInt("axis", 1))[0]
				gelu := func(h string) string {
					e := b.Op("Erf", []string{b.Op("Mul", []string{h, b.Scalar(float32(1 / math.Sqrt2))})})
					return b.Op("Mul", []string{b.Op("Mul", []string{h, b.Scalar(0.5)}), b.Op("Add", []string{e, b.Scalar(1)})})
				}
				pos := b.Op("Add", []string{b.Op("Mul", []string{x, x}), b.Scalar(0.5)})
				e := b.Init("e", []int64{1}, []float32{1.5})
				p1 := b.Op("Pow", []string{pos, b.Scalar(3)})
				p2 := b.Op("Pow", []string{pos, e})
				p3 := b.Op("Pow", []string{pos, b.Scalar(2)})
				parts := []string{}
				for _, v := range []string{gelu(l1), gelu(b.Op("Mul", []string{l2, b.Scalar(2)})), p1, p2, p3} {
					parts = append(parts, b.Op("Flatten", []string{v}))
				}
				return b.Op("Concat", parts, onnx.AttrInt("axis", 1))
			}},
		{name: "where_expand_gather", input: []int64{4, 6}, lo: -1, hi: 1, params: []string{"c", "t"},
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				c := weights(b, rng, "c", 1, 1, 1, 6)
				batch := b.Op("Slice", []string{b.Op("Shape", []string{x}), b.Ints(0), b.Ints(1)})
				shape := b.Op("Concat", []string{batch, b.Ints(4, 6)}, onnx.AttrInt("axis", 0))
				ex := b.Op("Expand", []string{c, shape})                                                     // [N,4,6] from [1,1,6]
				ex2 := b.Op("Expand", []string{b.Op("Mul", []string{x, b.Scalar(0.5)}), b.Ints(3, 1, 1, 1)}) // [3,N,4,6]... batch moves
				ex2 = b.Op("ReduceSum", []string{b.Op("Tanh", []string{ex2}), b.Ints(0)}, onnx.AttrInt("keepdims", 0))
				t := weights(b, rng, "t", 1, 4, 1)
				w := b.Op("Where", []string{b.Op("Greater", []string{x, b.Scalar(0)}), b.Op("Mul", []string{x, b.Scalar(2)}), b.Op("Mul", []string{t, ex})})
				scalar := func(v int64) string {
					name := b.Fresh("idx")
					b.Graph().Initializer = append(b.Graph().Initializer, onnx.Int64Tensor(name, nil, []int64{v}))
					return name
				}
				g1 := b.Op("Gather", []string{x, scalar(-1)}, onnx.AttrInt("axis", 1))          // [N,6], the last row
				g2 := b.Op("Gather", []string{x, b.Ints(1, 2)}, onnx.AttrInt("axis", 2))        // [N,4,2], consecutive
				g3 := b.Op("Gather", []string{x, b.Ints(3, 0, 3, -2)}, onnx.AttrInt("axis", 2)) // scattered, repeated
				parts := []string{}
				for _, v := range []string{w, ex2, g1, b.Op("Sigmoid", []string{g2}), b.Op("Mul", []string{g3, g3})} {
					parts = append(parts, b.Op("Flatten", []string{v}))
				}
				return b.Op("Concat", parts, onnx.AttrInt("axis", 1))
			}},
		{name: "convit_gated_attention", input: []int64{4, 8}, lo: -1, hi: 1, params: []string{"wq", "wk", "wv", "gate", "wpos"},
			// ConViT's gated positional self-attention: a content attention and a positional
			// one (from fixed relative offsets) mixed by a per-head sigmoid gate, then
			// renormalised by their sum
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				const heads, dh = 2, 4
				split := func(h string) string { // [N,4,8] -> [N,2,4,4]
					return b.Op("Transpose", []string{b.Op("Reshape", []string{h, b.Ints(0, 4, heads, dh)})}, onnx.AttrInts("perm", 0, 2, 1, 3))
				}
				q := split(b.Op("MatMul", []string{x, weights(b, rng, "wq", 8, 8, 8)}))
				k := split(b.Op("MatMul", []string{x, weights(b, rng, "wk", 8, 8, 8)}))
				v := split(b.Op("MatMul", []string{x, weights(b, rng, "wv", 8, 8, 8)}))
				patch := b.Op("Softmax", []string{b.Op("Mul", []string{b.Op("MatMul", []string{q, b.Op("Transpose", []string{k}, onnx.AttrInts("perm", 0, 1, 3, 2))}), b.Scalar(2)})}, onnx.AttrInt("axis", -1))
				rel := make([]float32, 4*4*3) // [T,T,3]: dx, dy, distance of a 2x2 grid
				for i := 0; i < 4; i++ {
					for j := 0; j < 4; j++ {
						dx, dy := float32(j%2-i%2), float32(j/2-i/2)
						rel[(i*4+j)*3], rel[(i*4+j)*3+1], rel[(i*4+j)*3+2] = dx, dy, dx*dx+dy*dy
					}
				}
				pos := b.Op("MatMul", []string{b.Const([]int64{4, 4, 3}, rel...), weights(b, rng, "wpos", 3, 3, heads)}) // [T,T,H]
				pos = b.Op("Softmax", []string{b.Op("Transpose", []string{pos}, onnx.AttrInts("perm", 2, 0, 1))}, onnx.AttrInt("axis", -1))
				gate := b.Op("Sigmoid", []string{weights(b, rng, "gate", 1, heads, 1, 1)})
				attn := b.Op("Add", []string{b.Op("Mul", []string{b.Op("Sub", []string{b.Scalar(1), gate}), patch}), b.Op("Mul", []string{gate, pos})})
				attn = b.Op("Div", []string{attn, b.Op("ReduceSum", []string{attn, b.Ints(-1)}, onnx.AttrInt("keepdims", 1))})
				return b.Op("MatMul", []string{attn, v})
			}},
		{name: "global_maxpool", input: []int64{3, 4, 5}, spread: true,
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				return b.Op("Concat", []string{b.Op("Flatten", []string{b.Op("GlobalMaxPool", []string{x})}),
					b.Op("Flatten", []string{b.Op("GlobalMaxPool", []string{b.Op("Neg", []string{x})})})}, onnx.AttrInt("axis", 1))
			}},
		{name: "logit_seed_mode", input: []int64{1, 5, 5}, lo: -1, hi: 1, params: []string{"w"}, loss: autodiff.LogitSeed,
			build: func(b *onnx.Builder, rng *rand.Rand, x string) string {
				w := weights(b, rng, "w", 9, 2, 1, 3, 3)
				return b.Op("Sigmoid", []string{b.Op("Conv", []string{x, w})})
			}},
	}
}

// withHead appends a Gemm to `classes` logits once the feature width is known.
func withHead(t *testing.T, m *onnx.ModelProto, rng *rand.Rand, features int64) *onnx.ModelProto {
	t.Helper()
	g := m.Graph
	out := g.Output[0].GetName()
	g.Output = nil
	b := onnx.BuilderOn(g, onnx.DefaultOpset)
	w := weights(b, rng, "head.w", int(features), classes, features)
	hb := weights(b, rng, "head.b", 1, classes)
	b.Output("logits", b.Op("Gemm", []string{out, w, hb}, onnx.AttrInt("transB", 1)), -1, classes)
	m.Graph = b.Graph()
	return m
}

func featureWidth(t *testing.T, m *onnx.ModelProto, x *inference.Tensor) int64 {
	t.Helper()
	out := runModel(t, m, map[string]*inference.Tensor{"x": x})
	f := out["features"]
	if len(f.Shape) != 2 {
		t.Fatalf("features shape %v", f.Shape)
	}
	return f.Shape[1]
}

func spreadTensor(rng *rand.Rand, shape ...int64) *inference.Tensor {
	t := inference.NewTensor(shape...)
	perm := rng.Perm(len(t.Data))
	for i, p := range perm {
		t.Data[i] = 0.01 * float32(p-len(perm)/2)
	}
	return t
}

// TestOpGradients checks every case's gradients against finite differences in both
// graph forms (see autodiff.Target), run here on the CPU.
func TestOpGradients(t *testing.T) {
	for _, target := range []autodiff.Target{autodiff.TargetCPU, autodiff.TargetGPU} {
		for _, oc := range opCases() {
			t.Run(target.String()+"/"+oc.name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(11, 12))
				m := oc.model(rng)
				shape := append([]int64{2}, oc.input...)
				x := randTensor(rng, oc.lo, oc.hi, shape...)
				if oc.spread {
					x = spreadTensor(rng, shape...)
				}
				m = withHead(t, m, rng, featureWidth(t, m, x))
				h := newHarness(t, m, autodiff.Options{Loss: oc.loss, Params: oc.params, Target: target}, x, classes, 5)
				h.check()
			})
		}
	}
}
