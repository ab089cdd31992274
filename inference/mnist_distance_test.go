package inference_test

import (
	"context"
	"fmt"
	"image"
	"os"
	"testing"

	_ "golang.org/x/image/webp"

	"gibbon/inference"
	"gibbon/inference/mnist"
)

// TestMNISTDistance: every one of MNIST's 10,000 test digits lies within the
// limits (the limits are just above the largest shares among them), so do MNIST
// digits re-rendered as dark ink on paper, enlarged with smoothing; a photo lies
// far outside.
func TestMNISTDistance(t *testing.T) {
	test, err := mnist.LoadTest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var most inference.MNISTDistance
	for i := range test.Len() {
		g := image.NewGray(image.Rect(0, 0, 28, 28))
		for j, v := range test.Image(i) {
			g.Pix[j] = uint8(v*255 + 0.5)
		}
		d := inference.NewPicture(g, inference.DefaultWorkingSide).MNISTDistance()
		if d.Unlike() {
			t.Errorf("MNIST test digit %d: %+v, want a distance of at most 1", i, d)
		}
		most.Border, most.Tones, most.Distance = max(most.Border, d.Border), max(most.Tones, d.Tones), max(most.Distance, d.Distance)
	}
	t.Logf("MNIST test digits: border at most %.1f %%, in-between tones at most %.1f %%, distance at most %.2f",
		100*most.Border, 100*most.Tones, most.Distance)
	// The limits stay close to what the digits span: a limit far above it would let photos through.
	if most.Border < inference.BorderLimit/2 || most.Tones < inference.TonesLimit/2 {
		t.Errorf("the limits (%g, %g) are far above MNIST's largest shares %+v", inference.BorderLimit, inference.TonesLimit, most)
	}

	for i := range 200 {
		d := inference.NewPicture(onPaper(test.Image(i), 40+i%50, 30+i%40), inference.DefaultWorkingSide).MNISTDistance()
		if d.Unlike() {
			t.Errorf("MNIST digit %d on paper: %+v, want a distance of at most 1", i, d)
		}
	}

	f, err := os.Open("testdata/video-001.lossy.webp") // a photo
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	photo, _, err := image.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	d := inference.NewPicture(photo, inference.DefaultWorkingSide).MNISTDistance()
	if d.Distance < 2 {
		t.Errorf("a photo: %+v, want a distance of at least 2", d)
	}
	t.Logf("a photo: border %.1f %%, in-between tones %.1f %%, distance %.1f", 100*d.Border, 100*d.Tones, d.Distance)

	blank := image.NewGray(image.Rect(0, 0, 40, 40))
	if d := inference.NewPicture(blank, 0).MNISTDistance(); d != (inference.MNISTDistance{}) {
		t.Errorf("a blank image: %+v, want zeros (the preprocessing refuses it)", d)
	}
}

// BenchmarkMNISTDistance measures the classify page's extra work per input: a
// 280×280 drawing and a photo at the working size (1024×768).
func BenchmarkMNISTDistance(b *testing.B) {
	for _, size := range []image.Point{{280, 280}, {1024, 768}} {
		img := image.NewGray(image.Rect(0, 0, size.X, size.Y))
		for i := range img.Pix {
			img.Pix[i] = uint8(i * 7)
		}
		pic := inference.NewPicture(img, inference.DefaultWorkingSide)
		b.Run(fmt.Sprintf("%dx%d", size.X, size.Y), func(b *testing.B) {
			for b.Loop() {
				pic.MNISTDistance()
			}
		})
	}
}
