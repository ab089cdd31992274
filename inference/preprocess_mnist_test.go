package inference_test

import (
	"context"
	"image"
	"math"
	"testing"

	xdraw "golang.org/x/image/draw"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
	"gibbon/models"
)

// MNIST digits re-rendered the way people bring digits (dark ink on light gray
// paper, 8× larger, off-centre) must come back from preprocessing close to the
// MNIST originals, and every built-in classifier must read them about as well as
// the originals: the normalisation is MNIST's own, not an approximation of it.
var mnistInput = inference.InputContract{Name: "image", Layout: "NCHW", Channels: 1, Height: 28, Width: 28,
	Color: "gray", Range: [2]float64{0, 1}, Resize: "mnist"}

func TestMNISTNormalisationRecoversMNISTDigits(t *testing.T) {
	test, err := mnist.LoadTest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := zoo.Load(context.Background(), testrt.Open(t), inference.ModelSource{Name: "built-in", FS: models.FS()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	var classifiers []*zoo.Model
	for _, m := range reg.Classifiers() {
		if m.Input.Resize == inference.ResizeMNIST {
			classifiers = append(classifiers, m)
		}
	}
	const n = 300
	var corrSum float64
	ok := make([][2]int, len(classifiers)) // original, re-rendered
	for i := range n {
		px := test.Image(i)
		original := &inference.Tensor{Shape: []int64{1, 1, 28, 28}, Data: px}
		page := onPaper(px, 40+i%50, 30+i%40)
		pre, err := inference.Preprocess(page, mnistInput)
		if err != nil {
			t.Fatalf("digit %d: %v", i, err)
		}
		corrSum += correlation(px, pre.Tensor.Data)
		for j, m := range classifiers {
			for k, x := range []*inference.Tensor{original, pre.Tensor} {
				p, err := m.Probabilities(context.Background(), x)
				if err != nil {
					t.Fatal(err)
				}
				if argmax(p[0]) == int(test.Labels[i]) {
					ok[j][k]++
				}
			}
		}
	}
	if c := corrSum / n; c < 0.75 {
		t.Errorf("mean correlation with the MNIST originals %.3f, want above 0.75", c)
	} else {
		t.Logf("mean correlation with the MNIST originals: %.3f over %d digits", c, n)
	}
	for j, m := range classifiers {
		orig, paper := float64(ok[j][0])/n, float64(ok[j][1])/n
		t.Logf("%s: %.1f %% on the originals, %.1f %% re-rendered on paper", m.Name, 100*orig, 100*paper)
		if paper < orig-0.03 {
			t.Errorf("%s loses %.1f points on re-rendered digits", m.Name, 100*(orig-paper))
		}
	}
}

// onPaper draws a 28×28 MNIST digit (light on dark) as dark ink on a light gray
// 400×300 page, enlarged 8× with smoothing, its top-left corner at (x0, y0).
func onPaper(px []float32, x0, y0 int) *image.Gray {
	ink := image.NewGray(image.Rect(0, 0, 28, 28))
	for j, v := range px {
		ink.Pix[j] = 255 - uint8(math.Round(float64(v)*255))
	}
	big := image.NewGray(image.Rect(0, 0, 224, 224))
	xdraw.BiLinear.Scale(big, big.Rect, ink, ink.Rect, xdraw.Src, nil)
	const paper = 235
	page := image.NewGray(image.Rect(0, 0, 400, 300))
	for j := range page.Pix {
		page.Pix[j] = paper
	}
	for y := range 224 {
		for x := range 224 {
			if v := big.Pix[y*224+x]; v < paper {
				page.Pix[(y+y0)*400+x+x0] = v
			}
		}
	}
	return page
}

func argmax(p []float32) int {
	best := 0
	for i := range p {
		if p[i] > p[best] {
			best = i
		}
	}
	return best
}

func correlation(a, b []float32) float64 {
	var ma, mb float64
	for i := range a {
		ma += float64(a[i])
		mb += float64(b[i])
	}
	ma /= float64(len(a))
	mb /= float64(len(b))
	var sab, saa, sbb float64
	for i := range a {
		x, y := float64(a[i])-ma, float64(b[i])-mb
		sab += x * y
		saa += x * x
		sbb += y * y
	}
	return sab / math.Sqrt(saa*sbb)
}
