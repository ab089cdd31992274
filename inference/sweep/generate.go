package sweep

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gibbon/inference"
	"gibbon/inference/attack"
)

// Generate attacks images x [N, ...] with labels, image i inside its own budget eps[i]
// (0 leaves it clean), and returns the adversarial images on the 8-bit grid (unless
// Config.NoQuantize). seeds[i] fixes image i's random start, so an image's result
// does not depend on the batch it came in (attack.Run seeds a whole batch: a batch of
// one with its Config.Seed gives the same images).
//
// FGSM, BIM, PGD (one restart) and MI-FGSM with the cross-entropy loss run as one
// batched loop over all rows, whatever their budgets: each gradient pass carries
// every row. With one budget for all rows and no random start it gives exactly
// attack.Run's images (see the tests). Other methods run attack.Run once per distinct
// budget, seeded by the first of its images; an attack network runs once and each
// image takes the largest head within its budget.
func (a *Attack) Generate(ctx context.Context, x *inference.Tensor, labels []int, eps []float32, seeds []int64) (*inference.Tensor, error) {
	if x == nil || x.Validate() != nil || len(x.Shape) < 2 || x.Shape[0] < 1 {
		return nil, errors.New("no images to attack")
	}
	n := int(x.Shape[0])
	if len(eps) != n || len(labels) != n || len(seeds) != n {
		return nil, fmt.Errorf("%d images, %d labels, %d budgets and %d seeds: want one each", n, len(labels), len(eps), len(seeds))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var active []int
	for i, e := range eps {
		if !(e >= 0) || math.IsInf(float64(e), 0) {
			return nil, fmt.Errorf("budget %g of image %d is not a number ≥ 0", e, i)
		}
		if e > 0 {
			active = append(active, i)
		}
	}
	adv := x.Clone()
	if len(active) == 0 {
		return adv, nil
	}
	xa, la, ea, sa := x, labels, eps, seeds
	if len(active) < n {
		xa, la, ea, sa = rows(x, active), pick(labels, active), pick(eps, active), pick(seeds, active)
	}
	var out *inference.Tensor
	var err error
	switch {
	case a.Network != nil:
		out, err = a.networkRows(ctx, xa, ea, nil)
	case a.batched():
		out, err = a.signRows(ctx, xa, la, ea, sa)
	default:
		out, err = a.runPerEps(ctx, xa, la, ea, sa)
	}
	if err != nil {
		return nil, err
	}
	per := len(x.Data) / n
	for j, i := range active {
		copy(adv.Data[i*per:(i+1)*per], out.Data[j*per:(j+1)*per])
	}
	return adv, nil
}

// Grid attacks every image of x [B, ...] at every budget of eps: the result holds
// len(eps)·B images, budget-major (row k·B+i is image i at eps[k]). Image i at budget
// e is seeded by RowSeed(seeds[i], e). An attack network runs once for all budgets.
func (a *Attack) Grid(ctx context.Context, x *inference.Tensor, labels []int, eps []float32, seeds []int64) (*inference.Tensor, error) {
	if x == nil || x.Validate() != nil || len(x.Shape) < 2 || x.Shape[0] < 1 {
		return nil, errors.New("no images to attack")
	}
	B := int(x.Shape[0])
	if len(labels) != B || len(seeds) != B {
		return nil, fmt.Errorf("%d images, %d labels and %d seeds: want one each", B, len(labels), len(seeds))
	}
	per := len(x.Data) / B
	if a.Network != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return a.networkRows(ctx, x, nil, eps)
	}
	stack := inference.NewTensor(append([]int64{int64(B * len(eps))}, x.Shape[1:]...)...)
	rowEps := make([]float32, 0, B*len(eps))
	rowLabels := make([]int, 0, B*len(eps))
	rowSeeds := make([]int64, 0, B*len(eps))
	for k, e := range eps {
		copy(stack.Data[k*B*per:(k+1)*B*per], x.Data)
		for i := range B {
			rowEps = append(rowEps, e)
			rowSeeds = append(rowSeeds, RowSeed(seeds[i], e))
		}
		rowLabels = append(rowLabels, labels...)
	}
	return a.Generate(ctx, stack, rowLabels, rowEps, rowSeeds)
}

// RowSeed is the seed of an image (seeded s) attacked at budget e: it depends on the
// budget's value, not its place in a list, so any grid or chunking of budgets gives
// every (image, ε) the same random start.
func RowSeed(s int64, e float32) int64 {
	z := uint64(s) + 0x9e3779b97f4a7c15*(uint64(math.Float32bits(e))+1)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return int64(z ^ (z >> 31))
}

func pick[T any](v []T, idx []int) []T {
	out := make([]T, len(idx))
	for j, i := range idx {
		out[j] = v[i]
	}
	return out
}

// batched reports whether the attack runs as one loop over rows of mixed budgets.
func (a *Attack) batched() bool {
	c := a.Config
	switch c.Method {
	case attack.FGSM, attack.BIM, attack.PGD, attack.MIFGSM:
	default:
		return false
	}
	return (c.Loss == "" || c.Loss == attack.LossCE) && c.Target == attack.Untargeted && c.Restarts <= 1
}

type classCounter interface{ Classes() int }

// signRows is the batched loop of FGSM, BIM, PGD and MI-FGSM: the same arithmetic as
// attack.Run, with a budget and step size per row.
func (a *Attack) signRows(ctx context.Context, x0 *inference.Tensor, labels []int, eps []float32, seeds []int64) (*inference.Tensor, error) {
	n := int(x0.Shape[0])
	per := len(x0.Data) / n
	c := a.Config
	c.Eps = slices.Max(eps)
	c = c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("attack %s: %w", a.Name, err)
	}
	steps := c.Steps
	alpha := make([]float32, n)
	for r, e := range eps {
		switch {
		case a.Config.Alpha > 0:
			alpha[r] = a.Config.Alpha
		case c.Method == attack.FGSM:
			alpha[r] = e
		case c.Method == attack.PGD:
			alpha[r] = 2.5 * e / float32(steps)
		default:
			alpha[r] = e / float32(steps)
		}
	}
	ball, err := attack.NewBall(x0.Data, per, eps, c.Range, !c.NoQuantize)
	if err != nil {
		return nil, err
	}
	nets := make([]attack.Differentiable, len(a.Surrogates))
	classes := -1
	for s, m := range a.Surrogates {
		d, ok := m.Net.(attack.Differentiable)
		if !ok {
			return nil, fmt.Errorf("attack %s: model %s gives no gradients", a.Name, m.Name)
		}
		nets[s] = d
		cc, ok := m.Net.(classCounter)
		if !ok || cc.Classes() < 2 {
			l, err := m.Net.Predict(ctx, rows(x0, []int{0}))
			if err != nil {
				return nil, modelErr(ctx, m.Name, err)
			}
			if len(l.Shape) != 2 {
				return nil, fmt.Errorf("model %s returned scores of shape %v", m.Name, l.Shape)
			}
			cc = fixedClasses(l.Shape[1])
		}
		if classes >= 0 && cc.Classes() != classes {
			return nil, fmt.Errorf("attack %s: the models disagree on the number of classes (%d and %d)", a.Name, classes, cc.Classes())
		}
		classes = cc.Classes()
	}
	oneHot := inference.NewTensor(int64(n), int64(classes))
	for i, l := range labels {
		if l >= classes {
			return nil, fmt.Errorf("label %d is not a class of the models (they have %d)", l, classes)
		}
		oneHot.Data[i*classes+l] = 1
	}

	x := x0.Clone()
	if c.Method == attack.PGD && !c.NoRandomStart {
		for r, e := range eps {
			rng := rand.New(rand.NewPCG(uint64(seeds[r]), 0x9e3779b97f4a7c15))
			for j := r * per; j < (r+1)*per; j++ {
				x.Data[j] += e * (2*rng.Float32() - 1)
			}
		}
		ball.Project(x.Data)
	}
	momentum := c.Method == attack.MIFGSM && c.Momentum > 0
	var mom []float32
	if momentum {
		mom = make([]float32, len(x.Data))
	}
	k := float32(len(nets))
	sum := make([]float32, len(x.Data))
	for range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		clear(sum)
		for s, net := range nets {
			g, err := net.Gradient(ctx, x, attack.CrossEntropy, oneHot)
			if err != nil {
				return nil, modelErr(ctx, a.Surrogates[s].Name, err)
			}
			if g == nil || g.Input == nil || len(g.Input.Data) != len(x.Data) {
				return nil, fmt.Errorf("model %s returned an input gradient that does not match the images %v", a.Surrogates[s].Name, x.Shape)
			}
			for j, v := range g.Input.Data {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return nil, fmt.Errorf("model %s returned a non-finite gradient", a.Surrogates[s].Name)
				}
				sum[j] += v / k
			}
		}
		dir := sum
		if momentum {
			for r := range n {
				gi := sum[r*per : (r+1)*per]
				var l1 float64
				for _, v := range gi {
					l1 += math.Abs(float64(v))
				}
				inv := float32(0)
				if l1 > 0 {
					inv = float32(1 / l1)
				}
				mi := mom[r*per : (r+1)*per]
				for j, v := range gi {
					mi[j] = c.Momentum*mi[j] + v*inv
				}
			}
			dir = mom
		}
		for r := range n {
			lo, hi := r*per, (r+1)*per
			b := ball.Span(lo, hi)
			b.SignStep(x.Data[lo:hi], dir[lo:hi], alpha[r])
		}
	}
	ball.Quantize(x.Data)
	return x, nil
}

type fixedClasses int64

func (f fixedClasses) Classes() int { return int(f) }

func modelErr(ctx context.Context, name string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("model %s: %w", name, err)
}

// runPerEps runs attack.Run once per distinct budget, batched over that budget's rows
// and seeded by the first of them.
func (a *Attack) runPerEps(ctx context.Context, x *inference.Tensor, labels []int, eps []float32, seeds []int64) (*inference.Tensor, error) {
	n := int(x.Shape[0])
	per := len(x.Data) / n
	groups := map[float32][]int{}
	var order []float32
	for i, e := range eps {
		if groups[e] == nil {
			order = append(order, e)
		}
		groups[e] = append(groups[e], i)
	}
	slices.Sort(order)
	out := x.Clone()
	for _, e := range order {
		idx := groups[e]
		c := a.Config
		c.Eps, c.Seed = e, seeds[idx[0]]
		res, err := attack.Run(ctx, c, attack.Request{Images: rows(x, idx), Labels: pick(labels, idx), Surrogates: a.Surrogates}, nil)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("attack %s at ε %g: %w", a.Name, e, err)
		}
		for j, i := range idx {
			copy(out.Data[i*per:(i+1)*per], res.Adv.Data[j*per:(j+1)*per])
		}
	}
	return out, nil
}

// headFor is the largest head within budget e, or −1.
func headFor(heads []float32, e float32) int {
	best := -1
	for k, h := range heads {
		if float64(h) <= float64(e)*(1+1e-6)+1e-9 && (best < 0 || h > heads[best]) {
			best = k
		}
	}
	return best
}

// networkRows runs the attack network once on x. With rowEps, row i takes the head
// for rowEps[i]; with grid, the result is budget-major over grid (see Grid). Each
// image is put on the 8-bit grid inside its head's ball, as attack.RunNetwork does;
// an image with no head within its budget stays clean.
func (a *Attack) networkRows(ctx context.Context, x *inference.Tensor, rowEps, grid []float32) (*inference.Tensor, error) {
	net := a.Network
	heads := net.Eps()
	B := int(x.Shape[0])
	per := len(x.Data) / B
	rng := a.Config.Range
	if rng == [2]float32{} {
		rng = [2]float32{0, 1}
	}
	outs, err := net.Generate(ctx, x)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("attack network %s: %w", net.Name(), err)
	}
	if len(outs) != len(heads) {
		return nil, fmt.Errorf("attack network %s returned %d heads, its manifest lists %d", net.Name(), len(outs), len(heads))
	}
	for _, o := range outs {
		if o == nil || len(o.Data) != len(x.Data) {
			return nil, fmt.Errorf("attack network %s returned images that do not match its input %v", net.Name(), x.Shape)
		}
	}
	// src[r] is the source row of output row r; hk[r] its head.
	var src, hk []int
	if grid == nil {
		for i, e := range rowEps {
			src, hk = append(src, i), append(hk, headFor(heads, e))
		}
	} else {
		for _, e := range grid {
			h := -1
			if e > 0 {
				h = headFor(heads, e)
			}
			for i := range B {
				src, hk = append(src, i), append(hk, h)
			}
		}
	}
	rowsN := len(src)
	adv := inference.NewTensor(append([]int64{int64(rowsN)}, x.Shape[1:]...)...)
	clean := make([]float32, len(adv.Data))
	budget := make([]float32, rowsN)
	for r, i := range src {
		copy(clean[r*per:(r+1)*per], x.Data[i*per:(i+1)*per])
		if hk[r] < 0 {
			copy(adv.Data[r*per:(r+1)*per], x.Data[i*per:(i+1)*per])
			continue
		}
		copy(adv.Data[r*per:(r+1)*per], outs[hk[r]].Data[i*per:(i+1)*per])
		budget[r] = heads[hk[r]]
	}
	ball, err := attack.NewBall(clean, per, budget, rng, !a.Config.NoQuantize)
	if err != nil {
		return nil, err
	}
	ball.Quantize(adv.Data)
	return adv, nil
}
