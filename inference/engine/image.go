package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image/png"

	"gibbon/inference"
)

// Image is a run's image as it arrives: an encoded file, preprocessed as the
// attacked models were trained, or (Exact) a PNG already at their input size.
type Image struct {
	Ref  ImageRef
	Data []byte
	// Exact marks a PNG at the models' input size taken as it is — a gallery
	// entry's original, replayed — with no centring, cropping or resizing.
	Exact bool
	// Limits bound what is decoded (zero: defaultDecodeLimits).
	Limits inference.DecodeLimits
	// Decode, when set, decodes Data into a picture in the caller's stead (a
	// server decodes within its memory budget). It stays in this process: a job
	// that travels is decoded where it runs, under Limits.
	Decode func(data []byte) (*inference.Picture, error)
}

// Clean is the image on the attacked models' grid, and how it got there.
type Clean struct {
	Levels []uint8
	PNG    []byte
	SHA256 string
	// Steps say how the file became the models' input, in words.
	Steps []string
	// SourceW×SourceH is the file's size.
	SourceW, SourceH int
}

// defaultDecodeLimits bound an image when the caller gives no bounds.
var defaultDecodeLimits = inference.DecodeLimits{MaxPixels: 40_000_000, MaxSide: 16384, MaxBytes: 1 << 30}

// LoadImage decodes and preprocesses img for contract c (the attacked models')
// and puts it on c's 8-bit grid: the clean image is exactly what its PNG holds.
func LoadImage(img Image, c inference.InputContract) (*Clean, error) {
	return loadImage(img, NewGrid(c))
}

// loadImage decodes and preprocesses img for grid g's contract and puts it on
// the grid.
func loadImage(img Image, g Grid) (*Clean, error) {
	if len(img.Data) == 0 {
		return nil, invalid("Choose an image: upload one, draw one or pick a sample.")
	}
	c := g.Contract()
	out := &Clean{}
	if img.Exact {
		dec, err := png.Decode(bytes.NewReader(img.Data))
		if err != nil {
			return nil, invalid("The stored image is not a readable PNG: %v.", err)
		}
		b := dec.Bounds()
		out.SourceW, out.SourceH = b.Dx(), b.Dy()
		if out.Levels, err = g.FromImage(dec); err != nil {
			return nil, invalid("The stored image does not fit the models: %v.", err)
		}
		out.Steps = []string{fmt.Sprintf("taken as it is (%d×%d, the models' input)", c.Width, c.Height)}
	} else {
		pic, err := decode(img)
		if err != nil {
			return nil, err
		}
		pre, err := pic.Preprocess(c)
		if err != nil {
			return nil, err
		}
		out.SourceW, out.SourceH = pic.SrcW, pic.SrcH
		if pic.W != pic.SrcW || pic.H != pic.SrcH {
			out.Steps = append(out.Steps, fmt.Sprintf("scaled to %d×%d px to work on (aspect kept)", pic.W, pic.H))
		}
		// The last step describes the tensor; the page shows the image.
		out.Steps = append(out.Steps, pre.Steps[:max(0, len(pre.Steps)-1)]...)
		out.Levels = g.Quantize(pre.Tensor.Data)
	}
	var err error
	if out.PNG, err = EncodePNG(g.Image(out.Levels)); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(out.PNG)
	out.SHA256 = hex.EncodeToString(sum[:])
	return out, nil
}

// decode turns the file into a picture: the caller's way, or under the limits.
func decode(img Image) (*inference.Picture, error) {
	if img.Decode != nil {
		return img.Decode(img.Data)
	}
	lim := img.Limits
	if lim == (inference.DecodeLimits{}) {
		lim = defaultDecodeLimits
	}
	dec, err := lim.Decode(img.Data)
	if err != nil {
		return nil, err
	}
	return inference.NewPicture(dec.Image, inference.DefaultWorkingSide), nil
}
