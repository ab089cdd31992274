package inference

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
)

// DecodeLimits bound what Decode will decode. Each is checked from the file's
// header, before any pixel is decoded; zero means no limit.
type DecodeLimits struct {
	// MaxPixels bounds width × height.
	MaxPixels int64
	// MaxSide bounds the width and the height each: a 1×39,000,000 image passes an
	// area limit, but no photo or drawing is that shape.
	MaxSide int
	// MaxBytes bounds the memory the decoder takes (ImageHeader.DecodeBytes): a
	// 16-bit PNG holds 8 bytes per pixel, a progressive JPEG its coefficients too.
	MaxBytes int64
}

// ImageHeader is what an image file says about itself before it is decoded.
type ImageHeader struct {
	Format        string // PNG, JPEG, GIF or WebP
	Width, Height int
	// DecodeBytes is an upper estimate of the memory decoding it takes: the pixels
	// in the layout Go's decoder produces, plus its working buffers.
	DecodeBytes int64
}

// decodeOverhead is what any decoder holds besides the pixels (readers, tables).
const decodeOverhead = 256 << 10

// ReadImageHeader judges the format by content and reads the size and the memory
// decoding would take, without decoding. Unsupported, animated or damaged files
// are refused with an *ImageError.
func ReadImageHeader(data []byte) (ImageHeader, error) {
	codec, ok := sniffImage(data)
	if !ok {
		return ImageHeader{}, imageErr(ErrUnsupportedImage, "This file is %s, not an image Gibbon reads: use %s.", describeContent(data), ImageFormats)
	}
	if codec.name == "WebP" && animatedWebP(data) {
		return ImageHeader{}, imageErr(ErrUnsupportedImage, "This is an animated WebP; Gibbon reads still images only: save one frame as PNG or WebP and try again.")
	}
	cfg, err := safeConfig(codec, data)
	if err != nil {
		return ImageHeader{}, err
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return ImageHeader{}, imageErr(ErrBadImage, "This %s file is damaged: it says the image is %d×%d pixels.", codec.name, cfg.Width, cfg.Height)
	}
	h := ImageHeader{Format: codec.name, Width: cfg.Width, Height: cfg.Height}
	px := int64(cfg.Width) * int64(cfg.Height)
	switch codec.name {
	case "PNG":
		h.DecodeBytes = pngDecodeBytes(data, cfg.Width, cfg.Height)
	case "JPEG":
		h.DecodeBytes = jpegDecodeBytes(data, cfg.Width, cfg.Height)
	case "GIF":
		// One byte a pixel: gif.Decode keeps the first frame, paletted, and refuses
		// a frame larger than the logical screen.
		h.DecodeBytes = px
	case "WebP":
		h.DecodeBytes = webpDecodeBytes(data, px)
	}
	h.DecodeBytes += decodeOverhead
	return h, nil
}

// Check refuses a header over the limits, with a sentence saying which and what to do.
func (l DecodeLimits) Check(h ImageHeader) error {
	n := int64(h.Width) * int64(h.Height)
	switch {
	case l.MaxPixels > 0 && n > l.MaxPixels:
		return imageErr(ErrImageTooLarge, "The image is %d×%d pixels (%s); the limit is %s. Scale it down and try again.",
			h.Width, h.Height, FormatMegapixels(n), FormatMegapixels(l.MaxPixels))
	case l.MaxSide > 0 && max(h.Width, h.Height) > l.MaxSide:
		return imageErr(ErrImageTooLarge, "The image is %d×%d pixels; no side may be longer than %d pixels. Crop or scale it and try again.",
			h.Width, h.Height, l.MaxSide)
	case l.MaxBytes > 0 && h.DecodeBytes > l.MaxBytes:
		return imageErr(ErrImageTooLarge, "The image is %d×%d pixels (%s) stored so that decoding it takes %s of memory; the limit is %s. Save it as an 8-bit PNG or a JPEG, or scale it down, and try again.",
			h.Width, h.Height, FormatMegapixels(n), formatMB(h.DecodeBytes), formatMB(l.MaxBytes))
	}
	return nil
}

func formatMB(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/1e6) }

// animatedWebP is true for a WebP whose VP8X chunk sets the animation flag.
func animatedWebP(data []byte) bool {
	const animationBit = 1 << 1
	return len(data) > 20 && string(data[12:16]) == "VP8X" && data[20]&animationBit != 0
}

// pngDecodeBytes is what image/png allocates for a w×h PNG: the image (its type
// follows the colour type, bit depth and any tRNS chunk), two filter rows, and for
// an interlaced file one image per pass besides the final one.
func pngDecodeBytes(data []byte, w, h int) int64 {
	if len(data) < 29 {
		return 8 * int64(w) * int64(h)
	}
	depth, colorType, interlaced := int64(data[24]), data[25], data[28] != 0
	trns := pngHasChunk(data, "tRNS")
	channels := map[byte]int64{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colorType]
	var perPixel int64
	switch {
	case colorType == 3: // paletted
		perPixel = 1
	case colorType == 0 && !trns: // gray
		perPixel = max(1, depth/8)
	case depth == 16: // RGBA64, NRGBA64
		perPixel = 8
	default: // RGBA, NRGBA
		perPixel = 4
	}
	px := int64(w) * int64(h)
	rows := 2 * (1 + (int64(w)*max(channels, 1)*depth+7)/8)
	total := perPixel*px + rows
	if interlaced {
		total += perPixel*px + rows
	}
	return total
}

// pngHasChunk reports whether a chunk of type typ comes before the image data.
func pngHasChunk(data []byte, typ string) bool {
	for i := 8; i+8 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[i:]))
		name := string(data[i+4 : i+8])
		if name == typ {
			return true
		}
		if name == "IDAT" || n < 0 || n > len(data) {
			return false
		}
		i += 12 + n
	}
	return false
}

// jpegDecodeBytes is what image/jpeg allocates: each component's plane at MCU
// size, the coefficients of a progressive file (64 int32 per 8×8 block), and an
// RGBA or CMYK copy for files stored as RGB or with four components.
func jpegDecodeBytes(data []byte, w, h int) int64 {
	sof, adobeRGB, ok := jpegFrame(data)
	px := int64(w) * int64(h)
	if !ok {
		return 16 * px // no frame header we understand: the most it could be
	}
	hmax, vmax := 1, 1
	for _, c := range sof.comps {
		hmax, vmax = max(hmax, c.h), max(vmax, c.v)
	}
	if len(sof.comps) == 1 { // image/jpeg ignores a lone component's sampling factors
		sof.comps[0].h, sof.comps[0].v, hmax, vmax = 1, 1, 1, 1
	}
	mxx := int64((w + 8*hmax - 1) / (8 * hmax))
	myy := int64((h + 8*vmax - 1) / (8 * vmax))
	var planes int64
	for _, c := range sof.comps {
		planes += 8 * int64(c.h) * mxx * 8 * int64(c.v) * myy
	}
	total := planes
	if sof.progressive {
		total += 4 * planes
	}
	if len(sof.comps) == 4 || (len(sof.comps) == 3 && (adobeRGB || sof.rgbIDs)) {
		total += 4 * px
	}
	return total
}

type jpegSOF struct {
	progressive bool
	rgbIDs      bool // components named 'R', 'G', 'B'
	comps       []struct{ h, v int }
}

// jpegFrame walks the markers up to the frame header (SOF0, SOF1 or SOF2, what
// image/jpeg decodes) and notes an Adobe APP14 segment saying RGB (transform 0).
func jpegFrame(data []byte) (sof jpegSOF, adobeRGB, ok bool) {
	for i := 2; i+4 <= len(data); {
		if data[i] != 0xff {
			return sof, false, false
		}
		marker := data[i+1]
		if marker == 0xff { // fill byte
			i++
			continue
		}
		n := int(binary.BigEndian.Uint16(data[i+2:]))
		seg := data[i+4 : min(len(data), i+2+n)]
		switch {
		case marker == 0xee && len(seg) >= 12 && bytes.HasPrefix(seg, []byte("Adobe")):
			adobeRGB = seg[11] == 0
		case marker == 0xc0 || marker == 0xc1 || marker == 0xc2:
			if len(seg) < 6 {
				return sof, false, false
			}
			nc := int(seg[5])
			if nc < 1 || len(seg) < 6+3*nc {
				return sof, false, false
			}
			sof.progressive = marker == 0xc2
			for k := range nc {
				c := seg[6+3*k:]
				sof.comps = append(sof.comps, struct{ h, v int }{max(1, int(c[1]>>4)), max(1, int(c[1]&15))})
			}
			sof.rgbIDs = nc == 3 && seg[6] == 'R' && seg[9] == 'G' && seg[12] == 'B'
			return sof, adobeRGB, true
		case marker == 0xda || marker == 0xd9: // scan or end before a frame header
			return sof, false, false
		}
		i += 2 + n
	}
	return sof, false, false
}

// webpDecodeBytes is what golang.org/x/image/webp allocates: lossy frames decode
// to 4:2:0 YCbCr (1.5 bytes a pixel), an alpha plane may pass through an RGBA
// image first; lossless ones decode to RGBA and a colour-indexed one expands
// into a second buffer.
func webpDecodeBytes(data []byte, px int64) int64 {
	if len(data) < 16 {
		return 8 * px
	}
	switch string(data[12:16]) {
	case "VP8 ":
		return px * 3 / 2
	case "VP8X":
		const alphaBit = 1 << 4
		if len(data) > 20 && data[20]&alphaBit != 0 {
			return px*3/2 + 5*px // YCbCr, the alpha, and the RGBA it is decoded through
		}
		return 8 * px // the frame inside may be lossless
	}
	return 8 * px // VP8L
}

// safeConfig reads the header with codec. Decoders are meant not to panic on bad
// input; if one does, the file is still only a bad file.
func safeConfig(codec imageCodec, data []byte) (cfg image.Config, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = imageErr(ErrBadImage, "This %s file is damaged: the decoder failed on it.", codec.name)
		}
	}()
	cfg, err = codec.config(bytes.NewReader(data))
	if err != nil {
		return cfg, imageErr(ErrBadImage, "This %s file is damaged: its header could not be read (%v).", codec.name, err)
	}
	return cfg, nil
}
