package gallery

import (
	"archive/zip"
	"encoding/json"
	"fmt"
	"io"
)

// WriteZip writes one entry as a zip for download: entry.json (the record,
// without any secret), original.png, adversarial.png, and where both images
// exist perturbation.npy (float32 [C,H,W], adversarial − original on the [0,1]
// scale) and perturbation.png (amplified to be visible).
//
// perturbationPNG is the perturbation's picture, drawn by the caller on the map
// Gibbon shows everywhere (nil leaves it out).
func WriteZip(w io.Writer, e *Entry, original, adversarial, perturbationPNG []byte) error {
	z := zip.NewWriter(w)
	create := func(name string) (io.Writer, error) {
		// Store, don't deflate: PNGs are compressed already and this stays fast.
		return z.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, Modified: e.CreatedAt})
	}
	add := func(name string, data []byte) error {
		f, err := create(name)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		return err
	}
	js, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return fmt.Errorf("entry zip: %w", err)
	}
	if err := add("entry.json", append(js, '\n')); err != nil {
		return err
	}
	if original != nil {
		if err := add("original.png", original); err != nil {
			return err
		}
	}
	if adversarial != nil {
		if err := add("adversarial.png", adversarial); err != nil {
			return err
		}
	}
	if original != nil && adversarial != nil {
		p, err := NewPerturbation(original, adversarial)
		if err != nil {
			return fmt.Errorf("entry zip: %w", err)
		}
		f, err := create("perturbation.npy")
		if err != nil {
			return err
		}
		if err := p.WriteNPY(f); err != nil {
			return err
		}
	}
	if perturbationPNG != nil {
		if err := add("perturbation.png", perturbationPNG); err != nil {
			return err
		}
	}
	return z.Close()
}
