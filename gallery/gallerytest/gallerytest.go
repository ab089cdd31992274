// Package gallerytest makes valid gallery entries for tests and benchmarks.
package gallerytest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"gibbon/gallery"
)

// Options shape a generated run. Zero values give a 28×28 grayscale MNIST-like
// run of 10 steps against "mnist-cnn" with "mnist-mlp" as a defence, FGSM-PGD at 8/255.
type Options struct {
	Width, Height int
	RGB           bool
	Steps         int
	Models        []string // first one attacked
	Attack        string
	Eps           float64 // /255
	Title         string
}

// Run returns a valid run entry; the same seed gives the same entry (and images).
func Run(seed uint64, o Options) *gallery.Entry {
	if o.Width == 0 {
		o.Width, o.Height = 28, 28
	}
	if o.Steps == 0 {
		o.Steps = 10
	}
	if len(o.Models) == 0 {
		o.Models = []string{"mnist-cnn", "mnist-mlp"}
	}
	if o.Attack == "" {
		o.Attack = "pgd"
	}
	if o.Eps == 0 {
		o.Eps = 8
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	orig, adv := Images(rng, o.Width, o.Height, o.RGB, int(o.Eps))
	e := &gallery.Entry{
		Kind:          gallery.KindRun,
		Title:         o.Title,
		GibbonVersion: "test",
		Attack:        o.Attack,
		Params:        json.RawMessage(fmt.Sprintf(`{"steps": %d, "step_size": 2, "random_start": true}`, o.Steps)),
		Seed:          int64(seed),
		Eps:           o.Eps,
		EpsUnit:       gallery.Unit255,
		LInf:          o.Eps,
		Original:      orig,
		Adversarial:   adv,
		Timings:       map[string]float64{"total": 12.5, "per_step": 1.25},
	}
	for i, name := range o.Models {
		e.Models = append(e.Models, gallery.ModelRef{Name: name, SHA256: fakeSHA(name), Attacked: i == 0})
	}
	for s := range o.Steps {
		st := gallery.Step{Step: s, Loss: 0.1 + float64(s)*0.3}
		for _, name := range o.Models {
			st.Top1 = append(st.Top1, gallery.Top1{Model: name, Label: fmt.Sprint((s + 7) % 10), Prob: 0.5 + rng.Float64()/2})
		}
		e.Steps = append(e.Steps, st)
	}
	for _, name := range o.Models {
		e.Predictions = append(e.Predictions, gallery.DefencePrediction{
			Model:       name,
			Original:    []gallery.Prediction{{Index: 7, Label: "7", Prob: 0.97}, {Index: 1, Label: "1", Prob: 0.02}},
			Adversarial: []gallery.Prediction{{Index: 3, Label: "3", Prob: 0.81}, {Index: 7, Label: "7", Prob: 0.15}},
		})
	}
	return e
}

// Images makes a random original and an adversarial copy that differs by at most
// eps (out of 255) per channel, exactly eps somewhere.
func Images(rng *rand.Rand, w, h int, rgb bool, eps int) (orig, adv []byte) {
	rect := image.Rect(0, 0, w, h)
	var a, b image.Image
	clamp := func(v int) uint8 { return uint8(max(0, min(255, v))) }
	if rgb {
		x, y := image.NewNRGBA(rect), image.NewNRGBA(rect)
		for i := 0; i < len(x.Pix); i += 4 {
			for c := range 3 {
				v := 32 + rng.IntN(192)
				x.Pix[i+c] = uint8(v)
				y.Pix[i+c] = clamp(v + rng.IntN(2*eps+1) - eps)
			}
			x.Pix[i+3], y.Pix[i+3] = 255, 255
		}
		y.Pix[0] = clamp(int(x.Pix[0]) + eps)
		a, b = x, y
	} else {
		x, y := image.NewGray(rect), image.NewGray(rect)
		for i := range x.Pix {
			v := 32 + rng.IntN(192)
			x.Pix[i] = uint8(v)
			y.Pix[i] = clamp(v + rng.IntN(2*eps+1) - eps)
		}
		y.Pix[0] = clamp(int(x.Pix[0]) + eps)
		a, b = x, y
	}
	return encode(a), encode(b)
}

// PNG encodes a w×h image of one grey level.
func PNG(w, h int, level uint8) []byte {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for i := range g.Pix {
		g.Pix[i] = level
	}
	return encode(g)
}

func encode(img image.Image) []byte {
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		panic(err) // in-memory encode of a valid image cannot fail
	}
	return buf.Bytes()
}

func fakeSHA(name string) string {
	h := sha256.Sum256([]byte("model " + name))
	return hex.EncodeToString(h[:])
}

// Mixed returns entry i of a varied gallery: four attacks, four eps, six models
// (two or three per entry), MNIST-sized greyscale or CIFAR-sized RGB images,
// 20 steps, one a minute from 2026-01-01.
func Mixed(i int) *gallery.Entry {
	models := []string{"mnist-cnn", "mnist-mlp", "mnist-robust", "cifar-resnet", "cifar-vgg", "cifar-robust"}
	attacks := []string{"fgsm", "pgd", "mi-fgsm", "attack-net"}
	o := Options{Steps: 20, Attack: attacks[i%4], Eps: float64(int(2) << (i / 4 % 4))}
	if i%5 == 0 {
		o.Width, o.Height, o.RGB = 32, 32, true
		o.Models = []string{models[3+i%3], models[3+(i+1)%3]}
	} else {
		o.Models = []string{models[i%3], models[(i+1)%3], models[(i+2)%3]}
	}
	e := Run(uint64(i), o)
	e.CreatedAt = mixedEpoch.Add(time.Duration(i) * time.Minute)
	return e
}

var mixedEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// SeededFile returns a gallery file holding Mixed(0..n-1), built once and kept
// in cacheDir under a name that says what it holds. Copy it before writing to it.
func SeededFile(ctx context.Context, cacheDir string, n int, logf func(string, ...any)) (string, error) {
	name := filepath.Join(cacheDir, fmt.Sprintf("bench-gallery-v2-%d.db", n))
	if _, err := os.Stat(name); err == nil {
		return name, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	tmp := name + ".building"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	s, err := gallery.Open(ctx, tmp)
	if err != nil {
		return "", err
	}
	if err := Fill(ctx, s, n, 1, logf); err != nil {
		s.Close()
		return "", err
	}
	if err := s.Close(); err != nil { // the last close checkpoints the WAL into the file
		return "", err
	}
	return name, os.Rename(tmp, name)
}

// Fill saves Mixed(0..n-1) into s from the given number of goroutines (one
// for SQLite, whose writes queue anyway; several for PostgreSQL).
func Fill(ctx context.Context, s *gallery.Store, n, workers int, logf func(string, ...any)) error {
	var next, done atomic.Int64
	start := time.Now()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if _, err := s.Save(ctx, Mixed(i)); err != nil {
					errs <- err
					next.Store(int64(n)) // the others stop too
					return
				}
				if d := done.Add(1); logf != nil && d%10000 == 0 {
					logf("seeded %d/%d entries (%.0fs)", d, n, time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when none failed
}

// CopyFile copies a (closed) gallery file to dst.
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
