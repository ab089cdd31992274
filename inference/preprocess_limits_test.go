package inference

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
)

// allocated is the bytes f allocates (all goroutines; the tests here run alone).
func allocated(f func()) int64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc)
}

// pngHeaderOf is a PNG signature and an IHDR chunk for a w×h image of the given
// bit depth and colour type, and no pixel data.
func pngHeaderOf(w, h uint32, depth, colorType byte) []byte {
	data := pngHeaderOnly(w, h)
	data[24], data[25] = depth, colorType
	binary.BigEndian.PutUint32(data[29:], crc32.ChecksumIEEE(data[12:29]))
	return data
}

// withChunk inserts a chunk right after a PNG's IHDR.
func withChunk(png []byte, typ string, body []byte) []byte {
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	chunk = append(chunk, typ...)
	chunk = append(chunk, body...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	out := append([]byte(nil), png[:33]...)
	out = append(out, chunk...)
	return append(out, png[33:]...)
}

// The limits are checked from the header: a file that is only a header (a real
// one would hold its pixels in a few kilobytes) is refused for its shape or its
// decoded size before any decoding, which would find it damaged.
func TestDecodeLimitsRefuseFromTheHeader(t *testing.T) {
	lim := DecodeLimits{MaxPixels: 40_000_000, MaxSide: 16_384, MaxBytes: 160 << 20}
	for _, tc := range []struct {
		name string
		data []byte
		says string
	}{
		{"1×39,000,000", pngHeaderOnly(1, 39_000_000), "1×39000000 pixels; no side may be longer than 16384 pixels"},
		{"39,000,000×1", pngHeaderOnly(39_000_000, 1), "39000000×1 pixels; no side may be longer than 16384 pixels"},
		{"16-bit RGBA, 35 MP", pngHeaderOf(7000, 5000, 16, 6), "decoding it takes 280 MB of memory; the limit is 168 MB"},
		{"area", pngHeaderOnly(16_384, 16_384), "(268.4 MP); the limit is 40.0 MP"},
	} {
		_, err := lim.Decode(tc.data)
		var ie *ImageError
		if !errors.Is(err, ErrImageTooLarge) || !errors.As(err, &ie) || !strings.Contains(ie.Msg, tc.says) {
			t.Errorf("%s: %v, want too large saying %q", tc.name, err, tc.says)
		}
	}
	// Within every limit, the same kind of file reaches the decoder, which finds no pixels.
	for name, data := range map[string][]byte{
		"8-bit RGBA, 40 MP":              pngHeaderOf(16_384, 2441, 8, 6),
		"gray, 16384×2441 the other way": pngHeaderOnly(2441, 16_384),
	} {
		if _, err := lim.Decode(data); !errors.Is(err, ErrBadImage) {
			t.Errorf("%s: %v, want it decoded (and found damaged)", name, err)
		}
	}
}

// DecodeBytes is an upper bound of what the decoder allocates, for each layout
// Go's decoders produce, and not a wild overestimate of the common ones (which
// would refuse images that fit).
func TestDecodeBytesBoundWhatTheDecoderAllocates(t *testing.T) {
	const w, h = 1000, 700
	gray := image.NewGray(image.Rect(0, 0, w, h))
	nrgba := image.NewNRGBA(image.Rect(0, 0, w, h))
	nrgba64 := image.NewNRGBA64(image.Rect(0, 0, w, h))
	gray16 := image.NewGray16(image.Rect(0, 0, w, h))
	opaque := image.NewRGBA(image.Rect(0, 0, w, h))
	pal := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White, color.NRGBA{200, 0, 0, 128}})
	for i := range w * h {
		v := uint8(i * 31 % 251)
		gray.Pix[i] = v
		copy(nrgba.Pix[4*i:], []uint8{v, 255 - v, v / 2, v | 1})
		copy(opaque.Pix[4*i:], []uint8{v, 255 - v, v / 2, 255})
		copy(nrgba64.Pix[8*i:], []uint8{v, v, 255 - v, v, 1, 2, v, 9})
		copy(gray16.Pix[2*i:], []uint8{v, 255 - v})
		pal.Pix[i] = uint8(i % 3)
	}
	var gray444 bytes.Buffer
	jpeg.Encode(&gray444, gray, nil)
	type sample struct {
		name  string
		data  []byte
		tight bool // a common layout: the estimate must not be far over
	}
	samples := []sample{
		{"PNG gray", encodePNG(t, gray), true},
		{"PNG gray with tRNS", withChunk(encodePNG(t, gray), "tRNS", []byte{0, 7}), true},
		{"PNG gray 16-bit", encodePNG(t, gray16), true},
		{"PNG RGB", encodePNG(t, opaque), true},
		{"PNG RGBA", encodePNG(t, nrgba), true},
		{"PNG RGBA 16-bit", encodePNG(t, nrgba64), true},
		{"PNG paletted", encodePNG(t, pal), true},
		{"JPEG gray", gray444.Bytes(), true},
		{"JPEG 4:2:0", encodeJPEG(t, opaque), true},
		{"GIF", encodeGIF(t, pal), true},
	}
	for _, f := range []string{"basn3p04-31i.png", "video-001.progressive.jpeg", "video-001.cmyk.jpeg", "video-001.rgb.jpeg",
		"video-001.lossy.webp", "yellow_rose.lossy-with-alpha.webp", "blue-purple-pink.lossless.webp", "gopher-doc.1bpp.lossless.webp"} {
		data, err := os.ReadFile("testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, sample{f, data, false})
	}
	for _, s := range samples {
		hdr, err := ReadImageHeader(s.data)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var dec *Decoded
		got := allocated(func() { dec, err = DecodeImage(s.data, 0) })
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		t.Logf("%s (%T): allocated %d bytes, estimated %d", s.name, dec.Image, got, hdr.DecodeBytes)
		if got > hdr.DecodeBytes {
			t.Errorf("%s: the decoder allocated %d bytes, over the estimate of %d", s.name, got, hdr.DecodeBytes)
		}
		if s.tight && hdr.DecodeBytes > 2*got+decodeOverhead {
			t.Errorf("%s: estimated %d bytes for %d allocated: too far over", s.name, hdr.DecodeBytes, got)
		}
	}
}

// testdata/gopher-doc.animated.webp is gopher-doc.1bpp.lossless.webp's VP8L
// bitstream as a one-frame animation (VP8X with the animation flag, ANIM, ANMF),
// which Chromium shows.
func TestAnimatedWebPIsUnsupportedMedia(t *testing.T) {
	anim, err := os.ReadFile("testdata/gopher-doc.animated.webp")
	if err != nil {
		t.Fatal(err)
	}
	_, err = DecodeImage(anim, 40_000_000)
	var ie *ImageError
	if !errors.Is(err, ErrUnsupportedImage) || !errors.As(err, &ie) || !strings.Contains(ie.Msg, "animated WebP") {
		t.Fatalf("animated WebP: %v, want unsupported, saying so", err)
	}
	still, err := os.ReadFile("testdata/yellow_rose.lossy-with-alpha.webp") // VP8X, not animated
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeImage(still, 40_000_000); err != nil {
		t.Fatalf("a still VP8X WebP: %v", err)
	}
}

// Making a picture takes memory by the picture's size, whatever the source's
// shape: a 1×3,000,000 strip costs what a 1×1024 one does, and the widest and
// tallest images the side limit lets through stay within PictureBytes (what the
// server reserves for a picture).
func TestPictureMemoryFollowsThePictureNotTheSource(t *testing.T) {
	halves := func(w, h int) *image.Gray { // black first half, white second, along the long side
		img := image.NewGray(image.Rect(0, 0, w, h))
		for i := range img.Pix {
			if (w >= h && i%w >= w/2) || (h > w && i/w >= h/2) {
				img.Pix[i] = 255
			}
		}
		return img
	}
	for _, size := range [][2]int{{1, 3_000_000}, {3_000_000, 1}, {16_384, 2441}, {2441, 16_384}} {
		img := halves(size[0], size[1])
		var p *Picture
		got := allocated(func() { p = NewPicture(img, DefaultWorkingSide) })
		budget := PictureBytes(size[0], size[1], DefaultWorkingSide)
		t.Logf("%d×%d → %d×%d: allocated %d bytes (budget %d, source %d)", size[0], size[1], p.W, p.H, got, budget, len(img.Pix))
		if got > budget {
			t.Errorf("%d×%d: allocated %d bytes for a %d×%d picture, over %d", size[0], size[1], got, p.W, p.H, budget)
		}
		long, first, last := max(p.W, p.H), p.R[0], p.R[len(p.R)-1]
		if long != DefaultWorkingSide || first > 0.01 || last < 0.99 || !p.Gray {
			t.Errorf("%d×%d → %d×%d: ends %.3f and %.3f, gray %v; want black to white along the long side",
				size[0], size[1], p.W, p.H, first, last, p.Gray)
		}
	}
}

// A crop model's scale-then-crop computes only the crop: a 1024×1 picture scaled
// so its short side fits 256 px would be 262,144 px wide.
func TestCropOfAThinPictureCostsTheCrop(t *testing.T) {
	p := NewPicture(image.NewGray(image.Rect(0, 0, 1024, 1)), 0)
	c := InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB", Range: [2]float64{0, 1},
		Resize: ResizeCrop, CropPct: 0.875, Interp: "bicubic"}
	var err error
	got := allocated(func() { _, err = p.Preprocess(c) })
	if err != nil {
		t.Fatal(err)
	}
	if got > 16<<20 {
		t.Fatalf("preprocessing a 1024×1 picture for a 224×224 crop allocated %d bytes", got)
	}
}

// resampleWindow is resample then crop, computed for the window only.
func TestResampleWindowIsResampleThenCrop(t *testing.T) {
	p := newPlane(37, 23)
	for i := range p.px {
		p.px[i] = float32(math.Sin(float64(i) * 0.7))
	}
	for _, k := range []kernel{kernelBilinear, kernelBicubic} {
		for _, tc := range [][6]int{{80, 50, 11, 7, 40, 30}, {20, 12, 3, 2, 10, 8}, {37, 23, 5, 4, 20, 15}} {
			w, h, x0, y0, ww, wh := tc[0], tc[1], tc[2], tc[3], tc[4], tc[5]
			want := resample(p, w, h, k).crop(x0, y0, ww, wh)
			got := resampleWindow(p, w, h, x0, y0, ww, wh, k)
			for i := range want.px {
				if math.Abs(float64(got.px[i]-want.px[i])) > 1e-6 {
					t.Fatalf("%v: pixel %d is %v, want %v", tc, i, got.px[i], want.px[i])
				}
			}
		}
	}
}
