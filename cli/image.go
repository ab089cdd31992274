package cli

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"

	"gibbon/inference"
	"gibbon/internal/atomicfile"
)

// maxImagePixels bounds what the IMAGE arguments of attack and sweep decode.
const maxImagePixels = 40_000_000

// readImage reads an image file and fits it to contract c.
func readImage(path string, c inference.InputContract) (*inference.Preprocessed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec, err := inference.DecodeImage(data, maxImagePixels)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pre, err := inference.Preprocess(dec.Image, c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pre, nil
}

// writePNG writes img to path atomically: nothing half-written is left behind.
func writePNG(path string, img image.Image) error {
	if err := atomicfile.Write(path, func(w io.Writer) error { return png.Encode(w, img) }); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// tensorPNG is an image tensor under c as PNG bytes.
func tensorPNG(t *inference.Tensor, c inference.InputContract) ([]byte, error) {
	img, err := inference.TensorImage(t, c)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
