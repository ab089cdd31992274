package inference

import (
	"errors"
	"image"
	"image/color"
	"os"
	"testing"
)

// FuzzDecodeImage feeds arbitrary bytes through what an upload goes through:
// content sniffing, the header size check, decoding, and preprocessing for an
// MNIST model and a colour model. Nothing may panic, and every failure must be
// one of the bad-image errors a person gets a message for.
// Seeds: testdata/fuzz/FuzzDecodeImage plus the ones added here.
// Run: go test ./inference -run '^$' -fuzz FuzzDecodeImage -fuzztime 60s
func FuzzDecodeImage(f *testing.F) {
	small := canvas(12, 9, color.White)
	fillRect(small, image.Rect(4, 2, 7, 8), color.Black)
	f.Add(encodePNG(f, small))
	f.Add(encodeJPEG(f, small))
	f.Add(encodeGIF(f, small))
	f.Add(pngHeaderOnly(60000, 60000))
	if webp, err := os.ReadFile("testdata/gopher-doc.1bpp.lossless.webp"); err == nil {
		f.Add(webp)
	}
	contracts := []InputContract{
		mnistContract,
		{Layout: "NHWC", Channels: 3, Height: 16, Width: 16, Color: "BGR", Range: [2]float64{0, 255},
			Mean: []float64{100, 110, 120}, Std: []float64{50, 50, 50}, Resize: "crop", CropPct: 0.875, Interp: "bicubic"},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec, err := DecodeImage(data, 1<<20)
		if err != nil {
			var ie *ImageError
			if !errors.As(err, &ie) || ie.Msg == "" {
				t.Fatalf("error without a message for people: %v", err)
			}
			if !errors.Is(err, ErrUnsupportedImage) && !errors.Is(err, ErrBadImage) && !errors.Is(err, ErrImageTooLarge) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if b := dec.Image.Bounds(); int64(b.Dx())*int64(b.Dy()) > 1<<20 {
			t.Fatalf("decoded %v past the pixel limit", b)
		}
		pic := NewPicture(dec.Image, 256)
		for _, c := range contracts {
			pre, err := pic.Preprocess(c)
			if err != nil {
				if !errors.Is(err, ErrBlankImage) {
					t.Fatalf("preprocess: %v", err)
				}
				continue
			}
			if err := pre.Tensor.Validate(); err != nil {
				t.Fatal(err)
			}
			for _, v := range pre.Tensor.Data {
				if v != v {
					t.Fatal("NaN in the tensor")
				}
			}
		}
	})
}
