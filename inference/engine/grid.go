package engine

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"math"
	"strings"
	"sync"

	"gibbon/inference"
)

// Grid maps a model's input values to the 256 levels of its pixel range and back.
// Every image a run keeps is on it: the clean image is what a PNG of it holds, and
// attacks round to it without leaving the ε-ball.
type Grid struct {
	c      inference.InputContract // on the pixel range
	lo, st float64                 // range start, level spacing
}

// NewGrid is the grid of a contract's pixel range (mean/std do not apply).
func NewGrid(c inference.InputContract) Grid {
	c = c.Unnormalized()
	r := c.PixelRange()
	return Grid{c: c, lo: float64(r[0]), st: (float64(r[1]) - float64(r[0])) / 255}
}

// Contract is the grid's input contract (without mean/std).
func (g Grid) Contract() inference.InputContract { return g.c }

// Level is the nearest level of v.
func (g Grid) Level(v float32) uint8 {
	k := math.Round((float64(v) - g.lo) / g.st)
	if !(k >= 0) { // also NaN
		return 0
	}
	return uint8(min(k, 255))
}

// Value is level k as the attacks' quantisation writes it.
func (g Grid) Value(k uint8) float32 { return float32(g.lo + float64(k)*g.st) }

// Levels puts x on the grid inside the ε-ball (in levels) around clean. Attacks
// keep x in the ball and clean is on the grid, so the nearest level is inside it
// already; the clamp only guards that.
func (g Grid) Levels(x []float32, clean []uint8, eps int) []uint8 {
	out := make([]uint8, len(x))
	for i, v := range x {
		k := int(g.Level(v))
		c := int(clean[i])
		out[i] = uint8(min(max(k, c-eps, 0), c+eps, 255))
	}
	return out
}

// Quantize puts x on the grid (no ball).
func (g Grid) Quantize(x []float32) []uint8 {
	out := make([]uint8, len(x))
	for i, v := range x {
		out[i] = g.Level(v)
	}
	return out
}

// Tensor is levels as one image [1, ...] on the pixel range.
func (g Grid) Tensor(lv []uint8) *inference.Tensor {
	t := inference.NewTensor(g.c.Shape()...)
	for i, k := range lv {
		t.Data[i] = g.Value(k)
	}
	return t
}

// EpsLevels is a budget on the pixel range in whole levels (rounded down: the ball
// the 8-bit image can reach).
func (g Grid) EpsLevels(eps float64) int {
	return inference.Eps{Value: eps, Range: g.c.PixelRange()}.WholeLevels()
}

// at is where channel ch of pixel p (= y·w + x) lies in the tensor.
func (g Grid) at(ch, p int) int {
	if g.c.TensorLayout() == inference.LayoutNHWC {
		return p*g.c.Channels + ch
	}
	return ch*g.c.Width*g.c.Height + p
}

// Image draws levels as the picture they encode (gray, or RGB in display order).
func (g Grid) Image(lv []uint8) image.Image {
	w, h := g.c.Width, g.c.Height
	r := image.Rect(0, 0, w, h)
	if g.c.Channels == 1 {
		img := image.NewGray(r)
		copy(img.Pix, lv) // one channel: both layouts are plain rows
		return img
	}
	img := image.NewNRGBA(r)
	rc, bc := 0, 2
	if strings.EqualFold(g.c.Color, "BGR") {
		rc, bc = 2, 0
	}
	for p := range w * h {
		img.Pix[4*p] = lv[g.at(rc, p)]
		img.Pix[4*p+1] = lv[g.at(1, p)]
		img.Pix[4*p+2] = lv[g.at(bc, p)]
		img.Pix[4*p+3] = 255
	}
	return img
}

// FromImage reads a picture of the grid's exact size back into levels (the
// inverse of Image): gray for one channel, RGB in the contract's colour order.
func (g Grid) FromImage(img image.Image) ([]uint8, error) {
	w, h := g.c.Width, g.c.Height
	b := img.Bounds()
	if b.Dx() != w || b.Dy() != h {
		return nil, fmt.Errorf("the image is %d×%d, the model takes %d×%d", b.Dx(), b.Dy(), w, h)
	}
	lv := make([]uint8, w*h*g.c.Channels)
	if g.c.Channels == 1 {
		gray := image.NewGray(image.Rect(0, 0, w, h))
		draw.Draw(gray, gray.Bounds(), img, b.Min, draw.Src)
		copy(lv, gray.Pix)
		return lv, nil
	}
	rgba := image.NewNRGBA(image.Rect(0, 0, w, h))
	draw.Draw(rgba, rgba.Bounds(), img, b.Min, draw.Src)
	rc, bc := 0, 2
	if strings.EqualFold(g.c.Color, "BGR") {
		rc, bc = 2, 0
	}
	for p := range w * h {
		lv[g.at(rc, p)] = rgba.Pix[4*p]
		lv[g.at(1, p)] = rgba.Pix[4*p+1]
		lv[g.at(bc, p)] = rgba.Pix[4*p+2]
	}
	return lv, nil
}

// Diverging colour map ends (ColorBrewer RdBu): red for a brighter pixel, blue for
// a darker one, white for none.
var (
	divPos = [3]float64{178, 24, 43}
	divNeg = [3]float64{33, 102, 172}
)

// Perturbation draws adv − clean, averaged over channels, on the diverging
// blue–white–red map: ±ε/gain (in levels) and beyond are the full colours. It is the
// one perturbation picture: the explorer, permalinks and preview cards all use it.
func (g Grid) Perturbation(adv, clean []uint8, eps int, gain float64) *image.NRGBA {
	w, h, ch := g.c.Width, g.c.Height, g.c.Channels
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	scale := gain / float64(max(eps, 1)) / float64(ch)
	for p := range w * h {
		d := 0
		for c := range ch {
			i := g.at(c, p)
			d += int(adv[i]) - int(clean[i])
		}
		t := math.Max(-1, math.Min(1, float64(d)*scale))
		end := divPos
		if t < 0 {
			end, t = divNeg, -t
		}
		for k := range 3 {
			img.Pix[4*p+k] = uint8(math.Round(255 + (end[k]-255)*t))
		}
		img.Pix[4*p+3] = 255
	}
	return img
}

// Gain bounds for the perturbation map.
const (
	MinGain = 0.25
	MaxGain = 16.0
)

// LinfLevels is the largest per-value difference between two level slices.
func LinfLevels(a, b []uint8) int {
	m := 0
	for i := range a {
		d := int(a[i]) - int(b[i])
		if d < 0 {
			d = -d
		}
		m = max(m, d)
	}
	return m
}

// L2 is the L2 distance between two level slices on the grid's pixel range.
func (g Grid) L2(a, b []uint8) float64 {
	var s float64
	for i := range a {
		d := (float64(a[i]) - float64(b[i])) * g.st
		s += d * d
	}
	return math.Sqrt(s)
}

// pngPool reuses the encoder's buffers.
type pngPool struct{ p sync.Pool }

func (pp *pngPool) Get() *png.EncoderBuffer {
	b, _ := pp.p.Get().(*png.EncoderBuffer)
	return b
}
func (pp *pngPool) Put(b *png.EncoderBuffer) { pp.p.Put(b) }

// pngEncoder writes lossless PNGs at the fastest compression: images are small
// and many, and a lossy format would misstate the perturbation.
var pngEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngPool{}}

// EncodePNG writes img as a lossless PNG.
func EncodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := pngEncoder.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
