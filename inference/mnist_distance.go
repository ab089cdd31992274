package inference

import "math"

// How far an image lies from the pictures the MNIST models were trained on. An
// MNIST digit is a light stroke on an even black background: its border ring is
// background, and almost every pixel is either background or ink. A photo is
// neither, yet after the MNIST preprocessing a model still gives it a confident
// digit; these two shares, measured on the image as uploaded (inverted when it is
// dark on light, as the preprocessing does), say why its answer means little.
const (
	// BorderLimit and TonesLimit are just above the largest values among MNIST's
	// 10,000 test digits (3.7 % and 11.4 %; TestMNISTDistance measures them).
	BorderLimit = 0.05
	TonesLimit  = 0.12
	// borderInk is how far from the background level (as a share of the contrast)
	// a border pixel must lie to count as not background: JPEG noise stays below.
	borderInk = 0.1
	// A pixel is an in-between tone from 20 % to 80 % of the way from background to ink.
	toneLow, toneHigh = 0.2, 0.8
)

// MNISTDistance describes an image against MNIST's digits.
type MNISTDistance struct {
	// Border is the share of the outermost ring of pixels that is not background.
	Border float64 `json:"border"`
	// Tones is the share of all pixels that are neither background nor ink.
	Tones float64 `json:"tones"`
	// Distance is the larger of Border/BorderLimit and Tones/TonesLimit: at most 1
	// for an image like MNIST's test digits, and the farther above, the less like them.
	Distance float64 `json:"distance"`
}

// Unlike reports whether the image lies outside what MNIST's test digits span.
func (d MNISTDistance) Unlike() bool { return d.Distance > 1 }

// MNISTDistance measures the picture against MNIST's digits.
func (p *Picture) MNISTDistance() MNISTDistance {
	if p.W <= 0 || p.H <= 0 {
		return MNISTDistance{}
	}
	g := p.luma()
	bg := borderMedian(g)
	peak := float32(0)
	for _, v := range g.px {
		peak = max(peak, v)
	}
	if bg > 0.5 { // dark on light: ink is what lies below the background
		peak = bg
		for _, v := range g.px {
			peak = min(peak, v)
		}
	}
	contrast := math.Abs(float64(peak - bg))
	if contrast < minContrast {
		return MNISTDistance{} // blank: the preprocessing refuses it with its own message
	}
	// ink is how far v lies from the background towards the ink, in [0, 1].
	ink := func(v float32) float64 { return math.Abs(float64(v-bg)) / contrast }
	var d MNISTDistance
	ring := 0
	for x := range g.w {
		for _, y := range []int{0, g.h - 1} {
			ring++
			if ink(g.px[y*g.w+x]) > borderInk {
				d.Border++
			}
		}
	}
	for y := 1; y < g.h-1; y++ {
		for _, x := range []int{0, g.w - 1} {
			ring++
			if ink(g.px[y*g.w+x]) > borderInk {
				d.Border++
			}
		}
	}
	d.Border /= float64(ring)
	for _, v := range g.px {
		if k := ink(v); k > toneLow && k < toneHigh {
			d.Tones++
		}
	}
	d.Tones /= float64(len(g.px))
	d.Distance = max(d.Border/BorderLimit, d.Tones/TonesLimit)
	return d
}
