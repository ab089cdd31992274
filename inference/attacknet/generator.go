// Package attacknet trains and evaluates Gibbon's attack networks: fully convolutional
// encoder-decoders that turn an image into adversarial examples in one forward pass,
// one perturbation head per L∞ budget (after Preferred Networks' entry to the NIPS 2017
// adversarial attack competition; see shared/design/attack-network.md).
//
// The generator is an ONNX graph built here; training composes it with frozen target
// classifiers into one graph whose per-image objective autodiff differentiates with
// respect to the generator's weights only (the classifiers' weights stay constants),
// so gradients flow through the classifiers into the generator.
package attacknet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"

	"gibbon/inference"
	"gibbon/inference/onnx"
	"gibbon/inference/train"
)

// Graph names of an exported attack network.
const (
	// Input is the clean image, in the target classifiers' layout and pixel range.
	Input = "image"
	// Output is "adv" [N, K, C, H, W] (NCHW) or [N, K, H, W, C] (NHWC): head k's
	// adversarial image for budget Eps[k].
	Output = "adv"
	// ParamPrefix starts every generator initializer's name.
	ParamPrefix = "gen/"
)

// Spec is what a generator is built for: the image tensor the targets take and the
// budgets of its heads.
type Spec struct {
	Channels, Height, Width int
	// Layout is "NCHW" (default) or "NHWC".
	Layout string
	// Range is the pixel range; the zero value means [0,1].
	Range [2]float64
	// Eps are the heads' L∞ budgets on Range, in output order.
	Eps []float64
	// Base is the channel count at full resolution (doubling per level; default 6).
	Base int
	// Levels is the number of stride-2 downsamplings (0: as many as keep the smaller
	// side at 7 or more, at most 4), counted after the pixel shuffle.
	Levels int
	// Shuffle 2 folds each 2×2 block of pixels into channels before the first layer
	// (space-to-depth) and unfolds the heads' output the same way (depth-to-space), so
	// no layer runs at full resolution: the U-Net starts at half the size with 4× the
	// input channels and its heads emit 4 values per head, channel and block. Odd
	// sides are padded with zeros and the output cropped. 0 (or 1): no shuffle.
	Shuffle int `json:",omitempty"`
}

// DefaultBase is the generator width when Spec.Base is 0.
const DefaultBase = 6

// Normalized fills in the defaults and checks the spec.
func (s Spec) Normalized() (Spec, error) {
	layout, err := inference.ParseLayout(s.Layout)
	if err != nil {
		return s, err
	}
	s.Layout = layout
	if s.Range == [2]float64{} {
		s.Range = [2]float64{0, 1}
	}
	if s.Base == 0 {
		s.Base = DefaultBase
	}
	switch {
	case s.Channels < 1 || s.Channels > 4:
		return s, fmt.Errorf("%d channels: want 1 to 4", s.Channels)
	case s.Height < 4 || s.Width < 4 || s.Height > 4096 || s.Width > 4096:
		return s, fmt.Errorf("image size %d×%d: want 4 to 4096 pixels each way", s.Width, s.Height)
	case !(s.Range[1] > s.Range[0]) || math.IsInf(s.Range[0], 0) || math.IsInf(s.Range[1], 0):
		return s, fmt.Errorf("pixel range [%g,%g] is empty", s.Range[0], s.Range[1])
	case len(s.Eps) == 0 || len(s.Eps) > 32:
		return s, fmt.Errorf("%d eps heads: want 1 to 32", len(s.Eps))
	case s.Base < 1 || s.Base > 256:
		return s, fmt.Errorf("base width %d: want 1 to 256 channels", s.Base)
	case s.Levels < 0 || s.Levels > 6:
		return s, fmt.Errorf("%d levels: want 0 (automatic) to 6", s.Levels)
	case s.Shuffle < 0 || s.Shuffle > 2:
		return s, fmt.Errorf("pixel shuffle %d: want 0 (none) or 2", s.Shuffle)
	}
	if s.Shuffle == 1 {
		s.Shuffle = 0
	}
	for i, e := range s.Eps {
		if !(e > 0) || e > s.Range[1]-s.Range[0] || math.IsInf(e, 0) {
			return s, fmt.Errorf("eps %g (head %d) must be positive and at most the range width %g", e, i, s.Range[1]-s.Range[0])
		}
		for _, f := range s.Eps[:i] {
			if f == e {
				return s, fmt.Errorf("eps %g is listed twice", e)
			}
		}
	}
	if s.Levels == 0 {
		for side := s.top(min(s.Height, s.Width)); s.Levels < 4 && (side+1)/2 >= 7; side = (side + 1) / 2 {
			s.Levels++
		}
		if s.Levels == 0 {
			s.Levels = 1
		}
	}
	if side := s.top(min(s.Height, s.Width)); side>>s.Levels < 1 {
		return s, fmt.Errorf("%d levels halve a %d-pixel side below one pixel", s.Levels, side)
	}
	return s, nil
}

// inferenceParams are trained weights (BuildGenerator's parameters, in its order) for
// BuildInferenceGenerator's form: the head layer's, the last two, doubled (exact in
// floating point).
func inferenceParams(params []*train.Param) []*train.Param {
	out := make([]*train.Param, len(params))
	for i, p := range params {
		out[i] = p
		if i >= len(params)-2 {
			q := *p
			q.Data = make([]float32, len(p.Data))
			for j, v := range p.Data {
				q.Data[j] = 2 * v
			}
			out[i] = &q
		}
	}
	return out
}

// top is the U-Net's first resolution for an image side: the side itself, or half of
// it (rounded up) after the pixel shuffle.
func (s Spec) top(side int) int {
	if s.Shuffle == 2 {
		return (side + 1) / 2
	}
	return side
}

// HeadName is the conventional name of a head's budget, e.g. "eps0.3".
func HeadName(eps float64) string { return "eps" + strconv.FormatFloat(eps, 'g', -1, 64) }

// MACs is the generator's multiply-accumulates per image (convolutions only).
func (s Spec) MACs() int64 {
	s, err := s.Normalized()
	if err != nil {
		return 0
	}
	var total int64
	h, w := int64(s.Height), int64(s.Width)
	conv := func(cin, cout int, h, w int64) { total += h * w * int64(cin) * int64(cout) * 9 }
	conv1 := func(cin, cout int, h, w int64) { total += h * w * int64(cin) * int64(cout) }
	ch := s.levelChannels()
	in, out := s.Channels, len(s.Eps)*s.Channels
	if s.Shuffle == 2 {
		h, w = int64(s.top(s.Height)), int64(s.top(s.Width))
		in, out = 4*in, 4*out
	}
	conv(in, ch[0], h, w)
	sizes := [][2]int64{{h, w}}
	for l := 1; l <= s.Levels; l++ {
		h, w = (h+1)/2, (w+1)/2
		sizes = append(sizes, [2]int64{h, w})
		conv(ch[l-1], ch[l], h, w)
	}
	conv(ch[s.Levels], ch[s.Levels], h, w)
	for l := s.Levels; l >= 1; l-- {
		conv(ch[l], ch[l-1], sizes[l][0], sizes[l][1]) // transposed conv, counted at the input size
		if l == 1 && s.Shuffle == 0 {
			conv1(2*ch[0], ch[0], sizes[0][0], sizes[0][1])
		} else {
			conv(2*ch[l-1], ch[l-1], sizes[l-1][0], sizes[l-1][1])
		}
	}
	conv(ch[0], out, sizes[0][0], sizes[0][1])
	return total
}

// levelChannels is the channel count at each resolution level.
func (s Spec) levelChannels() []int {
	ch := make([]int, s.Levels+1)
	for l := range ch {
		ch[l] = min(s.Base<<l, 8*s.Base)
	}
	return ch
}

// gen builds the generator's layers with seeded weights.
type gen struct {
	b      *onnx.Builder
	rng    *rand.Rand
	params []string
	layer  int
}

func (g *gen) param(kind string, shape []int64, data []float32) string {
	name := fmt.Sprintf("%sl%d.%s", ParamPrefix, g.layer, kind)
	g.b.Init(name, shape, data)
	g.params = append(g.params, name)
	return name
}

// normal fills a weight with N(0, std²).
func (g *gen) normal(shape []int64, std float64) []float32 {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(g.rng.NormFloat64() * std)
	}
	return out
}

// conv is a 3×3 convolution with bias (Kaiming-normal weights scaled by gain).
func (g *gen) conv(x string, cin, cout, stride int, gain float64) string {
	g.layer++
	shape := []int64{int64(cout), int64(cin), 3, 3}
	w := g.param("w", shape, g.normal(shape, gain*math.Sqrt(2/float64(cin*9))))
	b := g.param("b", []int64{int64(cout)}, make([]float32, cout))
	s := int64(stride)
	return g.b.Op("Conv", []string{x, w, b}, onnx.AttrInts("kernel_shape", 3, 3),
		onnx.AttrInts("strides", s, s), onnx.AttrInts("pads", 1, 1, 1, 1))
}

// convCat is conv over the channel concatenation of up and skip (c channels each)
// into c channels. The saved form (split) leaves out the Concat: the weight's two
// channel halves, sliced at load time (ONNX Runtime folds the Slices), convolve up and
// skip apart and the two sums add (ORT fuses the Add into the second Conv), so the
// skip map, which the encoder left in ORT's blocked NCHWc layout, needs no conversion
// back to NCHW for a Concat, nor the concatenation one into NCHWc. Same parameters,
// same rng draws either way.
func (g *gen) convCat(up, skip string, c int, split bool) string {
	if !split {
		return g.conv(g.b.Op("Concat", []string{up, skip}, onnx.AttrInt("axis", 1)), 2*c, c, 1, 1)
	}
	g.layer++
	shape := []int64{int64(c), int64(2 * c), 3, 3}
	w := g.param("w", shape, g.normal(shape, math.Sqrt(2/float64(2*c*9))))
	b := g.param("b", []int64{int64(c)}, make([]float32, c))
	half := func(from, to int64) string {
		return g.b.Op("Slice", []string{w, g.b.Ints(from), g.b.Ints(to), g.b.Ints(1)})
	}
	attrs := []*onnx.AttributeProto{onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("pads", 1, 1, 1, 1)}
	fromSkip := g.b.Op("Conv", []string{skip, half(int64(c), int64(2*c))}, attrs...)
	fromUp := g.b.Op("Conv", []string{up, half(0, int64(c)), b}, attrs...)
	return g.b.Op("Add", []string{fromUp, fromSkip})
}

// up is a 3×3 stride-2 transposed convolution whose output is exactly h×w (the skip
// connection's size: 2·in or 2·in−1 each way).
func (g *gen) up(x string, cin, cout int, inH, inW, h, w int) string {
	g.layer++
	shape := []int64{int64(cin), int64(cout), 3, 3}
	wt := g.param("w", shape, g.normal(shape, math.Sqrt(2/(2.25*float64(cin)))))
	b := g.param("b", []int64{int64(cout)}, make([]float32, cout))
	// out = 2(in−1) − 2·pad + 3 + output_padding = 2·in − 1 + output_padding
	return g.b.Op("ConvTranspose", []string{x, wt, b}, onnx.AttrInts("kernel_shape", 3, 3),
		onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1),
		onnx.AttrInts("output_padding", int64(h-(2*inH-1)), int64(w-(2*inW-1))))
}

// conv1 is a 1×1 convolution with bias.
func (g *gen) conv1(x string, cin, cout int) string {
	g.layer++
	shape := []int64{int64(cout), int64(cin), 1, 1}
	w := g.param("w", shape, g.normal(shape, math.Sqrt(2/float64(cin))))
	b := g.param("b", []int64{int64(cout)}, make([]float32, cout))
	return g.b.Op("Conv", []string{x, w, b})
}

func (g *gen) relu(x string) string { return g.b.Op("Relu", []string{x}) }

// BuildGenerator returns the generator graph with weights drawn from seed, and the
// names of its trainable initializers.
//
// It is a U-Net: a 3×3 convolution at full resolution, Levels stride-2 convolutions
// down (channels doubling), one more at the bottom, then per level a stride-2
// transposed convolution up, concatenated with the encoder's map of that size (the
// skip connection) and mixed by a 3×3 convolution (1×1 at full resolution, where the
// cost is); last a 3×3 convolution to K·C
// channels, one image-sized map h_k per head. With Shuffle 2 the U-Net works on the
// image folded to half size (space-to-depth), mixes with 3×3 at its top level too,
// and its last convolution emits 4·K·C channels unfolded back to K·C image-sized maps
// (depth-to-space): equivalent in what it can express per pixel, at about a quarter
// of the cost per layer. Head k's output is x + eps_k·tanh(h_k)
// where that stays inside the pixel range [lo, hi]; near the range's edge tanh is
// rescaled onto [max(lo, x−eps_k), min(hi, x+eps_k)] instead of clipped. Either way
// |adv − x| ≤ eps_k and lo ≤ adv ≤ hi hold by construction (up to float32 rounding,
// below 1e-7 on [0,1]).
//
// This is the form training differentiates; BuildInferenceGenerator is the same
// network in the form a trained generator is saved in.
func BuildGenerator(spec Spec, seed uint64) (*onnx.ModelProto, []string, error) {
	return buildGenerator(spec, seed, false)
}

// BuildInferenceGenerator is the network BuildGenerator builds (same initializers,
// same outputs up to float rounding) in the form a trained generator is saved in,
// which ONNX Runtime runs faster:
//   - the pixel shuffle's folds are single DepthToSpace nodes (and SpaceToDepth for
//     one-channel images, where its channel order is the same) instead of Reshape,
//     6-d Transpose, Reshape: pure data movement either way, but ORT's generic 6-d
//     Transpose took about a seventh of a pass and its DepthToSpace a third of that;
//   - the tail is a + (b−a)·sigmoid(2h) instead of mid + half·tanh(h) (three fewer
//     elementwise passes), so the head layer's weights and bias are doubled: bake
//     trained weights in with inferenceParams;
//   - each decoder level convolves the upsampled map and the skip connection apart and
//     adds the two, instead of concatenating them first (see convCat): no layout
//     conversions for a Concat, about a tenth of a pass on the MNIST network.
//
// The autodiff rules do not cover DepthToSpace, so training uses BuildGenerator's form
// and Trainer.Model bakes its weights into this one.
func BuildInferenceGenerator(spec Spec, seed uint64) (*onnx.ModelProto, []string, error) {
	return buildGenerator(spec, seed, true)
}

func buildGenerator(spec Spec, seed uint64, inference bool) (*onnx.ModelProto, []string, error) {
	s, err := spec.Normalized()
	if err != nil {
		return nil, nil, err
	}
	b := onnx.NewBuilder("attack-network")
	g := &gen{b: b, rng: rand.New(rand.NewPCG(seed, 0x5eed0a77ac4e7)), layer: 0}
	C, H, W, K := int64(s.Channels), int64(s.Height), int64(s.Width), int64(len(s.Eps))
	lo, hi := float32(s.Range[0]), float32(s.Range[1])
	nhwc := s.Layout == "NHWC"

	var x string
	if nhwc {
		in := b.Input(Input, -1, H, W, C)
		x = b.Op("Transpose", []string{in}, onnx.AttrInts("perm", 0, 3, 1, 2))
	} else {
		x = b.Input(Input, -1, C, H, W)
	}
	// The layers see the image on [0,1] whatever the pixel range.
	u := b.Op("Mul", []string{b.Op("Sub", []string{x, b.Scalar(lo)}), b.Scalar(1 / (hi - lo))})

	ch := s.levelChannels()
	sizes := [][2]int{{s.Height, s.Width}}
	cin, cout := s.Channels, int(K*C)
	Hs, Ws := H, W
	if s.Shuffle == 2 {
		// Space-to-depth: [N,C,H,W] → (zero-padded to even sides) [N,C,H/2,2,W/2,2] →
		// [N,C,2,2,H/2,W/2] → [N,4C,H/2,W/2], channel (c, dy, dx).
		Hs, Ws = int64(s.top(s.Height)), int64(s.top(s.Width))
		if 2*Hs != H || 2*Ws != W {
			u = b.Op("Pad", []string{u, b.Ints(0, 0, 0, 0, 0, 0, 2*Hs-H, 2*Ws-W)})
		}
		if inference && C == 1 {
			u = b.Op("SpaceToDepth", []string{u}, onnx.AttrInt("blocksize", 2))
		} else {
			u = b.Op("Reshape", []string{u, b.Ints(-1, C, Hs, 2, Ws, 2)})
			u = b.Op("Transpose", []string{u}, onnx.AttrInts("perm", 0, 1, 3, 5, 2, 4))
			u = b.Op("Reshape", []string{u, b.Ints(-1, 4*C, Hs, Ws)})
		}
		sizes = [][2]int{{int(Hs), int(Ws)}}
		cin, cout = 4*cin, 4*cout
	}
	skips := []string{g.relu(g.conv(u, cin, ch[0], 1, 1))}
	h := skips[0]
	for l := 1; l <= s.Levels; l++ {
		prev := sizes[l-1]
		sizes = append(sizes, [2]int{(prev[0] + 1) / 2, (prev[1] + 1) / 2})
		h = g.relu(g.conv(h, ch[l-1], ch[l], 2, 1))
		skips = append(skips, h)
	}
	h = g.relu(g.conv(h, ch[s.Levels], ch[s.Levels], 1, 1))
	for l := s.Levels; l >= 1; l-- {
		in, out := sizes[l], sizes[l-1]
		up := g.relu(g.up(h, ch[l], ch[l-1], in[0], in[1], out[0], out[1]))
		if l == 1 && s.Shuffle == 0 {
			// At full resolution a 1×1 mix is enough (the 3×3 heads follow) and
			// costs a ninth: this is where a pass spends most of its time.
			cat := b.Op("Concat", []string{up, skips[l-1]}, onnx.AttrInt("axis", 1))
			h = g.relu(g.conv1(cat, 2*ch[l-1], ch[l-1]))
		} else {
			h = g.relu(g.convCat(up, skips[l-1], ch[l-1], inference))
		}
	}
	// Small last-layer weights: every head starts near tanh's linear part, adv ≈ x.
	heads := g.conv(h, ch[0], cout, 1, 0.1)
	if inference {
		// The saved form's tail takes sigmoid(2h): its head layer holds twice the
		// weights (see inferenceParams).
		for _, name := range g.params[len(g.params)-2:] {
			w := onnx.Initializer(b.Graph(), name)
			v, err := onnx.FloatData(w)
			if err != nil {
				return nil, nil, err
			}
			for i := range v {
				v[i] *= 2
			}
			onnx.SetFloatData(w, v)
		}
	}
	if s.Shuffle == 2 {
		// Depth-to-space, the inverse of the input's fold: channel (k, c, dy, dx) at
		// (y, x) is head k's pixel (2y+dy, 2x+dx), cropped to H×W.
		if inference {
			heads = b.Op("DepthToSpace", []string{heads}, onnx.AttrInt("blocksize", 2), onnx.AttrString("mode", "CRD"))
		} else {
			heads = b.Op("Reshape", []string{heads, b.Ints(-1, K*C, 2, 2, Hs, Ws)})
			heads = b.Op("Transpose", []string{heads}, onnx.AttrInts("perm", 0, 1, 4, 2, 5, 3))
		}
		heads = b.Op("Reshape", []string{heads, b.Ints(-1, K, C, 2*Hs, 2*Ws)})
		if 2*Hs != H || 2*Ws != W {
			heads = b.Op("Slice", []string{heads, b.Ints(0, 0), b.Ints(H, W), b.Ints(3, 4)})
		}
	}

	heads = b.Op("Reshape", []string{heads, b.Ints(-1, K, C, H, W)})
	eps := make([]float32, K)
	for i, e := range s.Eps {
		eps[i] = float32(e)
	}
	// Head k spans [a, b] = [max(lo, x−eps_k), min(hi, x+eps_k)]: adv = mid + half·tanh(h)
	// with mid = (a+b)/2, half = (b−a)/2. Where the ball lies inside the range this is
	// x + eps_k·tanh(h); at the range's edge it rescales tanh instead of clipping, so no
	// pixel sits in a clipped dead zone without a gradient. The final Clip only guards
	// float rounding.
	epsT := b.Const([]int64{1, K, 1, 1, 1}, eps...)
	x5 := b.Op("Unsqueeze", []string{x, b.Ints(1)})
	a := b.Op("Max", []string{b.Op("Sub", []string{x5, epsT}), b.Scalar(lo)})
	c := b.Op("Min", []string{b.Op("Add", []string{x5, epsT}), b.Scalar(hi)})
	var adv string
	if inference {
		// The same map in three fewer passes over [N,K,C,H,W]: mid + half·tanh(h) =
		// a + (b−a)·sigmoid(2h), the 2 folded into the head layer's weights.
		sig := b.Op("Sigmoid", []string{heads})
		adv = b.Op("Add", []string{a, b.Op("Mul", []string{b.Op("Sub", []string{c, a}), sig})})
	} else {
		t := b.Op("Tanh", []string{heads})
		mid := b.Op("Mul", []string{b.Op("Add", []string{a, c}), b.Scalar(0.5)})
		half := b.Op("Mul", []string{b.Op("Sub", []string{c, a}), b.Scalar(0.5)})
		adv = b.Op("Add", []string{mid, b.Op("Mul", []string{half, t})})
	}
	adv = b.Op("Clip", []string{adv, b.Scalar(lo), b.Scalar(hi)})
	if nhwc {
		b.Output(Output, b.Op("Transpose", []string{adv}, onnx.AttrInts("perm", 0, 1, 3, 4, 2)), -1, K, H, W, C)
	} else {
		b.Output(Output, adv, -1, K, C, H, W)
	}
	return b.Model(), g.params, nil
}
