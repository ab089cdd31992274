package inference

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"strings"
)

// DefaultWorkingSide bounds the longer side of a Picture: a large photo is scaled
// down once, with area averaging, rather than once per model.
const DefaultWorkingSide = 1024

// Picture is an image ready for preprocessing: RGB values in [0,1], transparent
// areas composited onto white (how the image looks on a page).
type Picture struct {
	W, H    int
	R, G, B []float32
	// Gray is true when every pixel has R == G == B.
	Gray bool
	// SrcW, SrcH is the size before any working downscale.
	SrcW, SrcH int
}

// NewPicture converts img. When maxSide > 0 and img is larger, it is scaled down
// (keeping its aspect ratio) so that its longer side is maxSide. The memory it
// takes follows the picture's size, not the source's: at most PictureBytes.
func NewPicture(img image.Image, maxSide int) *Picture {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	w, h := pictureSize(sw, sh, maxSide)
	if w <= 0 || h <= 0 {
		return &Picture{W: w, H: h, SrcW: sw, SrcH: sh, Gray: true}
	}
	return pictureFrom(img, w, h)
}

// Luma weights (ITU-R BT.601), the ones PIL's convert("L") and Go's color.GrayModel use.
const lumaR, lumaG, lumaB = 0.299, 0.587, 0.114

func (p *Picture) luma() plane {
	out := newPlane(p.W, p.H)
	for i := range out.px {
		out.px[i] = lumaR*p.R[i] + lumaG*p.G[i] + lumaB*p.B[i]
	}
	return out
}

func (p *Picture) rgb() []plane {
	return []plane{
		{w: p.W, h: p.H, px: append([]float32(nil), p.R...)},
		{w: p.W, h: p.H, px: append([]float32(nil), p.G...)},
		{w: p.W, h: p.H, px: append([]float32(nil), p.B...)},
	}
}

// Thumbnail is the picture scaled to fit side×side (never enlarged), for display.
func (p *Picture) Thumbnail(side int) image.Image {
	w, h := p.W, p.H
	if s := float64(side) / float64(max(w, h, 1)); s < 1 {
		w, h = max(1, int(math.Round(float64(w)*s))), max(1, int(math.Round(float64(h)*s)))
	}
	planes := p.rgb()
	for i := range planes {
		planes[i] = resample(planes[i], w, h, kernelBilinear)
	}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range w * h {
		img.Pix[4*i] = to8(planes[0].px[i])
		img.Pix[4*i+1] = to8(planes[1].px[i])
		img.Pix[4*i+2] = to8(planes[2].px[i])
		img.Pix[4*i+3] = 255
	}
	return img
}

func to8(v float32) uint8 { return uint8(math.Round(float64(min(max(v, 0), 1)) * 255)) }

// Preprocessed is what one model is fed, and how it came to be.
type Preprocessed struct {
	Tensor *Tensor
	// Steps says what was done, in order, in words for the page.
	Steps []string
	// Display is the tensor turned back into an image at the model's resolution:
	// exactly what the model sees, before value scaling.
	Display image.Image
}

// Preprocess turns img into the input tensor c describes.
func Preprocess(img image.Image, c InputContract) (*Preprocessed, error) {
	return NewPicture(img, DefaultWorkingSide).Preprocess(c)
}

// Preprocess turns the picture into the input tensor c describes.
func (p *Picture) Preprocess(c InputContract) (*Preprocessed, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if p.W <= 0 || p.H <= 0 || len(p.R) != p.W*p.H {
		return nil, imageErr(ErrBadImage, "The image is empty (0 pixels).")
	}
	var steps []string
	k := kernelFor(c.Interp)
	mode := c.resize()

	var planes []plane // RGB order, or one gray plane
	if c.Channels == 1 || mode == ResizeMNIST {
		if !p.Gray {
			steps = append(steps, "colour → gray (luma 0.299 R + 0.587 G + 0.114 B)")
		}
		planes = []plane{p.luma()}
	} else {
		planes = p.rgb()
	}

	switch mode {
	case ResizeMNIST:
		out, s, err := mnistCentre(planes[0], c.Width, c.Height, k)
		if err != nil {
			return nil, err
		}
		planes[0] = out
		steps = append(steps, s...)
	case ResizeCrop:
		pct := c.CropPct
		if pct == 0 {
			pct = 1
		}
		rw, rh := cropScale(p.W, p.H, c.Width, c.Height, pct)
		// Python's round (half to even), as torchvision's CenterCrop places the crop.
		x0 := int(math.RoundToEven(float64(rw-c.Width) / 2))
		y0 := int(math.RoundToEven(float64(rh-c.Height) / 2))
		for i := range planes {
			planes[i] = resampleWindow(planes[i], rw, rh, x0, y0, c.Width, c.Height, k)
		}
		if rw != p.W || rh != p.H {
			steps = append(steps, fmt.Sprintf("scaled to %d×%d px (aspect kept)", rw, rh))
		}
		if rw != c.Width || rh != c.Height {
			steps = append(steps, fmt.Sprintf("centre %d×%d px cropped", c.Width, c.Height))
		}
	case ResizeStretch:
		if p.W != c.Width || p.H != c.Height {
			for i := range planes {
				planes[i] = resample(planes[i], c.Width, c.Height, k)
			}
			steps = append(steps, fmt.Sprintf("scaled to %d×%d px (aspect not kept)", c.Width, c.Height))
		}
	}
	for i := range planes {
		planes[i].clamp01()
	}
	if c.Channels == 3 && len(planes) == 1 {
		planes = []plane{planes[0], planes[0].clone(), planes[0].clone()}
		steps = append(steps, "gray → RGB (the value copied to all 3 channels)")
	} else if c.Channels == 3 && p.Gray {
		steps = append(steps, "gray image fed as RGB (equal channels)")
	}
	if c.Channels == 3 && strings.EqualFold(c.Color, "BGR") {
		planes[0], planes[2] = planes[2], planes[0]
		steps = append(steps, "channels reordered to BGR")
	}

	t := packTensor(planes, c)
	steps = append(steps, fmt.Sprintf("tensor %s %s, pixel values in %s", shapeString(t.Shape), c.TensorLayout(), c.ValuesText()))
	disp, err := TensorImage(t, c)
	if err != nil {
		return nil, err
	}
	return &Preprocessed{Tensor: t, Steps: steps, Display: disp}, nil
}

// cropScale is the size a w×h picture is scaled to before the centre W×H crop. For
// a square input it is what timm and torchvision evaluate with: the shorter side
// to floor(W/pct), the longer one in proportion, truncated (Resize(int)). Other
// inputs are scaled, aspect kept, to cover (W/pct)×(H/pct).
func cropScale(w, h, W, H int, pct float64) (rw, rh int) {
	if W == H {
		side := int(math.Floor(float64(W)/pct + 1e-9))
		if w <= h {
			rw, rh = side, int(float64(side)*float64(h)/float64(w))
		} else {
			rw, rh = int(float64(side)*float64(w)/float64(h)), side
		}
	} else {
		s := math.Max(float64(W)/pct/float64(w), float64(H)/pct/float64(h))
		rw, rh = int(math.Round(float64(w)*s)), int(math.Round(float64(h)*s))
	}
	return max(rw, W), max(rh, H)
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return strings.Join(parts, "×")
}

// packTensor lays planes (values in [0,1], in the model's channel order) out as c says.
func packTensor(planes []plane, c InputContract) *Tensor {
	t := NewTensor(c.Shape()...)
	hw := c.Width * c.Height
	for ch, pl := range planes {
		a, b := c.channelNorm(ch)
		for i, v := range pl.px {
			x := float32(float64(v)*a + b)
			if c.nhwc() {
				t.Data[i*c.Channels+ch] = x
			} else {
				t.Data[ch*hw+i] = x
			}
		}
	}
	return t
}

// TensorImage turns one input tensor back into the image it encodes under c: the
// inverse of the value scaling and layout (values are clamped to the pixel range).
// It returns *image.Gray for one channel and *image.NRGBA for three.
func TensorImage(t *Tensor, c InputContract) (image.Image, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	hw := c.Width * c.Height
	if len(t.Data) != hw*c.Channels {
		return nil, fmt.Errorf("tensor %v holds %d values, one %d×%d×%d image needs %d",
			t.Shape, len(t.Data), c.Channels, c.Height, c.Width, hw*c.Channels)
	}
	value := func(ch, i int) uint8 {
		var x float32
		if c.nhwc() {
			x = t.Data[i*c.Channels+ch]
		} else {
			x = t.Data[ch*hw+i]
		}
		a, b := c.channelNorm(ch)
		return to8(float32((float64(x) - b) / a))
	}
	r := image.Rect(0, 0, c.Width, c.Height)
	if c.Channels == 1 {
		img := image.NewGray(r)
		for i := range hw {
			img.Pix[i] = value(0, i)
		}
		return img, nil
	}
	img := image.NewNRGBA(r)
	bgr := strings.EqualFold(c.Color, "BGR")
	for i := range hw {
		px := color.NRGBA{value(0, i), value(1, i), value(2, i), 255}
		if bgr {
			px.R, px.B = px.B, px.R
		}
		img.SetNRGBA(i%c.Width, i/c.Width, px)
	}
	return img, nil
}
