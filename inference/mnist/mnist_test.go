package mnist

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func realDir(t *testing.T) string {
	t.Helper()
	d, err := Dir(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLoadReadsVerifiedSets(t *testing.T) {
	train, test, err := LoadDir(realDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if train.Len() != 60000 || test.Len() != 10000 {
		t.Fatalf("sizes %d, %d; want 60000, 10000", train.Len(), test.Len())
	}
	// The test set's first digits are 7, 2, 1, 0, 4 (the classic first row).
	for i, want := range []uint8{7, 2, 1, 0, 4} {
		if test.Labels[i] != want {
			t.Fatalf("test label %d = %d, want %d", i, test.Labels[i], want)
		}
	}
	var counts [Classes]int
	for _, l := range train.Labels {
		counts[l]++
	}
	for d, c := range counts {
		if c < 5000 || c > 7000 {
			t.Errorf("digit %d appears %d times in training, want about 6000", d, c)
		}
	}
	lo, hi, sum := float32(1), float32(0), 0.0
	for _, v := range test.Images {
		lo, hi, sum = min(lo, v), max(hi, v), sum+float64(v)
	}
	if lo != 0 || hi != 1 {
		t.Fatalf("pixel range [%g,%g], want [0,1]", lo, hi)
	}
	if mean := sum / float64(len(test.Images)); mean < 0.12 || mean > 0.15 {
		t.Fatalf("mean pixel %.3f, want about 0.13 (white digits on black)", mean)
	}
	if s := test.Subset(100); s.Len() != 100 || &s.Images[0] != &test.Images[0] {
		t.Fatal("Subset(100) is not a view of the first 100 images")
	}
}

// copyData copies the four files into a temporary folder that a test may damage.
func copyData(t *testing.T) string {
	t.Helper()
	src, dst := realDir(t), t.TempDir()
	for _, f := range []fileSpec{files.trainImages, files.trainLabels, files.testImages, files.testLabels} {
		data, err := os.ReadFile(filepath.Join(src, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f.name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestCorruptedFilesAreDetected(t *testing.T) {
	dir := copyData(t)
	if _, _, err := LoadDir(dir); err != nil {
		t.Fatalf("intact copy rejected: %v", err)
	}
	cases := []struct {
		name   string
		file   string
		damage func([]byte) []byte
		want   string
	}{
		{"flipped byte", files.trainImages.name, func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }, "SHA-256"},
		{"truncated", files.testLabels.name, func(b []byte) []byte { return b[:len(b)-10] }, "bytes, want"},
		{"empty", files.testImages.name, func(b []byte) []byte { return nil }, "0 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyData(t)
			path := filepath.Join(dir, c.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, c.damage(data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err = LoadDir(dir)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("damaged %s: error %v, want ErrCorrupt", c.file, err)
			}
			if !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q should name %s and say %q", err, c.file, c.want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		dir := copyData(t)
		os.Remove(filepath.Join(dir, files.trainLabels.name))
		_, _, err := LoadDir(dir)
		if err == nil || !strings.Contains(err.Error(), files.trainLabels.name) {
			t.Fatalf("missing file: error %v should name it", err)
		}
	})
}

// The checksum catches any change to the shipped files; the idx checks guard the
// decoder itself (and files a future GIBBON_MNIST_DIR might hold).
func TestIDXHeaderChecks(t *testing.T) {
	img := func(magic, n, r, c uint32, body int) []byte {
		b := []byte{byte(magic >> 24), byte(magic >> 16), byte(magic >> 8), byte(magic),
			byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n),
			0, 0, 0, byte(r), 0, 0, 0, byte(c)}
		return append(b, make([]byte, body)...)
	}
	spec := fileSpec{magic: 2051, count: 2}
	if err := checkHeader(img(2051, 2, 28, 28, 2*Pixels), spec); err != nil {
		t.Fatalf("valid header rejected: %v", err)
	}
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"labels magic": {img(2049, 2, 28, 28, 2*Pixels), "magic number 2049, want 2051"},
		"count":        {img(2051, 3, 28, 28, 3*Pixels), "holds 3 items"},
		"geometry":     {img(2051, 2, 32, 32, 2*1024), "32x32"},
		"short body":   {img(2051, 2, 28, 28, Pixels), "want 1584"},
		"tiny":         {[]byte{0, 0, 8}, "too short"},
	} {
		if err := checkHeader(c.data, spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
	if _, err := decode(img(2051, 1, 28, 28, Pixels), []byte{0, 0, 8, 1, 0, 0, 0, 1, 12}, 1); !errors.Is(err, ErrCorrupt) {
		t.Errorf("label 12 accepted: %v", err)
	}
}

func TestSamplesRoundTrip(t *testing.T) {
	_, test, err := LoadDir(realDir(t))
	if err != nil {
		t.Fatal(err)
	}
	idx := SampleIndices(test, 2)
	if len(idx) != 20 {
		t.Fatalf("%d samples, want 20", len(idx))
	}
	for k, i := range idx {
		if int(test.Labels[i]) != k/2 {
			t.Fatalf("sample %d has label %d, want %d", k, test.Labels[i], k/2)
		}
	}
	dir := t.TempDir()
	names, err := WriteSamples(dir, test, 2)
	if err != nil {
		t.Fatal(err)
	}
	if names[0] != "digit-0-0.png" || names[19] != "digit-9-1.png" {
		t.Fatalf("names %v", names)
	}
	data, err := os.ReadFile(filepath.Join(dir, "digit-7-0.png"))
	if err != nil {
		t.Fatal(err)
	}
	px, err := DecodePNG(data)
	if err != nil {
		t.Fatal(err)
	}
	orig := test.Image(idx[14])
	for j := range px {
		if d := px[j] - orig[j]; d > 0.5/255 || d < -0.5/255 {
			t.Fatalf("pixel %d: %g after PNG, %g before", j, px[j], orig[j])
		}
	}
	if _, err := PNG(make([]float32, 10)); err == nil {
		t.Fatal("a 10-pixel image was encoded")
	}
	if _, err := DecodePNG([]byte("not a png")); err == nil {
		t.Fatal("garbage decoded as PNG")
	}
}
