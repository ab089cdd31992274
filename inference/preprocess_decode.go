package inference

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/webp"
)

// Kinds of bad image input. Each error DecodeImage and Preprocess return for a bad
// image wraps one of these (errors.Is) and reads as a sentence a person can act on.
var (
	ErrUnsupportedImage = errors.New("unsupported image type")
	ErrImageTooLarge    = errors.New("image has too many pixels")
	ErrBadImage         = errors.New("damaged image")
	ErrBlankImage       = errors.New("blank image")
)

// ImageError is a bad-input error with a message meant for the person who sent it.
type ImageError struct {
	Kind error // one of the Err*Image values above
	Msg  string
}

func (e *ImageError) Error() string { return e.Msg }
func (e *ImageError) Unwrap() error { return e.Kind }

func imageErr(kind error, format string, args ...any) error {
	return &ImageError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Decoded is an image read from bytes, with the format judged from its content.
type Decoded struct {
	Image         image.Image
	Format        string // PNG, JPEG, GIF or WebP
	Width, Height int
}

// ImageFormats names the formats DecodeImage reads, for messages and accept lists.
const ImageFormats = "PNG, JPEG, GIF and WebP"

// imageCodec is one format Gibbon reads.
type imageCodec struct {
	name   string
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

// sniffImage judges the format by the file's first bytes; the name and the
// declared content type are never trusted.
func sniffImage(data []byte) (imageCodec, bool) {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return imageCodec{"PNG", png.DecodeConfig, png.Decode}, true
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		return imageCodec{"JPEG", jpeg.DecodeConfig, jpeg.Decode}, true
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		// gif.Decode keeps only the first frame, so an animation costs one frame.
		return imageCodec{"GIF", gif.DecodeConfig, gif.Decode}, true
	case len(data) >= 16 && string(data[:4]) == "RIFF" && string(data[8:15]) == "WEBPVP8":
		return imageCodec{"WebP", webp.DecodeConfig, webp.Decode}, true
	}
	return imageCodec{}, false
}

// describeContent guesses what a file we do not read is, so the message can say.
func describeContent(data []byte) string {
	head := data[:min(len(data), 512)]
	switch {
	case len(data) == 0:
		return "an empty file"
	case bytes.HasPrefix(head, []byte("BM")):
		return "a BMP image"
	case bytes.HasPrefix(head, []byte("II*\x00")), bytes.HasPrefix(head, []byte("MM\x00*")):
		return "a TIFF image"
	case len(head) >= 12 && string(head[4:8]) == "ftyp" && (string(head[8:12]) == "heic" || string(head[8:12]) == "heix" || string(head[8:12]) == "mif1"):
		return "a HEIC/HEIF image"
	case len(head) >= 12 && string(head[4:8]) == "ftyp" && string(head[8:12]) == "avif":
		return "an AVIF image"
	case bytes.HasPrefix(head, []byte("%PDF")):
		return "a PDF document"
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return "a ZIP archive"
	case bytes.Contains(bytes.ToLower(head), []byte("<svg")):
		return "an SVG drawing"
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return "a WebP file of an unknown kind"
	}
	for _, b := range head {
		if b < 0x09 || (b > 0x0d && b < 0x20) {
			return "binary data of an unknown kind"
		}
	}
	return "text"
}

// DecodeImage reads a PNG, JPEG, GIF or WebP image from memory. The size is read
// from the header first and an image over maxPixels (width × height) is refused
// before any pixel is decoded; maxPixels <= 0 means no limit.
func DecodeImage(data []byte, maxPixels int64) (*Decoded, error) {
	return DecodeLimits{MaxPixels: maxPixels}.Decode(data)
}

// Decode reads a PNG, JPEG, GIF or WebP image from memory, refusing one over the
// limits from its header, before any pixel is decoded.
func (l DecodeLimits) Decode(data []byte) (dec *Decoded, err error) {
	h, err := ReadImageHeader(data)
	if err != nil {
		return nil, err
	}
	if err := l.Check(h); err != nil {
		return nil, err
	}
	codec, _ := sniffImage(data)
	defer func() {
		if r := recover(); r != nil {
			dec, err = nil, imageErr(ErrBadImage, "This %s file is damaged: the decoder failed on it.", codec.name)
		}
	}()
	img, err := codec.decode(bytes.NewReader(data))
	if err != nil {
		return nil, imageErr(ErrBadImage, "This %s file is damaged: it could not be decoded (%v).", codec.name, err)
	}
	b := img.Bounds()
	if b.Dx() <= 0 || b.Dy() <= 0 {
		return nil, imageErr(ErrBadImage, "This %s file is damaged: it says the image is %d×%d pixels.", codec.name, b.Dx(), b.Dy())
	}
	if err := l.Check(ImageHeader{Width: b.Dx(), Height: b.Dy()}); err != nil {
		return nil, err
	}
	return &Decoded{Image: img, Format: codec.name, Width: b.Dx(), Height: b.Dy()}, nil
}

// FormatMegapixels writes a pixel count in megapixels, e.g. "40.0 MP".
func FormatMegapixels(n int64) string {
	return fmt.Sprintf("%.1f MP", float64(n)/1e6)
}
