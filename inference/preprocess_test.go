package inference

import (
	"errors"
	"image"
	"image/color"
	"image/draw"
	"math"
	"strings"
	"testing"
)

var mnistContract = InputContract{Name: "image", Layout: "NCHW", Channels: 1, Height: 28, Width: 28,
	Color: "gray", Range: [2]float64{0, 1}, Resize: "mnist"}

// canvas is a w×h image filled with bg.
func canvas(w, h int, bg color.Color) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(bg), image.Point{}, draw.Src)
	return img
}

func fillRect(img draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// inkStats measures a 28×28 MNIST-style tensor: bounding box of non-zero values
// and centre of mass (continuous coordinates).
func inkStats(t *testing.T, x *Tensor) (bw, bh int, cx, cy float64) {
	t.Helper()
	p := plane{w: 28, h: 28, px: x.Data}
	x0, y0, x1, y1 := inkBounds(p)
	cx, cy = centreOfMass(p)
	return x1 - x0, y1 - y0, cx, cy
}

func hasStep(steps []string, word string) bool {
	for _, s := range steps {
		if strings.Contains(s, word) {
			return true
		}
	}
	return false
}

func TestMNISTCentresDarkDigitOnLightPaper(t *testing.T) {
	// A tall black bar with a foot (an "L"), off-centre on a white page.
	img := canvas(300, 200, color.White)
	fillRect(img, image.Rect(30, 20, 60, 140), color.Black)
	fillRect(img, image.Rect(30, 120, 90, 140), color.Black)
	pre, err := Preprocess(img, mnistContract)
	if err != nil {
		t.Fatal(err)
	}
	if got := pre.Tensor.Shape; len(got) != 4 || got[0] != 1 || got[1] != 1 || got[2] != 28 || got[3] != 28 {
		t.Fatalf("shape %v", got)
	}
	if !hasStep(pre.Steps, "inverted") || !hasStep(pre.Steps, "cropped to the digit: 60×120") ||
		!hasStep(pre.Steps, "scaled to 10×20") || !hasStep(pre.Steps, "centre of mass") {
		t.Fatalf("steps %q", pre.Steps)
	}
	bw, bh, cx, cy := inkStats(t, pre.Tensor)
	if bh != 20 || bw != 10 {
		t.Fatalf("digit box %d×%d, want 10×20 (aspect 1:2 kept, longer side 20)", bw, bh)
	}
	if math.Abs(cx-14) > 0.5 || math.Abs(cy-14) > 0.5 {
		t.Fatalf("centre of mass (%.2f, %.2f), want within 0.5 px of (14, 14)", cx, cy)
	}
	if pre.Tensor.Data[0] != 0 || pre.Tensor.Data[28*28-1] != 0 {
		t.Fatal("background is not 0 after inversion")
	}
	var peak float32
	for _, v := range pre.Tensor.Data {
		peak = max(peak, v)
	}
	if peak < 0.99 {
		t.Fatalf("strokes reach %.2f, want 1 (white on black, as in MNIST)", peak)
	}
}

func TestMNISTKeepsLightDigitOnDarkAndWideAspect(t *testing.T) {
	img := canvas(100, 100, color.Black)
	fillRect(img, image.Rect(10, 40, 90, 60), color.White) // 80×20: wide
	pre, err := Preprocess(img, mnistContract)
	if err != nil {
		t.Fatal(err)
	}
	if hasStep(pre.Steps, "inverted") {
		t.Fatalf("light-on-dark image was inverted: %q", pre.Steps)
	}
	bw, bh, cx, cy := inkStats(t, pre.Tensor)
	if bw != 20 || bh != 5 {
		t.Fatalf("digit box %d×%d, want 20×5", bw, bh)
	}
	if math.Abs(cx-14) > 0.5 || math.Abs(cy-14) > 0.5 {
		t.Fatalf("centre of mass (%.2f, %.2f)", cx, cy)
	}
}

func TestMNISTCentreOfMassNotBoxCentre(t *testing.T) {
	// A heavy block with a thin tail: the box centre and the mass centre differ, and
	// MNIST centres the mass.
	img := canvas(200, 200, color.White)
	fillRect(img, image.Rect(20, 20, 120, 120), color.Black)
	fillRect(img, image.Rect(110, 110, 180, 180), color.Black)
	fillRect(img, image.Rect(120, 120, 180, 180), color.White)
	pre, err := Preprocess(img, mnistContract)
	if err != nil {
		t.Fatal(err)
	}
	_, _, cx, cy := inkStats(t, pre.Tensor)
	if math.Abs(cx-14) > 0.5 || math.Abs(cy-14) > 0.5 {
		t.Fatalf("centre of mass (%.2f, %.2f), want (14, 14)", cx, cy)
	}
	p := plane{w: 28, h: 28, px: pre.Tensor.Data}
	x0, y0, x1, y1 := inkBounds(p)
	if bx, by := float64(x0+x1)/2, float64(y0+y1)/2; math.Abs(bx-14) < 1 && math.Abs(by-14) < 1 {
		t.Fatalf("box centre (%.1f, %.1f) is also at the middle: the test shape does not separate the two", bx, by)
	}
}

func TestMNISTFormatImageIsUsedAsIs(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 28, 28))
	for y := 6; y < 22; y++ {
		for x := 11; x < 15; x++ {
			img.SetGray(x, y, color.Gray{Y: uint8(100 + 7*y)})
		}
	}
	pre, err := Preprocess(img, mnistContract)
	if err != nil {
		t.Fatal(err)
	}
	if !hasStep(pre.Steps, "used as it is") {
		t.Fatalf("steps %q", pre.Steps)
	}
	for i, v := range pre.Tensor.Data {
		if want := float32(img.Pix[i]) / 255; math.Abs(float64(v-want)) > 1e-6 {
			t.Fatalf("pixel %d = %v, want %v", i, v, want)
		}
	}
}

func TestMNISTRefusesBlankImages(t *testing.T) {
	faint := canvas(50, 50, color.White)
	fillRect(faint, image.Rect(20, 20, 30, 30), color.Gray{Y: 245})
	for name, img := range map[string]image.Image{
		"white":      canvas(50, 50, color.White),
		"black":      canvas(50, 50, color.Black),
		"faint mark": faint,
		"28x28 dark": image.NewGray(image.Rect(0, 0, 28, 28)),
	} {
		_, err := Preprocess(img, mnistContract)
		if !errors.Is(err, ErrBlankImage) {
			t.Errorf("%s: err = %v, want ErrBlankImage", name, err)
		}
	}
}

func TestTransparentAreasAreWhite(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 60, 60)) // fully transparent
	fillRect(img, image.Rect(25, 10, 35, 50), color.NRGBA{0, 0, 0, 255})
	pre, err := Preprocess(img, mnistContract)
	if err != nil {
		t.Fatal(err)
	}
	if !hasStep(pre.Steps, "inverted") {
		t.Fatalf("black strokes on a transparent background should read as dark on light: %q", pre.Steps)
	}
}

func TestColourToGrayUsesLuma(t *testing.T) {
	img := canvas(4, 4, color.NRGBA{255, 0, 0, 255})
	c := InputContract{Layout: "NCHW", Channels: 1, Height: 4, Width: 4, Color: "gray", Range: [2]float64{0, 1}, Resize: "stretch"}
	pre, err := Preprocess(img, c)
	if err != nil {
		t.Fatal(err)
	}
	if !hasStep(pre.Steps, "colour → gray") {
		t.Fatalf("steps %q", pre.Steps)
	}
	for _, v := range pre.Tensor.Data {
		if math.Abs(float64(v)-0.299) > 1e-6 {
			t.Fatalf("red became %v, want luma 0.299", v)
		}
	}
}

func TestGrayToRGBAndChannelOrder(t *testing.T) {
	gray := canvas(8, 8, color.Gray{Y: 51})
	rgb := InputContract{Layout: "NHWC", Channels: 3, Height: 8, Width: 8, Color: "RGB", Range: [2]float64{0, 1}, Resize: "stretch"}
	pre, err := Preprocess(gray, rgb)
	if err != nil {
		t.Fatal(err)
	}
	if got := pre.Tensor.Shape; got[3] != 3 || got[1] != 8 {
		t.Fatalf("NHWC shape %v", got)
	}
	for _, v := range pre.Tensor.Data {
		if math.Abs(float64(v)-0.2) > 1e-6 {
			t.Fatalf("gray 0.2 fed as %v", v)
		}
	}

	colour := canvas(8, 8, color.NRGBA{255, 0, 51, 255})
	bgr := rgb
	bgr.Layout, bgr.Color = "NCHW", "BGR"
	pre, err = Preprocess(colour, bgr)
	if err != nil {
		t.Fatal(err)
	}
	if b, g, r := pre.Tensor.Data[0], pre.Tensor.Data[64], pre.Tensor.Data[128]; math.Abs(float64(b)-0.2) > 1e-6 || g != 0 || r != 1 {
		t.Fatalf("BGR channels (%v, %v, %v), want (0.2, 0, 1)", b, g, r)
	}
	if !hasStep(pre.Steps, "BGR") {
		t.Fatalf("steps %q", pre.Steps)
	}
}

func TestRangeMeanStdAndTensorImageRoundTrip(t *testing.T) {
	img := canvas(6, 6, color.NRGBA{255, 128, 0, 255})
	fillRect(img, image.Rect(0, 0, 3, 6), color.NRGBA{10, 200, 90, 255})
	c := InputContract{Layout: "NCHW", Channels: 3, Height: 6, Width: 6, Color: "RGB", Range: [2]float64{0, 255},
		Mean: []float64{123.675, 116.28, 103.53}, Std: []float64{58.395, 57.12, 57.375}, Resize: "stretch"}
	pre, err := Preprocess(img, c)
	if err != nil {
		t.Fatal(err)
	}
	// Pixel (5,0) is (255,128,0): R channel → (255 − 123.675) / 58.395.
	if got, want := pre.Tensor.Data[5], float32((255-123.675)/58.395); math.Abs(float64(got-want)) > 1e-4 {
		t.Fatalf("R at (5,0) = %v, want %v", got, want)
	}
	back, err := TensorImage(pre.Tensor, c)
	if err != nil {
		t.Fatal(err)
	}
	for y := range 6 {
		for x := range 6 {
			r1, g1, b1, _ := img.At(x, y).RGBA()
			r2, g2, b2, _ := back.At(x, y).RGBA()
			if r1>>8 != r2>>8 || g1>>8 != g2>>8 || b1>>8 != b2>>8 {
				t.Fatalf("pixel (%d,%d): %v came back as %v", x, y, img.At(x, y), back.At(x, y))
			}
		}
	}
	if !hasStep(pre.Steps, "[0, 255]") || !hasStep(pre.Steps, "mean (123.675") {
		t.Fatalf("steps %q", pre.Steps)
	}
}

func TestCropTakesTheCentreAndStretchDoesNot(t *testing.T) {
	// Thirds: red | green | blue.
	img := canvas(300, 100, color.NRGBA{0, 255, 0, 255})
	fillRect(img, image.Rect(0, 0, 100, 100), color.NRGBA{255, 0, 0, 255})
	fillRect(img, image.Rect(200, 0, 300, 100), color.NRGBA{0, 0, 255, 255})
	c := InputContract{Layout: "NCHW", Channels: 3, Height: 10, Width: 10, Color: "RGB", Range: [2]float64{0, 1}, Resize: "crop", CropPct: 1}
	pre, err := Preprocess(img, c)
	if err != nil {
		t.Fatal(err)
	}
	// The outermost columns blend with their neighbours (area averaging); the rest
	// must be the middle third only.
	for i := range 100 {
		if x := i % 10; x == 0 || x == 9 {
			continue
		}
		if r, g, b := pre.Tensor.Data[i], pre.Tensor.Data[100+i], pre.Tensor.Data[200+i]; r > 0.01 || g < 0.99 || b > 0.01 {
			t.Fatalf("crop pixel %d = (%v,%v,%v), want pure green", i, r, g, b)
		}
	}
	c.Resize = "stretch"
	pre, err = Preprocess(img, c)
	if err != nil {
		t.Fatal(err)
	}
	if r, b := pre.Tensor.Data[0], pre.Tensor.Data[200+9]; r < 0.99 || b < 0.99 {
		t.Fatalf("stretch: left pixel red %v, right pixel blue %v; want the whole width kept", r, b)
	}

	// crop_pct 0.5: the centre half is used, scaled up.
	c.Resize, c.CropPct = "crop", 0.5
	pre, err = Preprocess(canvas(40, 40, color.White), c)
	if err != nil || !hasStep(pre.Steps, "scaled to 20×20") || !hasStep(pre.Steps, "centre 10×10") {
		t.Fatalf("crop_pct 0.5: %v %q", err, pre.Steps)
	}
}

func TestDownscaleAveragesArea(t *testing.T) {
	// A one-pixel checkerboard shrunk 10× must come out mid-gray, not aliased.
	p := newPlane(100, 100)
	for y := range 100 {
		for x := range 100 {
			if (x+y)%2 == 0 {
				p.px[y*100+x] = 1
			}
		}
	}
	for _, k := range []kernel{kernelBilinear, kernelBicubic} {
		out := resample(p, 10, 10, k)
		for i, v := range out.px {
			if math.Abs(float64(v)-0.5) > 0.03 {
				t.Fatalf("pixel %d = %v, want about 0.5", i, v)
			}
		}
	}
	same := resample(p, 100, 100, kernelBicubic)
	for i := range p.px {
		if same.px[i] != p.px[i] {
			t.Fatal("resampling to the same size changed the image")
		}
	}
}

func TestLargePictureIsScaledDownOnce(t *testing.T) {
	img := canvas(4000, 1000, color.White)
	p := NewPicture(img, 1024)
	if p.W != 1024 || p.H != 256 || p.SrcW != 4000 || p.SrcH != 1000 {
		t.Fatalf("picture %d×%d from %d×%d", p.W, p.H, p.SrcW, p.SrcH)
	}
	if th := p.Thumbnail(100).Bounds(); th.Dx() != 100 || th.Dy() != 25 {
		t.Fatalf("thumbnail %v", th)
	}
}

func TestContractCheck(t *testing.T) {
	good := mnistContract
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*InputContract){
		"layout":     func(c *InputContract) { c.Layout = "CHW" },
		"channels":   func(c *InputContract) { c.Channels = 2 },
		"gray rgb":   func(c *InputContract) { c.Color = "RGB" },
		"rgb gray":   func(c *InputContract) { c.Channels, c.Color = 3, "gray" },
		"size":       func(c *InputContract) { c.Width = 0 },
		"huge":       func(c *InputContract) { c.Height = 100000 },
		"range":      func(c *InputContract) { c.Range = [2]float64{1, 1} },
		"mean":       func(c *InputContract) { c.Mean = []float64{0.5, 0.5} },
		"std zero":   func(c *InputContract) { c.Std = []float64{0} },
		"resize":     func(c *InputContract) { c.Resize = "fit" },
		"crop pct":   func(c *InputContract) { c.Resize, c.CropPct = "crop", 1.5 },
		"interp":     func(c *InputContract) { c.Interp = "lanczos" },
		"std length": func(c *InputContract) { c.Std = []float64{1, 2, 3} },
	} {
		c := good
		edit(&c)
		if err := c.Check(); !errors.Is(err, ErrBadContract) {
			t.Errorf("%s: Check() = %v, want ErrBadContract", name, err)
		}
		if _, err := Preprocess(canvas(28, 28, color.White), c); !errors.Is(err, ErrBadContract) {
			t.Errorf("%s: Preprocess err = %v, want ErrBadContract", name, err)
		}
	}
}

func TestTensorImageRejectsWrongSize(t *testing.T) {
	if _, err := TensorImage(NewTensor(1, 1, 27, 28), mnistContract); err == nil {
		t.Fatal("a 27×28 tensor was accepted for a 28×28 contract")
	}
	if _, err := TensorImage(&Tensor{Shape: []int64{1, 784}, Data: make([]float32, 10)}, mnistContract); err == nil {
		t.Fatal("an inconsistent tensor was accepted")
	}
}

// Bicubic is Keys' cubic with a = −0.5 (PIL's and torchvision's), with the taps
// that fall outside the image dropped and the rest renormalised, as PIL does:
// doubling a step edge [0 0 1 1] gives these values, with the undershoot and
// overshoot bilinear does not have.
func TestBicubicUpscalesAStepEdge(t *testing.T) {
	p := plane{w: 4, h: 1, px: []float32{0, 0, 1, 1}}
	cubic := resample(p, 8, 1, kernelBicubic)
	// Pixel 3's centre lies at 1.75 source pixels: taps at distances 1.25, 0.25,
	// 0.75, 1.75 weigh −0.0703125, 0.8671875, 0.2265625, −0.0234375 (sum 1).
	// Pixel 2's at 1.25: taps 0.75, 0.25, 1.25 (the fourth is past the support)
	// weigh 0.2265625, 0.8671875, −0.0703125, sum 1.0234375.
	want := []float64{0, cubicAt(1, p.px), -0.0703125 / 1.0234375, 0.203125, 0.796875, 1 + 0.0703125/1.0234375, cubicAt(6, p.px), 1}
	for i, w := range want {
		if math.Abs(float64(cubic.px[i])-w) > 1e-6 {
			t.Fatalf("bicubic pixel %d = %.7f, want %.7f (all: %v)", i, cubic.px[i], w, cubic.px)
		}
	}
	if cubic.px[2] >= 0 || cubic.px[5] <= 1 {
		t.Fatalf("bicubic should ring at the edge: %v", cubic.px)
	}
	lin := resample(p, 8, 1, kernelBilinear)
	if math.Abs(float64(lin.px[3])-0.25) > 1e-6 || lin.px[2] != 0 {
		t.Fatalf("bilinear: %v", lin.px)
	}

	// The contract's interp picks the kernel: the pixel beside the edge is
	// 0.203125 (52/255) bicubic, 0.25 (64/255) bilinear; the undershoot is clamped.
	img := canvas(4, 4, color.White)
	fillRect(img, image.Rect(0, 0, 2, 4), color.Black)
	c := InputContract{Layout: "NCHW", Channels: 1, Height: 8, Width: 8, Color: "gray", Range: [2]float64{0, 255}, Resize: "stretch", Interp: "bicubic"}
	pre, err := Preprocess(img, c)
	if err != nil {
		t.Fatal(err)
	}
	if got := pre.Tensor.Data[3]; math.Abs(float64(got)-0.203125*255) > 1e-3 || pre.Tensor.Data[2] != 0 {
		t.Fatalf("bicubic contract: row %v", pre.Tensor.Data[:8])
	}
	c.Interp = ""
	if pre, err = Preprocess(img, c); err != nil || math.Abs(float64(pre.Tensor.Data[3])-0.25*255) > 1e-3 {
		t.Fatalf("default (bilinear) contract: %v %v", err, pre.Tensor.Data[:8])
	}
}

// cubicAt is one destination pixel of doubling src with Keys' cubic (a = −0.5),
// written out from the definition: taps within 2 source pixels, renormalised.
func cubicAt(i int, src []float32) float64 {
	k := func(t float64) float64 {
		t = math.Abs(t)
		switch {
		case t < 1:
			return 1.5*t*t*t - 2.5*t*t + 1
		case t < 2:
			return -0.5*t*t*t + 2.5*t*t - 4*t + 2
		}
		return 0
	}
	c := (float64(i) + 0.5) / 2
	var sum, wsum float64
	for j := range src {
		w := k(float64(j) + 0.5 - c)
		sum += w * float64(src[j])
		wsum += w
	}
	return sum / wsum
}

// The centre crop sizes what timm and torchvision evaluate with: the shorter side
// to floor(size / crop_pct), the longer one truncated in proportion, the crop
// placed with Python's rounding.
func TestCropScalesLikeTorchvision(t *testing.T) {
	for _, tc := range []struct {
		w, h, side int
		pct        float64
		rw, rh     int
	}{
		{320, 240, 224, 0.875, 341, 256}, // Resize(256): 256·320/240 = 341.3
		{240, 320, 224, 0.875, 256, 341},
		{320, 240, 299, 0.875, 454, 341}, // floor(299/0.875) = 341; 341·4/3 = 454.7
		{500, 375, 224, 0.9, 330, 248},   // timm crop_pct 0.9: floor(248.9) = 248
		{224, 224, 224, 1, 224, 224},
		{100, 50, 224, 0.875, 512, 256}, // small images are scaled up
	} {
		rw, rh := cropScale(tc.w, tc.h, tc.side, tc.side, tc.pct)
		if rw != tc.rw || rh != tc.rh {
			t.Errorf("%d×%d for %d at crop_pct %g: scaled to %d×%d, want %d×%d", tc.w, tc.h, tc.side, tc.pct, rw, rh, tc.rw, tc.rh)
		}
	}
	// 454 − 299 = 155: Python's round(77.5) is 78, so the crop starts at column 78.
	img := canvas(320, 240, color.White)
	c := InputContract{Layout: "NCHW", Channels: 3, Height: 299, Width: 299, Color: "RGB", Resize: "crop", CropPct: 0.875, Interp: "bicubic"}
	pre, err := Preprocess(img, c)
	if err != nil || !hasStep(pre.Steps, "scaled to 454×341 px") || !hasStep(pre.Steps, "centre 299×299 px cropped") {
		t.Fatalf("%v %q", err, pre.Steps)
	}
}
