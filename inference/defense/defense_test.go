package defense_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

// gray returns a [1,1,h,w] tensor from rows of values.
func gray(rows ...[]float32) *inference.Tensor {
	h, w := len(rows), len(rows[0])
	x := inference.NewTensor(1, 1, int64(h), int64(w))
	for y, r := range rows {
		copy(x.Data[y*w:], r)
	}
	return x
}

func noise(seed uint64, shape ...int64) *inference.Tensor {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := inference.NewTensor(shape...)
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	return x
}

// toNHWC permutes a [N,C,H,W] tensor to [N,H,W,C].
func toNHWC(x *inference.Tensor) *inference.Tensor {
	n, c, h, w := int(x.Shape[0]), int(x.Shape[1]), int(x.Shape[2]), int(x.Shape[3])
	y := inference.NewTensor(int64(n), int64(h), int64(w), int64(c))
	for i := range n {
		for ch := range c {
			for p := range h * w {
				y.Data[(i*h*w+p)*c+ch] = x.Data[(i*c+ch)*h*w+p]
			}
		}
	}
	return y
}

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

func meanAbsDiff(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += math.Abs(float64(a[i]) - float64(b[i]))
	}
	return s / float64(len(a))
}

func apply(t *testing.T, tr defense.Transform, x *inference.Tensor, f defense.Format, seed uint64) *inference.Tensor {
	t.Helper()
	before := append([]float32(nil), x.Data...)
	y, err := tr.Apply(x, f, rand.New(rand.NewPCG(seed, 2)))
	if err != nil {
		t.Fatalf("%s: %v", tr.Name(), err)
	}
	if maxAbsDiff(before, x.Data) != 0 {
		t.Fatalf("%s changed its input", tr.Name())
	}
	if len(y.Shape) != len(x.Shape) || len(y.Data) != len(x.Data) {
		t.Fatalf("%s: output shape %v, input %v", tr.Name(), y.Shape, x.Shape)
	}
	return y
}

func TestBitDepthRoundsToLevels(t *testing.T) {
	x := gray([]float32{0, 0.1, 0.3, 0.49, 0.51, 0.7, 0.9, 1})
	y := apply(t, defense.BitDepth{Bits: 1}, x, defense.Format{}, 0)
	want := []float32{0, 0, 0, 0, 1, 1, 1, 1}
	if maxAbsDiff(y.Data, want) != 0 {
		t.Fatalf("1 bit: got %v, want %v", y.Data, want)
	}
	y = apply(t, defense.BitDepth{Bits: 2}, x, defense.Format{}, 0)
	for i, v := range y.Data {
		k := float64(v) * 3
		if math.Abs(k-math.Round(k)) > 1e-6 || math.Abs(float64(v-x.Data[i])) > 1.0/6+1e-6 {
			t.Fatalf("2 bits: %g → %g is not the nearest of 4 levels", x.Data[i], v)
		}
	}
	// On [0,255] the levels are spread over the range.
	x255 := gray([]float32{0, 100, 140, 255})
	y = apply(t, defense.BitDepth{Bits: 1}, x255, defense.Format{Range: [2]float32{0, 255}}, 0)
	if maxAbsDiff(y.Data, []float32{0, 0, 255, 255}) > 1e-4 {
		t.Fatalf("1 bit on [0,255]: got %v", y.Data)
	}
}

func TestMedianRemovesSpeckleAndKeepsStrokes(t *testing.T) {
	x := inference.NewTensor(1, 1, 9, 9)
	x.Data[2*9+2] = 1 // an isolated bright pixel
	for y := range 9 {
		for c := 5; c < 8; c++ {
			x.Data[y*9+c] = 1 // a 3-px wide vertical stroke
		}
	}
	y := apply(t, defense.Median{Size: 3}, x, defense.Format{}, 0)
	if y.Data[2*9+2] != 0 {
		t.Fatal("3×3 median kept an isolated pixel")
	}
	for r := range 9 {
		if y.Data[r*9+6] != 1 {
			t.Fatalf("3×3 median removed the stroke's centre at row %d", r)
		}
	}
	// 2×2: the window is the pixel, its left, upper and upper-left neighbours
	// (mirrored at the border), and the upper median of the four.
	x = gray([]float32{0, 1, 0}, []float32{1, 1, 0}, []float32{0, 0, 0})
	y = apply(t, defense.Median{Size: 2}, x, defense.Format{}, 0)
	want := []float32{0, 1, 1, 1, 1, 1, 1, 1, 0}
	if maxAbsDiff(y.Data, want) != 0 {
		t.Fatalf("2×2 median: got %v, want %v", y.Data, want)
	}
}

func TestJPEGQualityControlsTheChange(t *testing.T) {
	// A smooth gradient survives quality 100 almost unchanged; noise at quality 5 does not.
	smooth := inference.NewTensor(1, 1, 16, 16)
	for i := range smooth.Data {
		smooth.Data[i] = float32(i%16) / 15
	}
	y := apply(t, defense.JPEG{Quality: 100}, smooth, defense.Format{}, 0)
	if d := maxAbsDiff(y.Data, smooth.Data); d > 3.0/255 {
		t.Fatalf("JPEG q100 moved a smooth gradient by %g", d)
	}
	x := noise(1, 1, 3, 16, 16)
	y = apply(t, defense.JPEG{Quality: 5}, x, defense.Format{}, 0)
	if d := meanAbsDiff(y.Data, x.Data); d < 0.05 {
		t.Fatalf("JPEG q5 changed noise by only %g on average", d)
	}
	for _, v := range y.Data {
		if v < 0 || v > 1 || math.Abs(float64(v)*255-math.Round(float64(v)*255)) > 1e-4 {
			t.Fatalf("JPEG output %g is not an 8-bit value in [0,1]", v)
		}
	}
}

func TestLayoutsGiveTheSameImages(t *testing.T) {
	x := noise(2, 2, 3, 12, 10)
	for _, tr := range []defense.Transform{defense.JPEG{Quality: 50}, defense.Median{Size: 3}, defense.BitDepth{Bits: 3},
		defense.ResizePad{MinScale: 0.6}} {
		a := apply(t, tr, x, defense.Format{Layout: "NCHW"}, 7)
		b := apply(t, tr, toNHWC(x), defense.Format{Layout: "NHWC"}, 7)
		if d := maxAbsDiff(toNHWC(a).Data, b.Data); d > 1e-6 {
			t.Errorf("%s: NCHW and NHWC results differ by %g", tr.Name(), d)
		}
	}
}

func TestJPEGHonoursBGR(t *testing.T) {
	x := noise(3, 1, 3, 16, 16)
	rgb := apply(t, defense.JPEG{Quality: 30}, x, defense.Format{Color: "RGB"}, 0)
	// The same picture stored BGR must come back as the BGR of the RGB result.
	swap := func(t *inference.Tensor) *inference.Tensor {
		y := t.Clone()
		hw := 16 * 16
		copy(y.Data[:hw], t.Data[2*hw:])
		copy(y.Data[2*hw:], t.Data[:hw])
		return y
	}
	bgr := apply(t, defense.JPEG{Quality: 30}, swap(x), defense.Format{Color: "BGR"}, 0)
	if d := maxAbsDiff(swap(rgb).Data, bgr.Data); d != 0 {
		t.Fatalf("BGR JPEG differs from RGB JPEG by %g", d)
	}
	// Treating BGR data as RGB mixes the chroma differently.
	wrong := apply(t, defense.JPEG{Quality: 30}, swap(x), defense.Format{Color: "RGB"}, 0)
	if maxAbsDiff(wrong.Data, bgr.Data) == 0 {
		t.Fatal("the colour order made no difference to JPEG")
	}
}

func TestResizePadIsRandomAndKeepsTheRange(t *testing.T) {
	x := noise(4, 1, 1, 28, 28)
	for i := range x.Data {
		x.Data[i] = 0.25 + 0.75*x.Data[i] // no zeros in the image: padding is recognisable
	}
	tr := defense.ResizePad{MinScale: 0.7}
	a := apply(t, tr, x, defense.Format{}, 1)
	if d := maxAbsDiff(a.Data, apply(t, tr, x, defense.Format{}, 1).Data); d != 0 {
		t.Fatal("the same seed gave different draws")
	}
	differ := false
	for seed := uint64(2); seed < 8 && !differ; seed++ {
		differ = maxAbsDiff(a.Data, apply(t, tr, x, defense.Format{}, seed).Data) > 0
	}
	if !differ {
		t.Fatal("six seeds gave the same draw")
	}
	values := map[float32]bool{0: true}
	for _, v := range x.Data {
		values[v] = true
	}
	pad, kept := 0, 0
	for _, v := range a.Data {
		if !values[v] {
			t.Fatalf("value %g is neither an input pixel nor padding (nearest neighbour keeps values)", v)
		}
		if v == 0 {
			pad++
		} else {
			kept++
		}
	}
	if minKept := int(math.Pow(math.Ceil(0.7*28), 2)); kept < minKept || pad > 28*28-minKept {
		t.Fatalf("%d pixels kept, %d padded: the image was shrunk below 70%%", kept, pad)
	}
	if id := apply(t, defense.ResizePad{MinScale: 1}, x, defense.Format{}, 3); maxAbsDiff(id.Data, x.Data) != 0 {
		t.Fatal("a smallest size of 100% must leave the image as it is")
	}
}

func TestBadInputsAreErrors(t *testing.T) {
	cases := []struct {
		name string
		err  func() error
		want string
	}{
		{"unknown kind", func() error { _, err := defense.NewTransform("blur", 3); return err }, "unknown defence"},
		{"quality 0", func() error { _, err := defense.NewTransform("jpeg", 0); return err }, "between 1 and 100"},
		{"bits 8", func() error { _, err := defense.NewTransform("bits", 8); return err }, "between 1 and 7"},
		{"median 1", func() error { _, err := defense.NewTransform("median", 1); return err }, "between 2 and 7"},
		{"scale 100", func() error { _, err := defense.NewTransform("resize-pad", 100); return err }, "between 50 and 99"},
		{"rank 3", func() error {
			_, err := defense.BitDepth{Bits: 2}.Apply(inference.NewTensor(1, 4, 4), defense.Format{}, nil)
			return err
		}, "want a batch of images"},
		{"bad layout", func() error {
			_, err := defense.BitDepth{Bits: 2}.Apply(inference.NewTensor(1, 1, 4, 4), defense.Format{Layout: "NCWH"}, nil)
			return err
		}, "want NCHW or NHWC"},
		{"empty range", func() error {
			_, err := defense.BitDepth{Bits: 2}.Apply(inference.NewTensor(1, 1, 4, 4), defense.Format{Range: [2]float32{1, 1}}, nil)
			return err
		}, "is empty"},
		{"data short", func() error {
			_, err := defense.Median{Size: 3}.Apply(&inference.Tensor{Shape: []int64{1, 1, 4, 4}, Data: make([]float32, 3)}, defense.Format{}, nil)
			return err
		}, "holds 16 values"},
		{"no rng", func() error {
			_, err := defense.ResizePad{MinScale: 0.9}.Apply(inference.NewTensor(1, 1, 4, 4), defense.Format{}, nil)
			return err
		}, "random source"},
	}
	for _, c := range cases {
		err := c.err()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error saying %q", c.name, err, c.want)
		}
	}
	for _, k := range defense.Kinds {
		tr, err := defense.NewTransform(k.ID, k.Default)
		if err != nil || tr.Name() == "" {
			t.Errorf("kind %s with its default %d: %v", k.ID, k.Default, err)
		}
	}
}

// meanModel returns logits [mean, −mean] of an 8×8 gray image.
func meanModel() []byte {
	b := onnx.NewBuilder("mean")
	x := b.Input("image", -1, 1, 8, 8)
	w := make([]float32, 64*2)
	for i := range 64 {
		w[2*i], w[2*i+1] = 1.0/64, -1.0/64
	}
	y := b.Op("MatMul", []string{b.Op("Flatten", []string{x}), b.Init("W", []int64{64, 2}, w)})
	b.Output("logits", y, -1, 2)
	return b.Bytes()
}

func TestDefendedClassifiesTheTransformedImage(t *testing.T) {
	rt := testrt.Open(t)
	m, err := onnx.Decode(meanModel())
	if err != nil {
		t.Fatal(err)
	}
	net, err := attack.NewONNXModel(context.Background(), rt, m, attack.ModelOptions{Name: "mean"})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	x := inference.NewTensor(2, 1, 8, 8)
	for i := range 64 {
		x.Data[i] = 0.4    // 1 bit: all 0
		x.Data[64+i] = 0.6 // 1 bit: all 1
	}
	plain, err := net.Predict(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	d, err := defense.New(defense.BitDepth{Bits: 1}, net, defense.Format{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var _ attack.Classifier = d // a defended model goes wherever a classifier does
	got, err := d.Predict(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(plain.Data[0])-0.4) > 1e-5 || math.Abs(float64(plain.Data[2])-0.6) > 1e-5 {
		t.Fatalf("plain logits %v, want means 0.4 and 0.6", plain.Data)
	}
	if math.Abs(float64(got.Data[0])) > 1e-6 || math.Abs(float64(got.Data[2])-1) > 1e-6 {
		t.Fatalf("defended logits %v, want means 0 and 1 after 1-bit reduction", got.Data)
	}
	if d.Classes() != 2 || d.Name() != "1-bit" {
		t.Fatalf("Classes %d, Name %q", d.Classes(), d.Name())
	}
	// Errors of the transform say which defence failed.
	if _, err := d.Predict(context.Background(), inference.NewTensor(1, 64)); err == nil || !strings.Contains(err.Error(), "1-bit") {
		t.Fatalf("a bad tensor gave %v", err)
	}
}
