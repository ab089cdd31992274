package mnist

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"

	"gibbon/internal/atomicfile"
)

// PNG encodes one image as a 28x28 8-bit gray PNG, white digit on black as in MNIST.
func PNG(pixels []float32) ([]byte, error) {
	if len(pixels) != Pixels {
		return nil, fmt.Errorf("MNIST image has %d pixels, want %d", len(pixels), Pixels)
	}
	img := image.NewGray(image.Rect(0, 0, Cols, Rows))
	for i, v := range pixels {
		img.Pix[i] = uint8(min(max(v, 0), 1)*255 + 0.5)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodePNG reads a 28x28 gray PNG back into [0,1] pixels.
func DecodePNG(data []byte) ([]float32, error) {
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if b := img.Bounds(); b.Dx() != Cols || b.Dy() != Rows {
		return nil, fmt.Errorf("image is %dx%d, want %dx%d", b.Dx(), b.Dy(), Cols, Rows)
	}
	out := make([]float32, Pixels)
	b := img.Bounds()
	for y := range Rows {
		for x := range Cols {
			g := color.GrayModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.Gray)
			out[y*Cols+x] = float32(g.Y) / 255
		}
	}
	return out, nil
}

// SampleIndices picks the first perClass images of each digit, in digit order.
func SampleIndices(s *Set, perClass int) []int {
	var byClass [Classes][]int
	for i, l := range s.Labels {
		if len(byClass[l]) < perClass {
			byClass[l] = append(byClass[l], i)
		}
	}
	var out []int
	for _, idx := range byClass {
		out = append(out, idx...)
	}
	return out
}

// WriteSamples writes digit-<label>-<k>.png for the first perClass test images of
// each digit into dir, each file atomically.
func WriteSamples(dir string, s *Set, perClass int) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	count := map[uint8]int{}
	var names []string
	for _, i := range SampleIndices(s, perClass) {
		l := s.Labels[i]
		name := fmt.Sprintf("digit-%d-%d.png", l, count[l])
		count[l]++
		data, err := PNG(s.Image(i))
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, name), data); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
}
