// Package defense holds input-transformation defences: each changes an image before
// a classifier sees it, and wraps any classifier. JPEG re-encoding, bit-depth
// reduction and median filtering (Xu et al., "Feature Squeezing", 2018; Guo et al.,
// "Countering Adversarial Images using Input Transformations", 2018) and random
// resize-and-pad (Xie et al., "Mitigating Adversarial Effects Through Randomization",
// 2018, the 2nd-place defence of the NIPS 2017 competition).
//
// Transforms work on tensors on the model's pixel range (before mean/std, as the
// attacks see them), in NCHW or NHWC layout.
package defense

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"

	"gibbon/inference"
)

// Classifier predicts logits for a batch of images on the pixel range. It has the
// method set of attack.Classifier, so attack models fit, and a Defended is one too.
type Classifier interface {
	Predict(ctx context.Context, x *inference.Tensor) (*inference.Tensor, error)
}

// Format says how images lie in a tensor.
type Format struct {
	// Layout is "NCHW" (default when empty) or "NHWC".
	Layout string
	// Range is the pixel value range; zero means [0,1].
	Range [2]float32
	// Color is the channel order of 3-channel images: "RGB" (default) or "BGR".
	// JPEG's colour conversion depends on it.
	Color string
}

// Transform is an input transformation.
type Transform interface {
	// Name says what it does, with its parameter: "JPEG q75".
	Name() string
	// Apply returns transformed copies of the images x [N, ...] (x is not changed).
	// Random transforms draw from rng; the others ignore it.
	Apply(x *inference.Tensor, f Format, rng *rand.Rand) (*inference.Tensor, error)
}

// Defended is a transform in front of a classifier; it is a Classifier itself. It is
// safe for concurrent use when the classifier is.
type Defended struct {
	t   Transform
	net Classifier
	f   Format

	mu  sync.Mutex
	rng *rand.Rand
}

// New puts t in front of net. seed drives random transforms (the same seed gives
// the same draws in the same order).
func New(t Transform, net Classifier, f Format, seed uint64) (*Defended, error) {
	if t == nil || net == nil {
		return nil, errors.New("defense: a transform and a classifier are needed")
	}
	if _, err := f.check(); err != nil {
		return nil, err
	}
	return &Defended{t: t, net: net, f: f, rng: rand.New(rand.NewPCG(seed, 0x5bd1e995))}, nil
}

// Transform is the defence's transform.
func (d *Defended) Transform() Transform { return d.t }

// Name is the transform's name.
func (d *Defended) Name() string { return d.t.Name() }

// Predict transforms x and classifies the result.
func (d *Defended) Predict(ctx context.Context, x *inference.Tensor) (*inference.Tensor, error) {
	d.mu.Lock()
	y, err := d.t.Apply(x, d.f, d.rng)
	d.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.t.Name(), err)
	}
	return d.net.Predict(ctx, y)
}

// Classes passes on the classifier's class count, when it knows it.
func (d *Defended) Classes() int {
	if cc, ok := d.net.(interface{ Classes() int }); ok {
		return cc.Classes()
	}
	return 0
}

// Kind describes one transform and its integer parameter, for menus and parsing.
type Kind struct {
	ID      string // "jpeg"
	Label   string // "JPEG re-encoding"
	Param   string // "quality"
	Unit    string // shown after the value, e.g. "%" or "bits"
	Min     int
	Max     int
	Default int
	Random  bool // the verdict changes from draw to draw
	// Note says where it comes from and what the parameter does.
	Note string
	// Caveat is one sentence, with its reference, for a defence whose figure against
	// attacks that ignore it overstates what it does against attacks that see it
	// (measured on the built-in MNIST models: see the README). JPEG has none: attacks
	// through it do about as well as attacks around it.
	Caveat string
}

// obfuscated is the reference of every caveat.
const obfuscated = "(Athalye, Carlini & Wagner, \"Obfuscated Gradients Give a False Sense of Security\", ICML 2018)"

// Kinds lists the transforms, in menu order.
var Kinds = []Kind{
	{ID: "jpeg", Label: "JPEG re-encoding", Param: "quality", Min: 1, Max: 100, Default: 75,
		Note: "encode as JPEG at this quality and decode again (Guo et al. 2018)"},
	{ID: "bits", Label: "Bit-depth reduction", Param: "bits", Unit: "bits", Min: 1, Max: 7, Default: 3,
		Note: "round every value to 2^bits levels (feature squeezing, Xu et al. 2018; 1 bit on MNIST)",
		Caveat: "Bit-depth reduction scores higher against attacks that ignore it than against one that passes gradients straight through the rounding (BPDA); " +
			"at 1 bit on MNIST part of it holds, since only pixels within ε of the threshold can flip " + obfuscated + "."},
	{ID: "median", Label: "Median filter", Param: "size", Unit: "px", Min: 2, Max: 7, Default: 3,
		Note: "median of each size×size window, per channel, mirrored at the borders (feature squeezing: 2×2 on MNIST)",
		Caveat: "The median filter holds mostly against attacks that ignore it: one that follows the filter's own derivative (to each window's middle-rank pixel) " +
			"takes most of its gain away " + obfuscated + "."},
	{ID: "resize-pad", Label: "Random resize and pad", Param: "smallest size", Unit: "%", Min: 50, Max: 99, Default: 90, Random: true,
		Note:   "shrink to a random size between this share and 100 %, nearest neighbour, then pad back at a random offset (Xie et al. 2018, 2nd in NIPS'17)",
		Caveat: "Random resize-and-pad scores higher against attacks that ignore it than against one that averages gradients over its random draws (EOT) " + obfuscated + "."},
}

// KindByID finds a kind by its id.
func KindByID(id string) (Kind, bool) {
	id = strings.ToLower(strings.TrimSpace(id))
	for _, k := range Kinds {
		if k.ID == id {
			return k, true
		}
	}
	return Kind{}, false
}

// NewTransform makes the transform of kind id with its parameter.
func NewTransform(id string, param int) (Transform, error) {
	k, ok := KindByID(id)
	if !ok {
		ids := make([]string, len(Kinds))
		for i, k := range Kinds {
			ids[i] = k.ID
		}
		return nil, fmt.Errorf("unknown defence %q (choose one of %s)", id, strings.Join(ids, ", "))
	}
	if param < k.Min || param > k.Max {
		return nil, fmt.Errorf("%s: %s must be between %d and %d, got %d", k.Label, k.Param, k.Min, k.Max, param)
	}
	switch k.ID {
	case "jpeg":
		return JPEG{Quality: param}, nil
	case "bits":
		return BitDepth{Bits: param}, nil
	case "median":
		return Median{Size: param}, nil
	default:
		return ResizePad{MinScale: float64(param) / 100}, nil
	}
}

// geometry is where the values of one image lie in a batch tensor.
type geometry struct {
	n, c, h, w int
	nhwc       bool
	lo, hi     float64
}

func (f Format) check() (nhwc bool, err error) {
	layout, err := inference.ParseLayout(f.Layout)
	if err != nil {
		return false, err
	}
	nhwc = layout == inference.LayoutNHWC
	lo, hi := f.bounds()
	if !(lo < hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return false, fmt.Errorf("pixel range [%g,%g] is empty", lo, hi)
	}
	switch strings.ToUpper(f.Color) {
	case "", "RGB", "BGR", "GRAY":
	default:
		return false, fmt.Errorf("colour order %q: want RGB or BGR", f.Color)
	}
	return nhwc, nil
}

func (f Format) bounds() (lo, hi float64) {
	if f.Range == [2]float32{} {
		return 0, 1
	}
	return float64(f.Range[0]), float64(f.Range[1])
}

func (f Format) geometry(x *inference.Tensor) (geometry, error) {
	nhwc, err := f.check()
	if err != nil {
		return geometry{}, err
	}
	if x == nil {
		return geometry{}, errors.New("no images")
	}
	if err := x.Validate(); err != nil {
		return geometry{}, err
	}
	if len(x.Shape) != 4 {
		return geometry{}, fmt.Errorf("images have shape %v; want a batch of images [N, C, H, W] or [N, H, W, C]", x.Shape)
	}
	g := geometry{n: int(x.Shape[0]), nhwc: nhwc}
	if nhwc {
		g.h, g.w, g.c = int(x.Shape[1]), int(x.Shape[2]), int(x.Shape[3])
	} else {
		g.c, g.h, g.w = int(x.Shape[1]), int(x.Shape[2]), int(x.Shape[3])
	}
	if g.n < 1 || g.c < 1 || g.h < 1 || g.w < 1 {
		return geometry{}, fmt.Errorf("images have shape %v: no pixels", x.Shape)
	}
	g.lo, g.hi = f.bounds()
	return g, nil
}

// at is the index of image i, channel ch, pixel p (= y·w + x).
func (g geometry) at(i, ch, p int) int {
	hw := g.h * g.w
	if g.nhwc {
		return (i*hw+p)*g.c + ch
	}
	return (i*g.c+ch)*hw + p
}

// planes reads image i as one [0,1] plane per channel (values outside the range are clamped).
func (g geometry) planes(x []float32, i int) [][]float32 {
	hw := g.h * g.w
	scale := 1 / (g.hi - g.lo)
	out := make([][]float32, g.c)
	for ch := range out {
		p := make([]float32, hw)
		for j := range p {
			v := (float64(x[g.at(i, ch, j)]) - g.lo) * scale
			p[j] = float32(min(max(v, 0), 1))
		}
		out[ch] = p
	}
	return out
}

// store writes [0,1] planes back as image i on the pixel range.
func (g geometry) store(y []float32, i int, planes [][]float32) {
	for ch, p := range planes {
		for j, v := range p {
			y[g.at(i, ch, j)] = float32(g.lo + float64(v)*(g.hi-g.lo))
		}
	}
}

// perImage applies fn to every image's planes.
func perImage(x *inference.Tensor, f Format, fn func(g geometry, planes [][]float32) ([][]float32, error)) (*inference.Tensor, error) {
	g, err := f.geometry(x)
	if err != nil {
		return nil, err
	}
	y := inference.NewTensor(x.Shape...)
	for i := range g.n {
		out, err := fn(g, g.planes(x.Data, i))
		if err != nil {
			return nil, err
		}
		g.store(y.Data, i, out)
	}
	return y, nil
}
