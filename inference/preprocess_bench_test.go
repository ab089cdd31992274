package inference

import (
	"image"
	"image/color"
	"testing"
)

// BenchmarkPreprocessDrawing is the drawing pad's path: a 280×280 canvas to an
// MNIST 28×28 tensor.
func BenchmarkPreprocessDrawing(b *testing.B) {
	img := canvas(280, 280, color.White)
	fillRect(img, image.Rect(120, 40, 150, 240), color.Black)
	data := encodePNG(b, img)
	b.ReportAllocs()
	for b.Loop() {
		dec, err := DecodeImage(data, 40_000_000)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := NewPicture(dec.Image, DefaultWorkingSide).Preprocess(mnistContract); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPhoto12MP is a 4000×3000 JPEG: decode, one working downscale to
// 1024 px, then MNIST and 224×224 RGB preprocessing.
func BenchmarkPhoto12MP(b *testing.B) {
	img := canvas(4000, 3000, color.NRGBA{230, 225, 215, 255})
	fillRect(img, image.Rect(1800, 900, 2100, 2200), color.NRGBA{20, 20, 30, 255})
	data := encodeJPEG(b, img)
	rgb := InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB", Range: [2]float64{0, 1},
		Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225}, Resize: "crop", CropPct: 0.875, Interp: "bicubic"}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		dec, err := DecodeImage(data, 40_000_000)
		if err != nil {
			b.Fatal(err)
		}
		pic := NewPicture(dec.Image, DefaultWorkingSide)
		if _, err := pic.Preprocess(mnistContract); err != nil {
			b.Fatal(err)
		}
		if _, err := pic.Preprocess(rgb); err != nil {
			b.Fatal(err)
		}
	}
}
