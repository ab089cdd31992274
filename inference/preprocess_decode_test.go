package inference

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"os"
	"strings"
	"testing"
)

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodeGIF(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngHeaderOnly is a PNG signature and a valid IHDR chunk declaring w×h, and no
// pixel data: what a decompression bomb's first bytes look like.
func pngHeaderOnly(w, h uint32) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 0 // 8-bit gray
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func digitImage() image.Image {
	img := canvas(40, 30, color.White)
	fillRect(img, image.Rect(15, 5, 22, 25), color.Black)
	return img
}

func TestDecodeImageJudgesFormatByContent(t *testing.T) {
	webp, err := os.ReadFile("testdata/gopher-doc.1bpp.lossless.webp")
	if err != nil {
		t.Fatal(err)
	}
	lossy, err := os.ReadFile("testdata/video-001.lossy.webp")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		data   []byte
		format string
		w, h   int
	}{
		{encodePNG(t, digitImage()), "PNG", 40, 30},
		{encodeJPEG(t, digitImage()), "JPEG", 40, 30},
		{encodeGIF(t, digitImage()), "GIF", 40, 30},
		{webp, "WebP", 0, 0},
		{lossy, "WebP", 150, 103},
	} {
		dec, err := DecodeImage(tc.data, 40_000_000)
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		if dec.Format != tc.format {
			t.Errorf("format %q, want %q", dec.Format, tc.format)
		}
		if tc.w > 0 && (dec.Width != tc.w || dec.Height != tc.h) {
			t.Errorf("%s: %d×%d, want %d×%d", tc.format, dec.Width, dec.Height, tc.w, tc.h)
		}
		if dec.Image.Bounds().Dx() != dec.Width {
			t.Errorf("%s: bounds %v disagree with width %d", tc.format, dec.Image.Bounds(), dec.Width)
		}
	}
}

func TestDecodeImageRefusesWhatItCannotRead(t *testing.T) {
	pngData := encodePNG(t, digitImage())
	for _, tc := range []struct {
		name string
		data []byte
		kind error
		says string
	}{
		{"empty", nil, ErrUnsupportedImage, "an empty file"},
		{"text", []byte("hello, this is not an image\n"), ErrUnsupportedImage, "text"},
		{"bmp", append([]byte("BM"), make([]byte, 60)...), ErrUnsupportedImage, "BMP"},
		{"svg", []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>`), ErrUnsupportedImage, "SVG"},
		{"pdf", []byte("%PDF-1.7\n"), ErrUnsupportedImage, "PDF"},
		{"truncated png", pngData[:len(pngData)/2], ErrBadImage, "PNG file is damaged"},
		{"png header only", pngData[:20], ErrBadImage, "header"},
		{"jpeg magic only", []byte("\xff\xd8\xff\xe0garbage"), ErrBadImage, "JPEG"},
		{"zero size", pngHeaderOnly(0, 10), ErrBadImage, "PNG"},
		{"bomb", pngHeaderOnly(20000, 20000), ErrImageTooLarge, "20000×20000 pixels (400.0 MP); the limit is 40.0 MP"},
	} {
		_, err := DecodeImage(tc.data, 40_000_000)
		if !errors.Is(err, tc.kind) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.kind)
			continue
		}
		var ie *ImageError
		if !errors.As(err, &ie) || !strings.Contains(ie.Msg, tc.says) {
			t.Errorf("%s: message %q does not say %q", tc.name, err, tc.says)
		}
	}
}

func TestDecodeImagePixelLimitIsInclusive(t *testing.T) {
	data := encodePNG(t, image.NewGray(image.Rect(0, 0, 100, 50)))
	if _, err := DecodeImage(data, 5000); err != nil {
		t.Fatalf("exactly at the limit: %v", err)
	}
	if _, err := DecodeImage(data, 4999); !errors.Is(err, ErrImageTooLarge) {
		t.Fatalf("one pixel over: %v", err)
	}
	if _, err := DecodeImage(data, 0); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}
