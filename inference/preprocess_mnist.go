package inference

import (
	"fmt"
	"math"
	"slices"
)

// MNIST-style normalisation, as LeCun et al. describe making MNIST: the digit is
// scaled to fit a 20×20 box keeping its aspect ratio, then placed in the 28×28
// frame so that its centre of mass is at the centre. MNIST digits are light on a
// dark background; a dark-on-light image (ink on paper, a drawing on a white
// canvas) is inverted first.
const (
	mnistBox   = 20 // the box side in a 28-pixel frame
	mnistFrame = 28
	// minContrast is the smallest stroke-to-background difference that counts as a digit.
	minContrast = 0.15
	// noiseFloor clears marks fainter than this fraction of the strongest stroke
	// (paper texture, JPEG noise) so they do not move the box or the centre.
	noiseFloor = 0.1
)

// mnistCentre normalises a gray plane (values in [0,1], 1 = white) to a w×h plane
// of a light digit on black, MNIST-style, and says what it did.
func mnistCentre(g plane, w, h int, k kernel) (plane, []string, error) {
	var steps []string
	bg := borderMedian(g)
	v := g.clone()
	if bg > 0.5 {
		for i, x := range v.px {
			v.px[i] = 1 - x
		}
		bg = 1 - bg
		steps = append(steps, "inverted: dark on light → light on dark, as in MNIST")
	}
	// An image already in MNIST form (the frame size, light on dark) is used as it is:
	// re-centring it would only blur it.
	if g.w == w && g.h == h && bg < 0.02 && len(steps) == 0 {
		if slices.Max(v.px)-bg < minContrast {
			return plane{}, nil, blankErr()
		}
		return v, append(steps, fmt.Sprintf("already %d×%d, light on dark: used as it is", w, h)), nil
	}
	peak := slices.Max(v.px)
	if peak-bg < minContrast {
		return plane{}, nil, blankErr()
	}
	for i, x := range v.px {
		ink := (x - bg) / (peak - bg)
		if ink < noiseFloor {
			ink = 0
		}
		v.px[i] = min(ink, 1)
	}
	if bg > 0.02 || peak < 0.98 {
		steps = append(steps, fmt.Sprintf("contrast stretched: background %.2f → 0, strongest stroke %.2f → 1", bg, peak))
	}

	x0, y0, x1, y1 := inkBounds(v)
	cw, ch := x1-x0, y1-y0
	v = v.crop(x0, y0, cw, ch)
	if cw != g.w || ch != g.h {
		steps = append(steps, fmt.Sprintf("cropped to the digit: %d×%d px", cw, ch))
	}

	boxW := max(1, int(math.Round(float64(w)*mnistBox/mnistFrame)))
	boxH := max(1, int(math.Round(float64(h)*mnistBox/mnistFrame)))
	s := math.Min(float64(boxW)/float64(cw), float64(boxH)/float64(ch))
	nw := min(boxW, max(1, int(math.Round(float64(cw)*s))))
	nh := min(boxH, max(1, int(math.Round(float64(ch)*s))))
	v = resample(v, nw, nh, k)
	v.clamp01()
	steps = append(steps, fmt.Sprintf("scaled to %d×%d px to fit a %d×%d box (aspect kept)", nw, nh, boxW, boxH))

	cx, cy := centreOfMass(v)
	ox := int(math.Round(float64(w)/2 - cx))
	oy := int(math.Round(float64(h)/2 - cy))
	out := newPlane(w, h)
	for y := range nh {
		ty := y + oy
		if ty < 0 || ty >= h {
			continue
		}
		for x := range nw {
			if tx := x + ox; tx >= 0 && tx < w {
				out.px[ty*w+tx] = v.px[y*nw+x]
			}
		}
	}
	steps = append(steps, fmt.Sprintf("centred: centre of mass moved to the middle of the %d×%d frame", w, h))
	return out, steps, nil
}

func blankErr() error {
	return imageErr(ErrBlankImage, "The image looks blank: no digit stands out from the background. Draw or upload a digit.")
}

// borderMedian is the median of the outermost ring of pixels: the background level
// for a digit that does not touch every edge.
func borderMedian(p plane) float32 {
	ring := make([]float32, 0, 2*(p.w+p.h))
	for x := range p.w {
		ring = append(ring, p.px[x], p.px[(p.h-1)*p.w+x])
	}
	for y := 1; y < p.h-1; y++ {
		ring = append(ring, p.px[y*p.w], p.px[y*p.w+p.w-1])
	}
	slices.Sort(ring)
	return ring[len(ring)/2]
}

// inkBounds is the bounding box [x0,x1)×[y0,y1) of the non-zero pixels; p has some.
func inkBounds(p plane) (x0, y0, x1, y1 int) {
	x0, y0 = p.w, p.h
	for y := range p.h {
		for x := range p.w {
			if p.px[y*p.w+x] > 0 {
				x0, x1 = min(x0, x), max(x1, x+1)
				y0, y1 = min(y0, y), max(y1, y+1)
			}
		}
	}
	return x0, y0, x1, y1
}

// centreOfMass of the values, in continuous coordinates (pixel i spans [i, i+1)).
func centreOfMass(p plane) (cx, cy float64) {
	var sum, sx, sy float64
	for y := range p.h {
		for x := range p.w {
			v := float64(p.px[y*p.w+x])
			sum += v
			sx += v * (float64(x) + 0.5)
			sy += v * (float64(y) + 0.5)
		}
	}
	if sum == 0 {
		return float64(p.w) / 2, float64(p.h) / 2
	}
	return sx / sum, sy / sum
}
