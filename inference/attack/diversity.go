package attack

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gibbon/inference"
)

// geometry locates channels and pixels in an image batch.
type geometry struct {
	n, c, h, w int
	nhwc       bool
}

func newGeometry(shape []int64, layout string) (geometry, error) {
	if len(shape) != 4 {
		return geometry{}, fmt.Errorf("images must be a 4-d batch (%s), got shape %v", layout, shape)
	}
	g := geometry{n: int(shape[0]), c: int(shape[1]), h: int(shape[2]), w: int(shape[3]), nhwc: layout == "NHWC"}
	if g.nhwc {
		g.c, g.h, g.w = int(shape[3]), int(shape[1]), int(shape[2])
	}
	if g.n < 1 || g.c < 1 || g.h < 1 || g.w < 1 {
		return geometry{}, fmt.Errorf("images have an empty dimension: shape %v", shape)
	}
	return g, nil
}

// at is the flat index of (image i, channel c, row y, column x).
func (g geometry) at(i, c, y, x int) int {
	if g.nhwc {
		return ((i*g.h+y)*g.w+x)*g.c + c
	}
	return ((i*g.c+c)*g.h+y)*g.w + x
}

// diversity is one draw of DI-FGSM's random resize-and-pad, per image: the image is
// resized by nearest neighbour to rh×rw and placed at (oy,ox) on a canvas of the
// original size filled with pad. It is affine, so the gradient through it is its
// adjoint applied to the output gradient (sum of the output pixels each source feeds).
type diversity struct {
	g      geometry
	pad    float32
	on     []bool
	rh, rw []int
	oy, ox []int
}

func drawDiversity(rng *rand.Rand, g geometry, prob, minRatio, pad float32) *diversity {
	d := &diversity{g: g, pad: pad, on: make([]bool, g.n), rh: make([]int, g.n), rw: make([]int, g.n), oy: make([]int, g.n), ox: make([]int, g.n)}
	minH := max(1, int(math.Round(float64(minRatio)*float64(g.h))))
	for i := range g.n {
		if rng.Float32() >= prob {
			d.rh[i], d.rw[i] = g.h, g.w
			continue
		}
		d.on[i] = true
		d.rh[i] = minH + rng.IntN(g.h-minH+1)
		d.rw[i] = max(1, min(g.w, int(math.Round(float64(d.rh[i])*float64(g.w)/float64(g.h)))))
		d.oy[i] = rng.IntN(g.h - d.rh[i] + 1)
		d.ox[i] = rng.IntN(g.w - d.rw[i] + 1)
	}
	return d
}

func (d *diversity) any() bool {
	for _, on := range d.on {
		if on {
			return true
		}
	}
	return false
}

// apply returns the transformed batch.
func (d *diversity) apply(x *inference.Tensor) *inference.Tensor {
	out := x.Clone()
	g := d.g
	for i := range g.n {
		if !d.on[i] {
			continue
		}
		for c := range g.c {
			for y := range g.h {
				for xx := range g.w {
					sy, sx, in := d.source(i, y, xx)
					if in {
						out.Data[g.at(i, c, y, xx)] = x.Data[g.at(i, c, sy, sx)]
					} else {
						out.Data[g.at(i, c, y, xx)] = d.pad
					}
				}
			}
		}
	}
	return out
}

// adjoint maps a gradient on the transformed batch back to the original, in place.
func (d *diversity) adjoint(gt *inference.Tensor) {
	g := d.g
	per := g.c * g.h * g.w
	buf := make([]float32, per)
	for i := range g.n {
		if !d.on[i] {
			continue
		}
		clear(buf)
		for c := range g.c {
			for y := range g.h {
				for xx := range g.w {
					if sy, sx, in := d.source(i, y, xx); in {
						buf[g.at(0, c, sy, sx)] += gt.Data[g.at(i, c, y, xx)]
					}
				}
			}
		}
		copy(gt.Data[i*per:(i+1)*per], buf)
	}
}

// source is the original pixel feeding output pixel (y,x) of image i, if any.
func (d *diversity) source(i, y, x int) (sy, sx int, in bool) {
	ry, rx := y-d.oy[i], x-d.ox[i]
	if ry < 0 || rx < 0 || ry >= d.rh[i] || rx >= d.rw[i] {
		return 0, 0, false
	}
	return ry * d.g.h / d.rh[i], rx * d.g.w / d.rw[i], true
}
