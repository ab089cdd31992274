package gallery

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
)

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// imageInfo is a checked PNG and what the images table records about it.
type imageInfo struct {
	sha      string
	png      []byte
	width    int
	height   int
	channels int
	img      image.Image
}

// decodePNG checks data is a PNG within the limits, reading the header before
// any pixels so a small file cannot claim a huge image.
func decodePNG(field string, data []byte) (*imageInfo, error) {
	if len(data) > MaxImageBytes {
		return nil, tooLarge(field, "PNG is %d bytes, at most %d", len(data), MaxImageBytes)
	}
	if !bytes.HasPrefix(data, pngSignature) {
		return nil, invalid(field, "not a PNG file (images are stored lossless)")
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, invalid(field, "bad PNG: %v", err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxImageSide || cfg.Height > MaxImageSide || cfg.Width*cfg.Height > MaxImagePixels {
		return nil, tooLarge(field, "%dx%d pixels, at most %d per side and %d in all", cfg.Width, cfg.Height, MaxImageSide, MaxImagePixels)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, invalid(field, "bad PNG: %v", err)
	}
	sum := sha256.Sum256(data)
	return &imageInfo{
		sha:      hex.EncodeToString(sum[:]),
		png:      data,
		width:    cfg.Width,
		height:   cfg.Height,
		channels: channelsOf(cfg.ColorModel),
		img:      img,
	}, nil
}

func channelsOf(m color.Model) int {
	if m == color.GrayModel || m == color.Gray16Model {
		return 1
	}
	return 3
}

// SHA256 returns the hex SHA-256 of data: an image's address in the store.
func SHA256(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ValidSHA reports whether s is a lower-case hex SHA-256, as image addresses are.
func ValidSHA(s string) bool { return isHex64(s) }

// linf255 is the largest per-channel difference between two same-sized images in
// /255 steps.
func linf255(a, b image.Image) float64 {
	ab, bb := a.Bounds(), b.Bounds()
	var m uint32
	for y := 0; y < ab.Dy(); y++ {
		for x := 0; x < ab.Dx(); x++ {
			r1, g1, b1, _ := a.At(ab.Min.X+x, ab.Min.Y+y).RGBA()
			r2, g2, b2, _ := b.At(bb.Min.X+x, bb.Min.Y+y).RGBA()
			m = max(m, absDiff(r1, r2), absDiff(g1, g2), absDiff(b1, b2))
		}
	}
	return float64(m) / 257
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

// Perturbation is adversarial minus original, per channel, on the [0,1] pixel
// scale: shape [C,H,W], C = 1 when both images are grayscale, else 3 (RGB).
type Perturbation struct {
	C, H, W int
	Data    []float32
}

// NewPerturbation computes the perturbation between two stored PNGs.
func NewPerturbation(original, adversarial []byte) (*Perturbation, error) {
	a, err := decodePNG("original", original)
	if err != nil {
		return nil, err
	}
	b, err := decodePNG("adversarial", adversarial)
	if err != nil {
		return nil, err
	}
	if a.width != b.width || a.height != b.height {
		return nil, invalid("adversarial", "%dx%d, but the original is %dx%d", b.width, b.height, a.width, a.height)
	}
	c := 3
	if a.channels == 1 && b.channels == 1 {
		c = 1
	}
	p := &Perturbation{C: c, H: a.height, W: a.width, Data: make([]float32, c*a.height*a.width)}
	ab, bb := a.img.Bounds(), b.img.Bounds()
	plane := p.H * p.W
	for y := 0; y < p.H; y++ {
		for x := 0; x < p.W; x++ {
			r1, g1, b1, _ := a.img.At(ab.Min.X+x, ab.Min.Y+y).RGBA()
			r2, g2, b2, _ := b.img.At(bb.Min.X+x, bb.Min.Y+y).RGBA()
			i := y*p.W + x
			p.Data[i] = (float32(r2) - float32(r1)) / 65535
			if c == 3 {
				p.Data[plane+i] = (float32(g2) - float32(g1)) / 65535
				p.Data[2*plane+i] = (float32(b2) - float32(b1)) / 65535
			}
		}
	}
	return p, nil
}

// MaxAbs is the perturbation's L-infinity norm on the [0,1] scale.
func (p *Perturbation) MaxAbs() float64 {
	var m float32
	for _, v := range p.Data {
		m = max(m, float32(math.Abs(float64(v))))
	}
	return float64(m)
}

// NPY encodes the perturbation in NumPy's .npy format (version 1.0,
// little-endian float32, C order, shape (C, H, W)).
func (p *Perturbation) NPY() []byte {
	var b bytes.Buffer
	b.Grow(int(p.NPYSize()))
	p.WriteNPY(&b) // a bytes.Buffer does not fail
	return b.Bytes()
}

// npyHeader is the .npy magic, version and header, padded so the data starts at
// a multiple of 64 bytes.
func (p *Perturbation) npyHeader() []byte {
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }", p.C, p.H, p.W)
	// magic(6) + version(2) + header length(2) + header + '\n' is a multiple of 64.
	total := 10 + len(header) + 1
	if pad := (64 - total%64) % 64; pad > 0 {
		header += string(bytes.Repeat([]byte(" "), pad))
	}
	header += "\n"
	out := append([]byte("\x93NUMPY\x01\x00"), 0, 0)
	binary.LittleEndian.PutUint16(out[8:], uint16(len(header)))
	return append(out, header...)
}

// NPYSize is the length of the .npy encoding.
func (p *Perturbation) NPYSize() int64 { return int64(len(p.npyHeader())) + 4*int64(len(p.Data)) }

// WriteNPY writes the .npy encoding to w in pieces, so no copy of it is made.
func (p *Perturbation) WriteNPY(w io.Writer) error {
	if _, err := w.Write(p.npyHeader()); err != nil {
		return err
	}
	buf := make([]byte, 0, 64<<10)
	for i, v := range p.Data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) == cap(buf) || i == len(p.Data)-1 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return nil
}
