package inference

import (
	"math"
	"strings"
)

// plane is one channel of an image as float32 values, row-major.
type plane struct {
	w, h int
	px   []float32
}

func newPlane(w, h int) plane { return plane{w: w, h: h, px: make([]float32, w*h)} }

func (p plane) clone() plane { return plane{w: p.w, h: p.h, px: append([]float32(nil), p.px...)} }

// crop returns the w×h region whose top-left corner is (x0, y0); it must lie inside p.
func (p plane) crop(x0, y0, w, h int) plane {
	out := newPlane(w, h)
	for y := range h {
		copy(out.px[y*w:(y+1)*w], p.px[(y0+y)*p.w+x0:(y0+y)*p.w+x0+w])
	}
	return out
}

func (p plane) clamp01() {
	for i, v := range p.px {
		p.px[i] = min(max(v, 0), 1)
	}
}

// kernel is a resampling filter: weight at distance t (in source pixels), zero
// beyond support.
type kernel struct {
	support float64
	at      func(t float64) float64
}

var (
	kernelBilinear = kernel{1, func(t float64) float64 {
		if t = math.Abs(t); t < 1 {
			return 1 - t
		}
		return 0
	}}
	// Keys' cubic with a = -0.5 (Catmull-Rom), what "bicubic" means in PIL and torchvision.
	kernelBicubic = kernel{2, func(t float64) float64 {
		const a = -0.5
		t = math.Abs(t)
		switch {
		case t < 1:
			return ((a+2)*t-(a+3))*t*t + 1
		case t < 2:
			return ((a*t-5*a)*t+8*a)*t - 4*a
		}
		return 0
	}}
)

func kernelFor(interp string) kernel {
	if strings.EqualFold(interp, "bicubic") {
		return kernelBicubic
	}
	return kernelBilinear
}

// taps are the source pixels one destination pixel averages, with their weights.
type taps struct {
	first int
	w     []float32
}

// makeTaps maps src pixels onto dst pixels along one axis, for the n destination
// pixels from first on. When shrinking, the kernel is widened by the scale so that
// every source pixel contributes (area averaging), as PIL does; otherwise thin
// strokes would vanish or alias.
func makeTaps(src, dst, first, n int, k kernel) []taps {
	scale := float64(src) / float64(dst)
	stretch := max(scale, 1)
	half := k.support * stretch
	out := make([]taps, n)
	for o := range out {
		c := (float64(first+o) + 0.5) * scale
		lo := max(0, int(math.Floor(c-half)))
		hi := min(src, int(math.Ceil(c+half)))
		ws := make([]float32, 0, hi-lo)
		var sum float64
		for j := lo; j < hi; j++ {
			v := k.at((float64(j) + 0.5 - c) / stretch)
			ws = append(ws, float32(v))
			sum += v
		}
		if sum == 0 { // cannot happen for the kernels above; nearest pixel as a fallback
			lo, ws = min(src-1, int(c)), []float32{1}
			sum = 1
		}
		for n := range ws {
			ws[n] = float32(float64(ws[n]) / sum)
		}
		out[o] = taps{first: lo, w: ws}
	}
	return out
}

// resample scales p to w×h with kernel k (separable: rows, then columns).
func resample(p plane, w, h int, k kernel) plane {
	if p.w == w && p.h == h {
		return p.clone()
	}
	return resampleWindow(p, w, h, 0, 0, w, h, k)
}

// resampleWindow is the ww×wh region at (x0, y0) of p scaled to w×h: only that
// region is computed, so a crop of a very wide or tall scaling costs the crop.
func resampleWindow(p plane, w, h, x0, y0, ww, wh int, k kernel) plane {
	tmp := newPlane(ww, p.h)
	xt := makeTaps(p.w, w, x0, ww, k)
	for y := range p.h {
		row := p.px[y*p.w : (y+1)*p.w]
		for x, t := range xt {
			var s float32
			for n, wt := range t.w {
				s += wt * row[t.first+n]
			}
			tmp.px[y*ww+x] = s
		}
	}
	out := newPlane(ww, wh)
	yt := makeTaps(p.h, h, y0, wh, k)
	for y, t := range yt {
		dst := out.px[y*ww : (y+1)*ww]
		for n, wt := range t.w {
			src := tmp.px[(t.first+n)*ww : (t.first+n+1)*ww]
			for x := range dst {
				dst[x] += wt * src[x]
			}
		}
	}
	return out
}
