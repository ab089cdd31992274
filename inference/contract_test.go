package inference

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"gibbon/inference/mnist"
)

func TestSameTensorIgnoresMeanStdAndCase(t *testing.T) {
	mnist := InputContract{Name: "image", Layout: "NCHW", Channels: 1, Height: 28, Width: 28, Color: "gray", Range: [2]float64{0, 1}, Resize: "mnist"}
	same := mnist
	same.Name, same.Layout, same.Color, same.Resize = "x", "", "Gray", "MNIST"
	same.Mean, same.Std = []float64{0.1307}, []float64{0.3081}
	if !mnist.SameTensor(same) {
		t.Fatalf("%s and %s should make the same tensor", mnist.TensorKey(), same.TensorKey())
	}
	for name, change := range map[string]func(*InputContract){
		"layout": func(c *InputContract) { c.Layout = "NHWC" },
		"size":   func(c *InputContract) { c.Width = 32 },
		"range":  func(c *InputContract) { c.Range = [2]float64{0, 255} },
		"resize": func(c *InputContract) { c.Resize = "stretch" },
	} {
		other := mnist
		change(&other)
		if mnist.SameTensor(other) {
			t.Errorf("another %s (%s) should make another tensor", name, other.TensorKey())
		}
	}
}

func TestDescribeSaysWhatTheTensorTests(t *testing.T) {
	c := InputContract{Layout: "nhwc", Channels: 3, Height: 224, Width: 224, Color: "RGB", Range: [2]float64{0, 255}, Resize: "crop", CropPct: 0.875, Interp: "bicubic"}
	if got, want := c.Describe(), "224×224 RGB images on [0,255] (NHWC, crop 0.875 bicubic)"; got != want {
		t.Fatalf("Describe() = %q, want %q", got, want)
	}
	if got, want := (InputContract{Channels: 1, Height: 28, Width: 28, Color: "gray", Resize: "mnist"}).Describe(), "28×28 gray images on [0,1] (NCHW, resize mnist)"; got != want {
		t.Fatalf("Describe() = %q, want %q", got, want)
	}
}

func TestParseLayout(t *testing.T) {
	for in, want := range map[string]string{"": LayoutNCHW, "nchw": LayoutNCHW, "NHWC": LayoutNHWC, " nhwc": ""} {
		got, err := ParseLayout(in)
		if want == "" {
			if err == nil || !strings.Contains(err.Error(), "want NCHW or NHWC") {
				t.Errorf("ParseLayout(%q) = %q, %v; want an error", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseLayout(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// Normalize puts each value through its own channel's mean/std, in either layout.
func TestNormalizeFollowsTheLayout(t *testing.T) {
	mean, std := []float64{0.5, 0.25, 0}, []float64{0.5, 0.25, 2}
	for _, layout := range []string{"NCHW", "NHWC"} {
		c := InputContract{Layout: layout, Channels: 3, Height: 1, Width: 2, Mean: mean, Std: std}
		x := NewTensor(c.Shape()...)
		for i := range x.Data {
			x.Data[i] = 1
		}
		y := c.Normalize(x)
		want := []float64{1, 3, 0.5} // (1 − mean)/std per channel
		for i, v := range y.Data {
			ch := i / 2 // NCHW: channel planes of 2 pixels
			if layout == "NHWC" {
				ch = i % 3
			}
			if math.Abs(float64(v)-want[ch]) > 1e-6 {
				t.Fatalf("%s: element %d is %v, want %v (channel %d)", layout, i, v, want[ch], ch)
			}
		}
		if x.Data[0] != 1 {
			t.Fatalf("%s: Normalize changed its input", layout)
		}
	}
	plain := InputContract{Channels: 1, Height: 1, Width: 1}
	if x := NewTensor(1, 1, 1, 1); plain.Normalize(x) != x {
		t.Fatal("without mean/std Normalize should return its input")
	}
	one := InputContract{Channels: 3, Mean: []float64{0.5}}
	if m, s := one.MeanStd(2); m != 0.5 || s != 1 {
		t.Fatalf("a single mean applies to every channel: MeanStd(2) = %v, %v", m, s)
	}
}

func TestInvalidfMatchesErrInvalid(t *testing.T) {
	err := Invalidf("no model %q", "x")
	if !errors.Is(err, ErrInvalid) || err.Error() != `no model "x"` {
		t.Fatalf("Invalidf: %v (is ErrInvalid: %v)", err, errors.Is(err, ErrInvalid))
	}
	if errors.Is(errors.New("disk full"), ErrInvalid) {
		t.Fatal("other errors are not ErrInvalid")
	}
}

func TestMNISTTensorScalesToTheRange(t *testing.T) {
	set := &mnist.Set{Images: make([]float32, 3*mnist.Pixels), Labels: []uint8{7, 2, 1}}
	for i := range set.Images {
		set.Images[i] = float32(i/mnist.Pixels) / 2 // image k is all k/2
	}
	c := InputContract{Layout: "NHWC", Channels: 1, Height: 28, Width: 28, Color: "gray", Range: [2]float64{-1, 1}}
	x, labels, err := c.MNISTTensor(set, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x.Shape, []int64{2, 28, 28, 1}) || !slices.Equal(labels, []int{2, 1}) {
		t.Fatalf("shape %v, labels %v", x.Shape, labels)
	}
	if x.Data[0] != 0 || x.Data[mnist.Pixels] != 1 { // 0.5 and 1 on [-1,1]
		t.Fatalf("values %v and %v, want 0 and 1", x.Data[0], x.Data[mnist.Pixels])
	}
	if _, _, err := c.MNISTTensor(set, 2, 2); err == nil {
		t.Fatal("images past the set's end were given")
	}
	rgb := InputContract{Channels: 3, Height: 28, Width: 28, Color: "RGB"}
	if _, _, err := rgb.MNISTTensor(set, 0, 1); !errors.Is(err, ErrInvalid) || rgb.FitsMNIST() {
		t.Fatalf("an RGB model: %v", err)
	}
}
