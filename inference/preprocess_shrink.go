package inference

import (
	"image"
	"image/color"
	"math"
)

// Converting a decoded image into a Picture in bounded memory. The source is read
// in spans of one row, each pixel composited onto white, so no copy of the whole
// source is made; a downscale first sums the source into a grid of boxes (an
// integer factor each way, so the grid is less than twice the target size), then
// resamples the grid with the area-averaging bilinear filter. Memory is a few
// times the target's size whatever the source's shape: a general-purpose scaler
// keeps weights or rows per source pixel, which a 1×39,000,000 image turns into
// gigabytes.

// spanPixels is how many source pixels are converted at a time.
const spanPixels = 4096

// PictureBytes bounds the memory NewPicture(img, maxSide) takes for a w×h img:
// the box grid's rows at the picture's width (less than twice its height), the
// resampled planes and the picture, 48 bytes a picture pixel, plus the spans.
func PictureBytes(w, h, maxSide int) int64 {
	pw, ph := pictureSize(w, h, maxSide)
	return 48*int64(pw)*int64(ph) + 1<<20
}

// pictureSize is the size NewPicture scales a w×h image to.
func pictureSize(w, h, maxSide int) (int, int) {
	if maxSide > 0 && max(w, h) > maxSide {
		s := float64(maxSide) / float64(max(w, h))
		return max(1, int(math.Round(float64(w)*s))), max(1, int(math.Round(float64(h)*s)))
	}
	return w, h
}

// pictureFrom converts img to a w×h picture (w ≤ the source width, h ≤ its height).
func pictureFrom(img image.Image, w, h int) *Picture {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	p := &Picture{W: w, H: h, SrcW: sw, SrcH: sh}
	fx, fy := max(1, sw/w), max(1, sh/h)
	gw, gh := (sw+fx-1)/fx, (sh+fy-1)/fy
	read := spanReader(img)
	span := make([]float32, 3*min(sw, spanPixels))
	acc := make([]float32, 3*gw) // one grid row, RGB interleaved
	// mid holds the grid's rows already scaled to w: the grid's columns are
	// resampled as each row completes, so the whole grid is never held.
	mid := [3]plane{newPlane(w, gh), newPlane(w, gh), newPlane(w, gh)}
	xt := makeTaps(gw, w, 0, w, kernelBilinear)
	for gy := range gh {
		clear(acc)
		y0, y1 := gy*fy, min(sh, (gy+1)*fy)
		for y := y0; y < y1; y++ {
			for x0 := 0; x0 < sw; x0 += spanPixels {
				n := min(spanPixels, sw-x0)
				read(b.Min.X+x0, b.Min.Y+y, span[:3*n])
				for i := 0; i < n; {
					cell := (x0 + i) / fx
					end := min(n, (cell+1)*fx-x0)
					var r, g, bl float32
					for ; i < end; i++ {
						r, g, bl = r+span[3*i], g+span[3*i+1], bl+span[3*i+2]
					}
					acc[3*cell] += r
					acc[3*cell+1] += g
					acc[3*cell+2] += bl
				}
			}
		}
		for gx := range gw {
			cells := float32((min(sw, (gx+1)*fx) - gx*fx) * (y1 - y0))
			acc[3*gx] /= cells
			acc[3*gx+1] /= cells
			acc[3*gx+2] /= cells
		}
		for x, t := range xt {
			var r, g, bl float32
			for n, wt := range t.w {
				c := 3 * (t.first + n)
				r, g, bl = r+wt*acc[c], g+wt*acc[c+1], bl+wt*acc[c+2]
			}
			mid[0].px[gy*w+x], mid[1].px[gy*w+x], mid[2].px[gy*w+x] = r, g, bl
		}
	}
	out := mid
	if gh != h {
		for c := range mid {
			out[c] = resample(mid[c], w, h, kernelBilinear)
			mid[c] = plane{}
		}
	}
	p.R, p.G, p.B = out[0].px, out[1].px, out[2].px
	p.Gray = true
	for i := range p.R {
		if p.R[i] != p.G[i] || p.G[i] != p.B[i] {
			p.Gray = false
			break
		}
	}
	return p
}

// spanReader returns a function that writes n pixels of row y from x on, as RGB
// values in [0,1] composited onto white (how the image looks on a page), into
// dst[:3n]. The decoders' own types are read directly; others through At.
func spanReader(img image.Image) func(x, y int, dst []float32) {
	// Dividing (not multiplying by the reciprocal) gives an opaque 8-bit value v
	// exactly as float32(v)/255, the value the picture had before scaling existed.
	switch m := img.(type) {
	case *image.Gray:
		return func(x, y int, dst []float32) {
			pix := m.Pix[m.PixOffset(x, y):]
			for i := range len(dst) / 3 {
				v := float32(pix[i]) / 255
				dst[3*i], dst[3*i+1], dst[3*i+2] = v, v, v
			}
		}
	case *image.RGBA: // premultiplied: colour + (1 − alpha) × white
		return func(x, y int, dst []float32) {
			pix := m.Pix[m.PixOffset(x, y):]
			for i := range len(dst) / 3 {
				s := pix[4*i : 4*i+4 : 4*i+4]
				white := float32(255 - s[3])
				dst[3*i] = (float32(s[0]) + white) / 255
				dst[3*i+1] = (float32(s[1]) + white) / 255
				dst[3*i+2] = (float32(s[2]) + white) / 255
			}
		}
	case *image.NRGBA:
		return func(x, y int, dst []float32) {
			pix := m.Pix[m.PixOffset(x, y):]
			for i := range len(dst) / 3 {
				s := pix[4*i : 4*i+4 : 4*i+4]
				dst[3*i], dst[3*i+1], dst[3*i+2] = overWhite(s[0], s[1], s[2], s[3])
			}
		}
	case *image.YCbCr:
		return func(x, y int, dst []float32) {
			for i := range len(dst) / 3 {
				yi, ci := m.YOffset(x+i, y), m.COffset(x+i, y)
				r, g, bl := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				dst[3*i], dst[3*i+1], dst[3*i+2] = float32(r)/255, float32(g)/255, float32(bl)/255
			}
		}
	case *image.NYCbCrA:
		return func(x, y int, dst []float32) {
			for i := range len(dst) / 3 {
				yi, ci := m.YOffset(x+i, y), m.COffset(x+i, y)
				r, g, bl := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				dst[3*i], dst[3*i+1], dst[3*i+2] = overWhite(r, g, bl, m.A[m.AOffset(x+i, y)])
			}
		}
	case *image.Paletted:
		pal := make([][3]float32, 256)
		for i := range pal {
			pal[i] = [3]float32{1, 1, 1} // an index past the palette reads as white
		}
		for i, c := range m.Palette {
			r, g, bl, a := c.RGBA()
			white := float32(65535 - a)
			pal[i] = [3]float32{(float32(r) + white) / 65535, (float32(g) + white) / 65535, (float32(bl) + white) / 65535}
		}
		return func(x, y int, dst []float32) {
			pix := m.Pix[m.PixOffset(x, y):]
			for i := range len(dst) / 3 {
				c := pal[pix[i]]
				dst[3*i], dst[3*i+1], dst[3*i+2] = c[0], c[1], c[2]
			}
		}
	}
	return func(x, y int, dst []float32) {
		for i := range len(dst) / 3 {
			r, g, bl, a := img.At(x+i, y).RGBA()
			white := float32(65535 - a)
			dst[3*i] = (float32(r) + white) / 65535
			dst[3*i+1] = (float32(g) + white) / 65535
			dst[3*i+2] = (float32(bl) + white) / 65535
		}
	}
}

// overWhite composites a non-premultiplied 8-bit colour onto white.
func overWhite(r, g, b, a uint8) (float32, float32, float32) {
	if a == 255 {
		return float32(r) / 255, float32(g) / 255, float32(b) / 255
	}
	alpha, white := float32(a), float32(255-a)*255
	return (float32(r)*alpha + white) / (255 * 255), (float32(g)*alpha + white) / (255 * 255), (float32(b)*alpha + white) / (255 * 255)
}
