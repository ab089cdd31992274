package defense

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"gibbon/inference"
)

// JPEG encodes each image as a JPEG at Quality (1–100) and decodes it again. Values
// are rounded to 8 bits first, as any JPEG encoder does. Gray images are encoded as
// gray JPEGs, 3-channel ones as colour (4:2:0, Go's encoder); other channel counts
// channel by channel.
type JPEG struct{ Quality int }

func (j JPEG) Name() string { return fmt.Sprintf("JPEG q%d", j.Quality) }

func (j JPEG) Apply(x *inference.Tensor, f Format, _ *rand.Rand) (*inference.Tensor, error) {
	if j.Quality < 1 || j.Quality > 100 {
		return nil, fmt.Errorf("JPEG quality must be between 1 and 100, got %d", j.Quality)
	}
	bgr := strings.EqualFold(f.Color, "BGR")
	return perImage(x, f, func(g geometry, planes [][]float32) ([][]float32, error) {
		if g.c == 3 {
			return j.colour(g, planes, bgr)
		}
		for ch, p := range planes {
			out, err := j.gray(g, p)
			if err != nil {
				return nil, err
			}
			planes[ch] = out
		}
		return planes, nil
	})
}

func (j JPEG) gray(g geometry, p []float32) ([]float32, error) {
	img := image.NewGray(image.Rect(0, 0, g.w, g.h))
	for i, v := range p {
		img.Pix[i] = to8(v)
	}
	dec, err := j.roundTrip(img)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(p))
	b := dec.Bounds()
	for y := range g.h {
		for x := range g.w {
			out[y*g.w+x] = float32(color.GrayModel.Convert(dec.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y) / 255
		}
	}
	return out, nil
}

func (j JPEG) colour(g geometry, planes [][]float32, bgr bool) ([][]float32, error) {
	r, gr, b := planes[0], planes[1], planes[2]
	if bgr {
		r, b = b, r
	}
	img := image.NewRGBA(image.Rect(0, 0, g.w, g.h))
	for i := range r {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = to8(r[i]), to8(gr[i]), to8(b[i]), 255
	}
	dec, err := j.roundTrip(img)
	if err != nil {
		return nil, err
	}
	out := [][]float32{make([]float32, len(r)), make([]float32, len(r)), make([]float32, len(r))}
	bd := dec.Bounds()
	for y := range g.h {
		for x := range g.w {
			c := color.RGBAModel.Convert(dec.At(bd.Min.X+x, bd.Min.Y+y)).(color.RGBA)
			i := y*g.w + x
			out[0][i], out[1][i], out[2][i] = float32(c.R)/255, float32(c.G)/255, float32(c.B)/255
		}
	}
	if bgr {
		out[0], out[2] = out[2], out[0]
	}
	return out, nil
}

func (j JPEG) roundTrip(img image.Image) (image.Image, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: j.Quality}); err != nil {
		return nil, fmt.Errorf("JPEG encode: %w", err)
	}
	dec, err := jpeg.Decode(&buf)
	if err != nil {
		return nil, fmt.Errorf("JPEG decode: %w", err)
	}
	return dec, nil
}

func to8(v float32) uint8 { return uint8(math.Round(float64(min(max(v, 0), 1)) * 255)) }

// BitDepth rounds every value to one of 2^Bits evenly spaced levels over the range
// (Bits 1–7; 8 would leave 8-bit images as they are).
type BitDepth struct{ Bits int }

func (b BitDepth) Name() string { return fmt.Sprintf("%d-bit", b.Bits) }

func (b BitDepth) Apply(x *inference.Tensor, f Format, _ *rand.Rand) (*inference.Tensor, error) {
	if b.Bits < 1 || b.Bits > 8 {
		return nil, fmt.Errorf("bit depth must be between 1 and 8, got %d", b.Bits)
	}
	levels := float64(int(1)<<b.Bits - 1)
	return perImage(x, f, func(_ geometry, planes [][]float32) ([][]float32, error) {
		for _, p := range planes {
			for i, v := range p {
				p[i] = float32(math.RoundToEven(float64(v)*levels) / levels)
			}
		}
		return planes, nil
	})
}

// Median replaces each value by the median of the Size×Size window around it, per
// channel. Borders are mirrored (d c b a | a b c d | d c b a). An even Size has one
// more neighbour before the centre than after, and takes the upper median, as
// scipy.ndimage.median_filter does.
type Median struct{ Size int }

func (m Median) Name() string { return fmt.Sprintf("median %d×%d", m.Size, m.Size) }

func (m Median) Apply(x *inference.Tensor, f Format, _ *rand.Rand) (*inference.Tensor, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return perImage(x, f, func(g geometry, planes [][]float32) ([][]float32, error) {
		win, vals := make([]int, m.Size*m.Size), make([]float32, m.Size*m.Size)
		for ch, p := range planes {
			out := make([]float32, len(p))
			for q := range out {
				out[q] = m.median(g, p, q, win, vals)
			}
			planes[ch] = out
		}
		return planes, nil
	})
}

func (m Median) check() error {
	if m.Size < 1 || m.Size > 15 {
		return fmt.Errorf("median window must be between 1 and 15 pixels, got %d", m.Size)
	}
	return nil
}

// median is output pixel q's value: the median of its window in plane p. win and
// vals (Size² long) receive the window's pixels and their sorted values.
func (m Median) median(g geometry, p []float32, q int, win []int, vals []float32) float32 {
	before := m.Size / 2
	y, x := q/g.w, q%g.w
	k := 0
	for dy := range m.Size {
		yy := mirror(y+dy-before, g.h)
		for dx := range m.Size {
			win[k] = yy*g.w + mirror(x+dx-before, g.w)
			vals[k] = p[win[k]]
			k++
		}
	}
	slices.Sort(vals)
	return vals[len(vals)/2]
}

// mirror reflects an index into [0, n) about the half-pixel edges.
func mirror(i, n int) int {
	for i < 0 || i >= n {
		if i < 0 {
			i = -i - 1
		}
		if i >= n {
			i = 2*n - i - 1
		}
	}
	return i
}

// ResizePad is Xie et al.'s randomisation for a classifier with a fixed input size:
// each image is shrunk, by nearest neighbour, to a random height between
// ⌈MinScale·H⌉ and H (the width in proportion) and padded back to H×W at a random
// offset with the range's low value (zero, black). Their ImageNet version enlarged
// 299 px to a random 299–330 px and padded to 331 px; followed by the resize back to
// the model's input size that a fixed-size model needs, that is the same transform
// up to interpolation.
type ResizePad struct{ MinScale float64 }

func (r ResizePad) Name() string {
	return fmt.Sprintf("random resize ≥%.0f%% + pad", r.MinScale*100)
}

func (r ResizePad) Apply(x *inference.Tensor, f Format, rng *rand.Rand) (*inference.Tensor, error) {
	y, _, err := r.apply(x, f, rng)
	return y, err
}

// apply is Apply that also returns each image's source map: src[i][p] is the pixel
// of image i that output pixel p copies, −1 for padding. The transform is a pixel
// selection, so the map is its exact derivative (an adaptive attack pulls gradients
// back through it).
func (r ResizePad) apply(x *inference.Tensor, f Format, rng *rand.Rand) (*inference.Tensor, [][]int, error) {
	if !(r.MinScale > 0 && r.MinScale <= 1) {
		return nil, nil, fmt.Errorf("smallest size must be a share in (0, 1], got %g", r.MinScale)
	}
	if rng == nil {
		return nil, nil, fmt.Errorf("random resize and pad needs a random source")
	}
	var src [][]int
	y, err := perImage(x, f, func(g geometry, planes [][]float32) ([][]float32, error) {
		m := r.draw(g, rng)
		src = append(src, m)
		for ch, p := range planes {
			out := make([]float32, len(p)) // zero: the range's low value
			for q, s := range m {
				if s >= 0 {
					out[q] = p[s]
				}
			}
			planes[ch] = out
		}
		return planes, nil
	})
	return y, src, err
}

// draw picks one image's size and offset and returns its source map (see apply).
func (r ResizePad) draw(g geometry, rng *rand.Rand) []int {
	minH := max(1, int(math.Ceil(r.MinScale*float64(g.h))))
	rh := minH + rng.IntN(g.h-minH+1)
	rw := max(1, min(g.w, int(math.Round(float64(g.w)*float64(rh)/float64(g.h)))))
	oy, ox := rng.IntN(g.h-rh+1), rng.IntN(g.w-rw+1)
	src := make([]int, g.h*g.w)
	for q := range src {
		src[q] = -1
	}
	for y := range rh {
		sy := min(g.h-1, int((float64(y)+0.5)*float64(g.h)/float64(rh)))
		for x := range rw {
			sx := min(g.w-1, int((float64(x)+0.5)*float64(g.w)/float64(rw)))
			src[(oy+y)*g.w+ox+x] = sy*g.w + sx
		}
	}
	return src
}
