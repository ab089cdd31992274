package inference

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Tensor layouts of an InputContract; an empty Layout means NCHW.
const (
	LayoutNCHW = "NCHW"
	LayoutNHWC = "NHWC"
)

// InputContract is how an image becomes the model's input tensor.
type InputContract struct {
	Name     string `json:"name"`     // graph input name
	Layout   string `json:"layout"`   // NCHW or NHWC
	Channels int    `json:"channels"` // 1 or 3
	Height   int    `json:"height"`   // pixels
	Width    int    `json:"width"`    // pixels
	Color    string `json:"color"`    // gray, RGB or BGR
	// Range is the pixel value range before mean/std: [0,1] or [0,255].
	Range [2]float64 `json:"range"`
	Mean  []float64  `json:"mean,omitempty"` // per channel, applied after scaling to Range
	Std   []float64  `json:"std,omitempty"`
	// Resize: "mnist" (centre of mass, 20x20 box, invert dark-on-light), "crop"
	// (shorter side to size/CropPct, centre crop) or "stretch".
	Resize  string  `json:"resize"`
	CropPct float64 `json:"crop_pct,omitempty"`
	Interp  string  `json:"interp,omitempty"` // bilinear (default) or bicubic
}

// PixelRange is the contract's pixel range as attacks and images use it; the zero
// Range means [0,1].
func (c InputContract) PixelRange() [2]float32 {
	lo, hi := c.valueRange()
	return [2]float32{float32(lo), float32(hi)}
}

// Unnormalized is c without mean/std: tensors on the pixel range, as attacks see them
// (the normalisation is folded into the graph instead).
func (c InputContract) Unnormalized() InputContract {
	c.Mean, c.Std = nil, nil
	return c
}

// Resize policies of an InputContract.
const (
	ResizeMNIST   = "mnist"
	ResizeCrop    = "crop"
	ResizeStretch = "stretch"
)

// ErrBadContract marks an InputContract Gibbon cannot follow.
var ErrBadContract = errors.New("bad input contract")

// Check reports an input contract that is incomplete or that Gibbon cannot follow.
func (c InputContract) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadContract, fmt.Sprintf(format, args...))
	}
	if !strings.EqualFold(c.Layout, LayoutNCHW) && !strings.EqualFold(c.Layout, LayoutNHWC) {
		return bad("layout is %q, want NCHW or NHWC", c.Layout)
	}
	switch c.Channels {
	case 1:
		if !strings.EqualFold(c.Color, "gray") {
			return bad("1 channel needs color \"gray\", not %q", c.Color)
		}
	case 3:
		if !strings.EqualFold(c.Color, "RGB") && !strings.EqualFold(c.Color, "BGR") {
			return bad("3 channels need color \"RGB\" or \"BGR\", not %q", c.Color)
		}
	default:
		return bad("channels is %d, want 1 or 3", c.Channels)
	}
	if c.Height < 1 || c.Width < 1 || c.Height > 4096 || c.Width > 4096 {
		return bad("size is %d×%d pixels, want 1 to 4096 each way", c.Width, c.Height)
	}
	if lo, hi := c.valueRange(); !(hi > lo) {
		return bad("range [%g, %g] is empty", lo, hi)
	}
	if len(c.Mean) != 0 && len(c.Mean) != c.Channels {
		return bad("mean has %d values for %d channels", len(c.Mean), c.Channels)
	}
	if len(c.Std) != 0 && len(c.Std) != c.Channels {
		return bad("std has %d values for %d channels", len(c.Std), c.Channels)
	}
	for _, s := range c.Std {
		if s == 0 || math.IsNaN(s) || math.IsInf(s, 0) {
			return bad("std %v cannot divide", c.Std)
		}
	}
	switch c.resize() {
	case ResizeMNIST, ResizeStretch:
	case ResizeCrop:
		if c.CropPct < 0 || c.CropPct > 1 {
			return bad("crop_pct is %g, want a fraction in (0, 1]", c.CropPct)
		}
	default:
		return bad("resize is %q, want mnist, crop or stretch", c.Resize)
	}
	if c.Interp != "" && !strings.EqualFold(c.Interp, "bilinear") && !strings.EqualFold(c.Interp, "bicubic") {
		return bad("interp is %q, want bilinear or bicubic", c.Interp)
	}
	return nil
}

// valueRange is Range, with the zero value meaning [0, 1].
func (c InputContract) valueRange() (lo, hi float64) {
	if c.Range == [2]float64{} {
		return 0, 1
	}
	return c.Range[0], c.Range[1]
}

func (c InputContract) resize() string {
	if c.Resize == "" {
		return ResizeStretch
	}
	return strings.ToLower(c.Resize)
}

func (c InputContract) nhwc() bool { return c.TensorLayout() == LayoutNHWC }

// Shape is the tensor shape of one image under c (batch 1).
func (c InputContract) Shape() []int64 {
	if c.nhwc() {
		return []int64{1, int64(c.Height), int64(c.Width), int64(c.Channels)}
	}
	return []int64{1, int64(c.Channels), int64(c.Height), int64(c.Width)}
}

// channelNorm is what maps a [0,1] pixel value of channel ch to the tensor: v·a + b.
func (c InputContract) channelNorm(ch int) (a, b float64) {
	lo, hi := c.valueRange()
	mean, std := c.MeanStd(ch)
	return (hi - lo) / std, (lo - mean) / std
}

// ParseLayout reads a tensor layout: NCHW (also when empty) or NHWC, in any case.
func ParseLayout(s string) (string, error) {
	switch l := strings.ToUpper(s); l {
	case "":
		return LayoutNCHW, nil
	case LayoutNCHW, LayoutNHWC:
		return l, nil
	}
	return s, fmt.Errorf("layout %q: want NCHW or NHWC", s)
}

// TensorLayout is the contract's layout in capitals, NCHW when it names none.
func (c InputContract) TensorLayout() string {
	l, _ := ParseLayout(c.Layout)
	return l
}

// TensorKey is equal for contracts that turn an image into the same tensor, mean/std
// aside (attacks fold those into the graphs): models with equal keys can be attacked
// together and judge each other's adversarial images.
func (c InputContract) TensorKey() string {
	lo, hi := c.valueRange()
	return fmt.Sprintf("%s %dx%dx%d %s [%g,%g] %s %g", c.TensorLayout(), c.Channels, c.Height, c.Width,
		strings.ToUpper(c.Color), lo, hi, c.resize(), c.CropPct)
}

// SameTensor reports whether c and o make the same tensor of an image (TensorKey).
func (c InputContract) SameTensor(o InputContract) bool { return c.TensorKey() == o.TensorKey() }

// Describe says what a model with this contract takes, for messages and pages:
// "28×28 gray images on [0,1] (NCHW, resize mnist)".
func (c InputContract) Describe() string {
	lo, hi := c.valueRange()
	fit := "resize " + c.resize()
	if c.resize() == ResizeCrop {
		fit = fmt.Sprintf("crop %g", c.CropPct)
	}
	if c.Interp != "" {
		fit += " " + strings.ToLower(c.Interp)
	}
	return fmt.Sprintf("%d×%d %s images on [%g,%g] (%s, %s)", c.Width, c.Height, c.Color, lo, hi, c.TensorLayout(), fit)
}

// MeanStd is channel ch's normalisation: (x − mean)/std after scaling to Range. No
// mean/std is 0 and 1; a single value applies to every channel.
func (c InputContract) MeanStd(ch int) (mean, std float64) {
	pick := func(v []float64, def float64) float64 {
		switch {
		case len(v) > ch:
			return v[ch]
		case len(v) == 1:
			return v[0]
		}
		return def
	}
	return pick(c.Mean, 0), pick(c.Std, 1)
}

// Normalized reports whether the contract has a mean/std step.
func (c InputContract) Normalized() bool { return len(c.Mean) > 0 || len(c.Std) > 0 }

// Normalize applies the contract's mean/std to x, a tensor of images on the pixel
// range in the contract's layout; without mean/std it returns x itself.
func (c InputContract) Normalize(x *Tensor) *Tensor {
	if !c.Normalized() {
		return x
	}
	y := x.Clone()
	for i := range y.Data {
		mean, std := c.MeanStd(c.channelOf(i))
		y.Data[i] = float32((float64(x.Data[i]) - mean) / std)
	}
	return y
}

// channelOf is the channel of element i of a batch of images under c.
func (c InputContract) channelOf(i int) int {
	if c.nhwc() {
		return i % c.Channels
	}
	return i / (c.Width * c.Height) % c.Channels
}

// ValuesText says what values the tensor holds: "[0, 1]", then the mean/std step when
// there is one.
func (c InputContract) ValuesText() string {
	lo, hi := c.valueRange()
	s := fmt.Sprintf("[%g, %g]", lo, hi)
	if c.Normalized() {
		s += fmt.Sprintf(", then (x − mean %s) / std %s per channel", floatsString(c.Mean, 0), floatsString(c.Std, 1))
	}
	return s
}

func floatsString(v []float64, def float64) string {
	if len(v) == 0 {
		return fmt.Sprint(def)
	}
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%g", x)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
