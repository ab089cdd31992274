package server

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
)

// frameImage is one PNG of a binary message: what it shows and where its bytes lie
// after the JSON header.
type frameImage struct {
	Role   string `json:"role"` // clean, adv, perturbation, head
	Label  string `json:"label,omitempty"`
	Offset int    `json:"offset"`
	Length int    `json:"length"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	// Linf is a head's L∞ distance from the clean image, in /255 steps.
	Linf int `json:"linf,omitempty"`
}

// pngPart is a PNG to append to a binary message.
type pngPart struct {
	role, label string
	data        []byte
	w, h        int
	linf        int
}

// packBinary lays out a binary message: a 4-byte big-endian JSON length, the JSON
// header (whose images field is set here), then the PNGs.
func packBinary(header any, setImages func([]frameImage), parts []pngPart) ([]byte, error) {
	imgs := make([]frameImage, len(parts))
	off := 0
	for i, p := range parts {
		imgs[i] = frameImage{Role: p.role, Label: p.label, Offset: off, Length: len(p.data), Width: p.w, Height: p.h, Linf: p.linf}
		off += len(p.data)
	}
	setImages(imgs)
	js, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4, 4+len(js)+off)
	binary.BigEndian.PutUint32(out, uint32(len(js)))
	out = append(out, js...)
	for _, p := range parts {
		out = append(out, p.data...)
	}
	return out, nil
}

// unpackBinary reads a binary message back (tests and tools).
func unpackBinary(msg []byte, header any) (map[string][]byte, []frameImage, error) {
	if len(msg) < 4 {
		return nil, nil, fmt.Errorf("message of %d bytes has no header length", len(msg))
	}
	n := int(binary.BigEndian.Uint32(msg))
	if 4+n > len(msg) {
		return nil, nil, fmt.Errorf("header of %d bytes does not fit a %d-byte message", n, len(msg))
	}
	if err := json.Unmarshal(msg[4:4+n], header); err != nil {
		return nil, nil, err
	}
	var with struct {
		Images []frameImage `json:"images"`
	}
	if err := json.Unmarshal(msg[4:4+n], &with); err != nil {
		return nil, nil, err
	}
	blobs := msg[4+n:]
	out := map[string][]byte{}
	for _, im := range with.Images {
		if im.Offset < 0 || im.Length < 0 || im.Offset+im.Length > len(blobs) {
			return nil, nil, fmt.Errorf("image %s lies outside the message", im.Role)
		}
		key := im.Role
		if im.Label != "" {
			key += ":" + im.Label
		}
		out[key] = blobs[im.Offset : im.Offset+im.Length]
	}
	return out, with.Images, nil
}

// jsonFloats writes non-finite values as null (JSON has no NaN).
func jsonFloats(v []float64) []*float64 {
	out := make([]*float64, len(v))
	for i, f := range v {
		if !math.IsNaN(f) && !math.IsInf(f, 0) {
			out[i] = &f
		}
	}
	return out
}
