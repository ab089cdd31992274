package attacknet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gibbon/inference"
)

// MaxImagePixels bounds each training image LoadImages decodes.
const MaxImagePixels = 40_000_000

// Skipped is a file LoadImages could not use, and why.
type Skipped struct {
	Path   string
	Reason string
}

// LoadImages reads up to limit images (0: no limit) from dir and its subfolders, in
// name order, and preprocesses each to c's tensor on the pixel range (c's mean/std
// are left to the classifiers' graphs). Files that are not images Gibbon reads are
// skipped and listed; no usable image at all is an error.
func LoadImages(dir string, c inference.InputContract, limit int) (*Images, []Skipped, error) {
	c = c.Unnormalized()
	if err := c.Check(); err != nil {
		return nil, nil, err
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, nil, err
	}
	if !st.IsDir() {
		return nil, nil, fmt.Errorf("%s is not a folder of images", dir)
	}
	var paths []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(d.Name(), ".") && d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(paths)
	shape := c.Shape()[1:]
	out := &Images{Shape: shape}
	var skipped []Skipped
	for _, p := range paths {
		if limit > 0 && out.Len() >= limit {
			break
		}
		data, err := os.ReadFile(p)
		if err != nil {
			skipped = append(skipped, Skipped{p, err.Error()})
			continue
		}
		dec, err := inference.DecodeImage(data, MaxImagePixels)
		if err != nil {
			skipped = append(skipped, Skipped{p, err.Error()})
			continue
		}
		pre, err := inference.Preprocess(dec.Image, c)
		if err != nil {
			skipped = append(skipped, Skipped{p, err.Error()})
			continue
		}
		out.Data = append(out.Data, pre.Tensor.Data...)
	}
	if out.Len() == 0 {
		if len(paths) == 0 {
			return nil, nil, fmt.Errorf("%s holds no files", dir)
		}
		return nil, skipped, errors.New(dir + " holds no image Gibbon can read (" + inference.ImageFormats + ")")
	}
	return out, skipped, nil
}
