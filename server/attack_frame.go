package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"strings"
	"sync"

	"gibbon/inference"
)

// frameImage is one PNG of a binary message: what it shows and where its bytes lie
// after the JSON header.
type frameImage struct {
	Role   string `json:"role"` // clean, adv, perturbation, head
	Label  string `json:"label,omitempty"`
	Offset int    `json:"offset"`
	Length int    `json:"length"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	// Linf is a head's L∞ distance from the clean image, in /255 steps.
	Linf int `json:"linf,omitempty"`
}

// pngPart is a PNG to append to a binary message.
type pngPart struct {
	role, label string
	data        []byte
	w, h        int
	linf        int
}

// packBinary lays out a binary message: a 4-byte big-endian JSON length, the JSON
// header (whose images field is set here), then the PNGs.
func packBinary(header any, setImages func([]frameImage), parts []pngPart) ([]byte, error) {
	imgs := make([]frameImage, len(parts))
	off := 0
	for i, p := range parts {
		imgs[i] = frameImage{Role: p.role, Label: p.label, Offset: off, Length: len(p.data), Width: p.w, Height: p.h, Linf: p.linf}
		off += len(p.data)
	}
	setImages(imgs)
	js, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4, 4+len(js)+off)
	binary.BigEndian.PutUint32(out, uint32(len(js)))
	out = append(out, js...)
	for _, p := range parts {
		out = append(out, p.data...)
	}
	return out, nil
}

// unpackBinary reads a binary message back (tests and tools).
func unpackBinary(msg []byte, header any) (map[string][]byte, []frameImage, error) {
	if len(msg) < 4 {
		return nil, nil, fmt.Errorf("message of %d bytes has no header length", len(msg))
	}
	n := int(binary.BigEndian.Uint32(msg))
	if 4+n > len(msg) {
		return nil, nil, fmt.Errorf("header of %d bytes does not fit a %d-byte message", n, len(msg))
	}
	if err := json.Unmarshal(msg[4:4+n], header); err != nil {
		return nil, nil, err
	}
	var with struct {
		Images []frameImage `json:"images"`
	}
	if err := json.Unmarshal(msg[4:4+n], &with); err != nil {
		return nil, nil, err
	}
	blobs := msg[4+n:]
	out := map[string][]byte{}
	for _, im := range with.Images {
		if im.Offset < 0 || im.Length < 0 || im.Offset+im.Length > len(blobs) {
			return nil, nil, fmt.Errorf("image %s lies outside the message", im.Role)
		}
		key := im.Role
		if im.Label != "" {
			key += ":" + im.Label
		}
		out[key] = blobs[im.Offset : im.Offset+im.Length]
	}
	return out, with.Images, nil
}

// grid maps tensor values to the 256 levels of the input range and back.
type grid struct {
	c      inference.InputContract // on the pixel range
	lo, st float64                 // range start, level spacing
}

func newGrid(c inference.InputContract) grid {
	r := c.PixelRange()
	return grid{c: c, lo: float64(r[0]), st: (float64(r[1]) - float64(r[0])) / 255}
}

// level is the nearest level of v.
func (g grid) level(v float32) uint8 {
	k := math.Round((float64(v) - g.lo) / g.st)
	if !(k >= 0) { // also NaN
		return 0
	}
	return uint8(min(k, 255))
}

// value is level k as the attack's quantisation writes it.
func (g grid) value(k uint8) float32 { return float32(g.lo + float64(k)*g.st) }

// levels quantises x into the ε-ball (in levels) around clean. Attacks keep x in the
// ball and clean is on the grid, so with an integer ε the nearest level is inside it
// already; the clamp only guards that.
func (g grid) levels(x []float32, clean []uint8, eps int) []uint8 {
	out := make([]uint8, len(x))
	for i, v := range x {
		k := int(g.level(v))
		c := int(clean[i])
		out[i] = uint8(min(max(k, c-eps, 0), c+eps, 255))
	}
	return out
}

func (g grid) tensor(lv []uint8) *inference.Tensor {
	t := inference.NewTensor(g.c.Shape()...)
	for i, k := range lv {
		t.Data[i] = g.value(k)
	}
	return t
}

// at is where channel ch of pixel p (= y·w + x) lies in the tensor.
func (g grid) at(ch, p int) int {
	if g.c.TensorLayout() == inference.LayoutNHWC {
		return p*g.c.Channels + ch
	}
	return ch*g.c.Width*g.c.Height + p
}

// image draws levels as the picture they encode (gray, or RGB in display order).
func (g grid) image(lv []uint8) image.Image {
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

// Diverging colour map ends (ColorBrewer RdBu): red for a brighter pixel, blue
// for a darker one, white for none.
var (
	divPos = [3]float64{178, 24, 43}
	divNeg = [3]float64{33, 102, 172}
)

// perturbation draws adv − clean, averaged over channels, on the diverging map:
// ±ε/gain (in levels) and beyond are the full colours.
func (g grid) perturbation(adv, clean []uint8, eps int, gain float64) *image.NRGBA {
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

// pngPool reuses the encoder's buffers across frames.
type pngPool struct{ p sync.Pool }

func (pp *pngPool) Get() *png.EncoderBuffer {
	b, _ := pp.p.Get().(*png.EncoderBuffer)
	return b
}
func (pp *pngPool) Put(b *png.EncoderBuffer) { pp.p.Put(b) }

// frameEncoder writes lossless PNGs at the fastest compression: frames are small
// and many, and a lossy format would misstate the perturbation.
var frameEncoder = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &pngPool{}}

func encodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := frameEncoder.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// linfLevels is the largest per-value difference between two level slices.
func linfLevels(a, b []uint8) int {
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

// jsonFloats writes non-finite values as null (JSON has no NaN).
func jsonFloats(v []float32) []*float64 {
	out := make([]*float64, len(v))
	for i, x := range v {
		if f := float64(x); !math.IsNaN(f) && !math.IsInf(f, 0) {
			out[i] = &f
		}
	}
	return out
}
