package engine

import (
	"context"
	"gibbon/inference"
	"strings"
	"testing"
)

// recordNet keeps what it was fed and answers zeros.
type recordNet struct{ got *inference.Tensor }

func (r *recordNet) Predict(_ context.Context, x *inference.Tensor) (*inference.Tensor, error) {
	r.got = x.Clone()
	return inference.NewTensor(x.Shape[0], 3), nil
}

// A watcher of another layout and range gets the attack's image exactly (it lies
// on the 8-bit grid); one of another resolution gets it resized, not cropped.
func TestConvertedNetFeedsTheSameImage(t *testing.T) {
	from := inference.InputContract{Layout: "NCHW", Channels: 3, Height: 4, Width: 4, Color: "RGB", Range: [2]float64{0, 1},
		Resize: "crop", CropPct: 0.875, Interp: "bicubic"}
	x := inference.NewTensor(2, 3, 4, 4)
	for i := range x.Data {
		x.Data[i] = float32((i*37)%256) / 255
	}
	to := inference.InputContract{Layout: "NHWC", Channels: 3, Height: 4, Width: 4, Color: "BGR", Range: [2]float64{0, 255},
		Mean: []float64{127, 127, 127}, Std: []float64{128, 128, 128}, Resize: "crop", CropPct: 0.875}
	rec := &recordNet{}
	cv, err := newConverted(rec, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cv.Predict(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	if got := rec.got.Shape; len(got) != 4 || got[0] != 2 || got[1] != 4 || got[2] != 4 || got[3] != 3 {
		t.Fatalf("fed shape %v, want [2 4 4 3]", got)
	}
	for n := range 2 {
		for c := range 3 {
			for p := range 16 {
				want := x.Data[n*48+c*16+p] * 255
				got := rec.got.Data[n*48+p*3+(2-c)] // BGR, channels last, 0-255, no mean/std (folded into the net)
				if got != float32(int(want+0.5)) {
					t.Fatalf("image %d channel %d pixel %d: fed %g, want %g", n, c, p, got, want)
				}
			}
		}
	}
	if d := cv.describe(); !strings.Contains(d, "same 4×4 image") || !strings.Contains(d, "NHWC on [0,255]") {
		t.Fatalf("describe: %q", d)
	}

	big := to
	big.Height, big.Width, big.Layout, big.Color = 6, 6, "NCHW", "RGB"
	cv, err = newConverted(rec, from, big)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cv.Predict(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	if got := rec.got.Shape; got[0] != 2 || got[1] != 3 || got[2] != 6 || got[3] != 6 {
		t.Fatalf("fed shape %v, want [2 3 6 6]", got)
	}
	if d := cv.describe(); !strings.Contains(d, "resized to 6×6 (bilinear)") {
		t.Fatalf("describe: %q", d)
	}
	// A flat image stays flat: resizing, not cropping to a corner or padding.
	flat := inference.NewTensor(1, 3, 4, 4)
	for i := range flat.Data {
		flat.Data[i] = 100.0 / 255
	}
	if _, err := cv.Predict(context.Background(), flat); err != nil {
		t.Fatal(err)
	}
	for i, v := range rec.got.Data {
		if v < 99.99 || v > 100.01 {
			t.Fatalf("value %d of the resized flat image is %g, want 100", i, v)
		}
	}

	gray := from
	gray.Channels, gray.Color = 1, "gray"
	if _, err := newConverted(rec, from, gray); err == nil || !strings.Contains(err.Error(), "gray images") {
		t.Fatalf("gray watcher of a colour attack: %v", err)
	}
	if _, err := cv.Predict(context.Background(), inference.NewTensor(1, 3, 5, 5)); err == nil {
		t.Fatal("images of the wrong size were converted")
	}
}
