package attacknet

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/autodiff"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/train"
	"gibbon/internal/testrt"
)

func TestSpecRejectsBadSettings(t *testing.T) {
	ok := Spec{Channels: 1, Height: 28, Width: 28, Eps: []float64{0.3}}
	for _, c := range []struct {
		edit func(*Spec)
		want string
	}{
		{func(s *Spec) { s.Layout = "NWHC" }, "layout"},
		{func(s *Spec) { s.Channels = 0 }, "channels"},
		{func(s *Spec) { s.Height = 2 }, "image size"},
		{func(s *Spec) { s.Range = [2]float64{1, 0} }, "range"},
		{func(s *Spec) { s.Eps = nil }, "eps heads"},
		{func(s *Spec) { s.Eps = []float64{0.1, -0.1} }, "positive"},
		{func(s *Spec) { s.Eps = []float64{1.5} }, "range width"},
		{func(s *Spec) { s.Eps = []float64{math.NaN()} }, "positive"},
		{func(s *Spec) { s.Eps = []float64{0.1, 0.1} }, "twice"},
		{func(s *Spec) { s.Base = 1000 }, "base width"},
		{func(s *Spec) { s.Levels = 6; s.Height = 16 }, "below one pixel"},
		{func(s *Spec) { s.Shuffle = 3 }, "pixel shuffle"},
		{func(s *Spec) { s.Levels = 4; s.Height = 16; s.Shuffle = 2 }, "below one pixel"},
	} {
		s := ok
		s.Eps = append([]float64(nil), ok.Eps...)
		c.edit(&s)
		if _, _, err := BuildGenerator(s, 1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one about %q", s, err, c.want)
		}
	}
	if s, err := ok.Normalized(); err != nil || s.Levels != 2 || s.Base != DefaultBase || s.Layout != "NCHW" || s.Range != [2]float64{0, 1} {
		t.Errorf("defaults: %+v %v", s, err)
	}
	if s, _ := (Spec{Channels: 3, Height: 224, Width: 224, Eps: []float64{0.03}}).Normalized(); s.Levels != 4 {
		t.Errorf("224×224: %d levels, want 4", s.Levels)
	}
}

// Every output of every head stays within eps of the input and inside the pixel range,
// also with saturated heads, on odd sizes, both layouts and a [0,255] range.
func TestGeneratorBoundHoldsOnEveryOutput(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	for _, s := range []Spec{
		{Channels: 1, Height: 28, Width: 28, Eps: []float64{0.1, 0.2, 0.3}, Base: 4},
		{Channels: 3, Height: 13, Width: 17, Layout: "NHWC", Range: [2]float64{0, 255}, Eps: []float64{8, 16}, Base: 4},
		{Channels: 3, Height: 9, Width: 8, Range: [2]float64{-1, 1}, Eps: []float64{0.5}, Base: 2, Levels: 3},
		{Channels: 1, Height: 28, Width: 28, Eps: []float64{0.1, 0.2, 0.3}, Base: 4, Shuffle: 2},
		{Channels: 3, Height: 13, Width: 17, Layout: "NHWC", Range: [2]float64{0, 255}, Eps: []float64{8, 16}, Base: 4, Shuffle: 2},
	} {
		for _, inferenceForm := range []bool{false, true} {
			checkBound(t, ctx, rt, s, inferenceForm)
		}
	}
}

func checkBound(t *testing.T, ctx context.Context, rt *inference.Runtime, s Spec, inferenceForm bool) {
	m, params, err := BuildGenerator(s, 7)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := s.Normalized()
	// Blow the weights up so most heads saturate at ±1 (the bound's edge).
	ps, _ := train.ParamsOf(m, params)
	for _, p := range ps {
		for i := range p.Data {
			p.Data[i] *= 30
		}
	}
	if inferenceForm {
		m, _, _ = BuildInferenceGenerator(s, 7)
		ps = inferenceParams(ps)
	}
	sess := bakedSession(t, rt, m, ps)
	shape := []int64{5, int64(ns.Channels), int64(ns.Height), int64(ns.Width)}
	if ns.Layout == "NHWC" {
		shape = []int64{5, int64(ns.Height), int64(ns.Width), int64(ns.Channels)}
	}
	x := inference.NewTensor(shape...)
	rng := rand.New(rand.NewPCG(1, 2))
	lo, hi := float32(ns.Range[0]), float32(ns.Range[1])
	for i := range x.Data {
		switch rng.IntN(4) {
		case 0:
			x.Data[i] = lo
		case 1:
			x.Data[i] = hi
		default:
			x.Data[i] = lo + rng.Float32()*(hi-lo)
		}
	}
	out, err := sess.Run(ctx, map[string]*inference.Tensor{Input: x})
	sess.Close()
	if err != nil {
		t.Fatal(err)
	}
	adv := out[Output]
	K := len(ns.Eps)
	want := append([]int64{5, int64(K)}, shape[1:]...)
	if adv == nil || len(adv.Shape) != 5 || !sameInts(adv.Shape, want) {
		t.Fatalf("%+v: output shape %v, want %v", ns, adv.Shape, want)
	}
	per := len(x.Data) / 5
	var atEdge, total int
	for i := range 5 {
		for k, e := range ns.Eps {
			tol := 1e-6 * (float64(hi) - float64(lo))
			for j := range per {
				a, c := float64(adv.Data[(i*K+k)*per+j]), float64(x.Data[i*per+j])
				if math.Abs(a-c) > e+tol || a < float64(lo) || a > float64(hi) {
					t.Fatalf("%+v: head ε %g image %d value %d: %g from %g", ns, e, i, j, a, c)
				}
				if math.Abs(math.Abs(a-c)-e) < 1e-3*e || a == float64(lo) || a == float64(hi) {
					atEdge++
				}
				total++
			}
		}
	}
	if atEdge < total/2 {
		t.Errorf("%+v: only %d of %d values at the ball's edge: the saturation check is not testing the edge", ns, atEdge, total)
	}
}

func sameInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The training graph's gradient (through frozen classifiers into the generator)
// matches a central finite difference along it, per head.
func TestTrainingGradientMatchesFiniteDifferences(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	zoo, _, test := smallZoo(t)
	for _, shuffle := range []int{0, 2} {
		t.Run(fmt.Sprintf("shuffle%d", shuffle), func(t *testing.T) {
			spec := Spec{Channels: 1, Height: 28, Width: 28, Eps: []float64{0.1, 0.3}, Base: 4, Shuffle: shuffle}
			checkTrainingGradient(t, ctx, rt, spec, zoo, test)
		})
	}
}

func checkTrainingGradient(t *testing.T, ctx context.Context, rt *inference.Runtime, spec Spec, zoo map[string]*attack.ONNXModel, test *mnist.Set) {
	gm, names, err := BuildGenerator(spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	comp, err := composeTraining(gm, spec, []Target{targetOf("cnn", zoo["mnist-cnn-small"]), targetOf("mlp", zoo["mnist-mlp"])}, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := trainingSession(rt, comp, names, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	params, _ := train.ParamsOf(gm, names)
	const N, cols = 16, 10 // 2 targets × 2 heads, hinge and fooled columns, 2 saturation columns
	x, _ := batchOf(test, 0, N)
	for _, col := range []int{0, 1, 2, 3, 8, 9} {
		seed := inference.NewTensor(N, cols)
		for i := range N {
			seed.Data[i*cols+col] = 1
		}
		loss := func() (float64, map[string]*inference.Tensor) {
			feed := map[string]*inference.Tensor{Input: x, autodiff.InputLogitSeed: seed}
			for _, p := range params {
				feed[p.Name] = &inference.Tensor{Shape: p.Shape, Data: p.Data}
			}
			out, err := sess.Run(ctx, feed)
			if err != nil {
				t.Fatal(err)
			}
			var l float64
			for _, v := range out[autodiff.OutputLoss].Data {
				l += float64(v)
			}
			return l, out
		}
		_, out := loss()
		var norm float64
		for _, p := range params {
			for _, v := range out[autodiff.GradPrefix+p.Name].Data {
				norm += float64(v) * float64(v)
			}
		}
		norm = math.Sqrt(norm)
		if !(norm > 0) {
			t.Fatalf("column %d: zero gradient", col)
		}
		const h = 1e-3
		orig := make([][]float32, len(params))
		move := func(sign float64) {
			for i, p := range params {
				if orig[i] == nil {
					orig[i] = append([]float32(nil), p.Data...)
				}
				g := out[autodiff.GradPrefix+p.Name].Data
				for j := range p.Data {
					p.Data[j] = orig[i][j] + float32(sign*h*float64(g[j])/norm)
				}
			}
		}
		move(1)
		lp, _ := loss()
		move(-1)
		lm, _ := loss()
		move(0)
		fd := (lp - lm) / (2 * h)
		if math.Abs(fd-norm) > 0.03*norm {
			t.Errorf("column %d: directional derivative %g by finite differences, gradient norm %g", col, fd, norm)
		}
	}
}

// With the pixel shuffle, input pixel (c, 2y+dy, 2x+dx) is channel (c, dy, dx) of the
// folded image at (y, x), and head channel (k, c, dy, dx) at (y, x) comes back as head
// k's pixel (c, 2y+dy, 2x+dx), odd sides padded and cropped: weights that route one
// folded input channel straight to one head channel (through the skip connection)
// must give that head, on that pixel phase, the input pixel of the other phase.
func TestShuffleFoldsAndUnfoldsPixels(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	const C, H, W, eps = 2, 5, 7, 0.25
	spec := Spec{Channels: C, Height: H, Width: W, Eps: []float64{0.1, eps}, Base: 2, Levels: 1, Shuffle: 2}
	for _, inferenceForm := range []bool{false, true} {
		build := BuildGenerator
		if inferenceForm {
			build = BuildInferenceGenerator
		}
		m, names, err := build(spec, 5)
		if err != nil {
			t.Fatal(err)
		}
		checkRouting(t, ctx, rt, spec, m, names, inferenceForm)
	}
}

func checkRouting(t *testing.T, ctx context.Context, rt *inference.Runtime, spec Spec, m *onnx.ModelProto, names []string, inferenceForm bool) {
	const C, H, W = 2, 5, 7
	ps, err := train.ParamsOf(m, names)
	if err != nil {
		t.Fatal(err)
	}
	// Layers: 1 first conv, 2 down, 3 bottom, 4 up, 5 mix, 6 heads.
	const c, dy, dx = 1, 1, 0          // the input phase routed
	const k, c2, dy2, dx2 = 1, 0, 0, 1 // the head channel it lands in
	set := map[string]func(p *train.Param){
		"gen/l1.w": func(p *train.Param) { p.Data[((0*4*C)+(c*2+dy)*2+dx)*9+4] = 1 },    // [2, 4C, 3, 3]
		"gen/l5.w": func(p *train.Param) { p.Data[((0*4)+2+0)*9+4] = 1 },                // [2, up 2 + skip 2, 3, 3]
		"gen/l6.w": func(p *train.Param) { p.Data[(((k*C+c2)*2+dy2)*2+dx2)*2*9+4] = 1 }, // [4·K·C, 2, 3, 3]
	}
	for _, p := range ps {
		clear(p.Data)
		if f := set[p.Name]; f != nil {
			f(p)
			delete(set, p.Name)
		}
	}
	if len(set) != 0 {
		t.Fatalf("the generator has no parameters %v: the layer numbering changed", set)
	}
	if inferenceForm {
		ps = inferenceParams(ps)
	}
	sess := bakedSession(t, rt, m, ps)
	defer sess.Close()
	x := inference.NewTensor(3, C, H, W)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	out, err := sess.Run(ctx, map[string]*inference.Tensor{Input: x})
	if err != nil {
		t.Fatal(err)
	}
	adv := out[Output]
	if !sameInts(adv.Shape, []int64{3, 2, C, H, W}) {
		t.Fatalf("output shape %v", adv.Shape)
	}
	px := func(n, ch, y, xx int) float64 { return float64(x.Data[((n*C+ch)*H+y)*W+xx]) }
	var moved int
	for n := range 3 {
		for kk := range 2 {
			e := spec.Eps[kk]
			for ch := range C {
				for y := range H {
					for xx := range W {
						h := 0.0
						if kk == k && ch == c2 && y%2 == dy2 && xx%2 == dx2 {
							if sy, sx := y-dy2+dy, xx-dx2+dx; sy < H && sx < W {
								h = px(n, c, sy, sx) // relu of a pixel in [0,1] is the pixel
							}
						}
						v := px(n, ch, y, xx)
						a, b := math.Max(v-e, 0), math.Min(v+e, 1)
						want := (a+b)/2 + (b-a)/2*math.Tanh(h)
						got := float64(adv.Data[(((n*2+kk)*C+ch)*H+y)*W+xx])
						if math.Abs(got-want) > 1e-6 {
							t.Fatalf("image %d head %d pixel (%d,%d,%d): %g, want %g (h %g)", n, kk, ch, y, xx, got, want, h)
						}
						if h != 0 {
							moved++
						}
					}
				}
			}
		}
	}
	if moved < 3*4 {
		t.Errorf("only %d pixels were routed: the test checks too little", moved)
	}
}

// Input diversity: the resampling matrices zoom and shift as documented, and a
// training graph with diversity fed the identity gives the plain graph's objective
// (and another one when fed a shift).
func TestInputDiversityResamples(t *testing.T) {
	id := resampleMatrix(5, 1, 0, false)
	for i, v := range identity(5) {
		if id[i] != v {
			t.Fatalf("zoom 1 shift 0 is not the identity: %v", id)
		}
	}
	in := []float32{1, 2, 3, 4, 5}
	apply := func(m []float32, transpose bool) []float32 {
		out := make([]float32, 5)
		for i := range 5 {
			for j := range 5 {
				if transpose {
					out[i] += m[j*5+i] * in[j]
				} else {
					out[i] += m[i*5+j] * in[j]
				}
			}
		}
		return out
	}
	for _, tr := range []bool{false, true} {
		if got := apply(resampleMatrix(5, 1, 1, tr), tr); fmt.Sprint(got) != "[0 1 2 3 4]" {
			t.Errorf("shift by 1 (transposed %v): %v", tr, got)
		}
		if got := apply(resampleMatrix(5, 1, -0.5, tr), tr); fmt.Sprint(got) != "[1.5 2.5 3.5 4.5 2.5]" {
			t.Errorf("shift by −0.5 (transposed %v): %v", tr, got)
		}
		if got := apply(resampleMatrix(5, 2, 0, tr), tr); fmt.Sprint(got) != "[2 2.5 3 3.5 4]" {
			t.Errorf("zoom 2 (transposed %v): %v", tr, got)
		}
	}

	rt := testrt.Open(t)
	ctx := context.Background()
	zoo, _, test := smallZoo(t)
	spec := Spec{Channels: 1, Height: 28, Width: 28, Eps: []float64{0.1, 0.3}, Base: 4, Shuffle: 2}
	gm, names, err := BuildGenerator(spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	targets := []Target{targetOf("cnn", zoo["mnist-cnn-small"]), targetOf("mlp", zoo["mnist-mlp"])}
	params, _ := train.ParamsOf(gm, names)
	const N, cols = 16, 10
	x, _ := batchOf(test, 0, N)
	seed := inference.NewTensor(N, cols)
	for i := range seed.Data {
		seed.Data[i] = 1
	}
	objective := func(diverse bool, rows, colsM []float32) []float32 {
		comp, err := composeTraining(gm, spec, targets, 2, diverse)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := trainingSession(rt, comp, names, len(targets), diverse)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		feed := map[string]*inference.Tensor{Input: x, autodiff.InputLogitSeed: seed}
		for _, p := range params {
			feed[p.Name] = &inference.Tensor{Shape: p.Shape, Data: p.Data}
		}
		if diverse {
			for i := range 2 {
				feed[DiversityRows(i)] = &inference.Tensor{Shape: []int64{28, 28}, Data: rows}
				feed[DiversityCols(i)] = &inference.Tensor{Shape: []int64{28, 28}, Data: colsM}
			}
		}
		out, err := sess.Run(ctx, feed)
		if err != nil {
			t.Fatal(err)
		}
		if g := out[autodiff.GradPrefix+names[0]]; g == nil || !inference.AllFinite(g.Data) {
			t.Fatal("no finite generator gradient")
		}
		return out[autodiff.OutputLogits].Data
	}
	plain := objective(false, nil, nil)
	same := objective(true, identity(28), identity(28))
	moved := objective(true, resampleMatrix(28, 1.1, 2, false), resampleMatrix(28, 0.9, -1.5, true))
	var maxSame, maxMoved float64
	for i := range plain {
		maxSame = math.Max(maxSame, math.Abs(float64(same[i]-plain[i])))
		maxMoved = math.Max(maxMoved, math.Abs(float64(moved[i]-plain[i])))
	}
	if maxSame > 1e-4 {
		t.Errorf("identity resampling changes the objective by up to %g", maxSame)
	}
	if maxMoved < 1e-2 {
		t.Errorf("a zoom and shift change the objective by only %g: the targets do not see the resampled images", maxMoved)
	}
}

// The saved form of a generator (SpaceToDepth/DepthToSpace, the sigmoid tail, the
// decoder's split convolutions) has the training form's parameters and gives its
// outputs, for one and three channels, odd sides, both layouts, with and without the
// shuffle.
func TestInferenceFormMatchesTrainingForm(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	for _, s := range []Spec{
		{Channels: 1, Height: 28, Width: 28, Eps: []float64{0.1, 0.2, 0.3}, Base: 12, Shuffle: 2},
		{Channels: 3, Height: 13, Width: 17, Layout: "NHWC", Range: [2]float64{0, 255}, Eps: []float64{8, 16}, Base: 4, Shuffle: 2},
		{Channels: 1, Height: 15, Width: 12, Eps: []float64{0.3}, Base: 4, Shuffle: 2},
		{Channels: 1, Height: 28, Width: 28, Eps: []float64{0.3}, Base: 4},
	} {
		ns, _ := s.Normalized()
		tm, tnames, err := BuildGenerator(s, 9)
		if err != nil {
			t.Fatal(err)
		}
		im, inames, err := BuildInferenceGenerator(s, 9)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(tnames) != fmt.Sprint(inames) {
			t.Fatalf("%+v: parameters %v and %v", s, tnames, inames)
		}
		ops := func(m *onnx.ModelProto) map[string]int {
			c := map[string]int{}
			for _, n := range m.Graph.Node {
				c[n.GetOpType()]++
			}
			return c
		}
		to, io := ops(tm), ops(im)
		d2s, s2d := 0, 0
		if ns.Shuffle == 2 {
			d2s = 1
			if ns.Channels == 1 {
				s2d = 1
			}
		}
		// Each decoder level's concatenation becomes two Convs and an Add (the top
		// level's 1×1 mix of an unshuffled generator keeps its Concat).
		splits := ns.Levels
		if ns.Shuffle != 2 {
			splits--
		}
		if to["Tanh"] != 1 || io["Tanh"] != 0 || io["Sigmoid"] != 1 || to["Add"]-io["Add"] != 1-splits || to["Mul"]-io["Mul"] != 2 ||
			io["DepthToSpace"] != d2s || to["DepthToSpace"] != 0 || io["SpaceToDepth"] != s2d ||
			to["Concat"]-io["Concat"] != splits || io["Conv"]-to["Conv"] != splits || io["Slice"]-to["Slice"] != 2*splits {
			t.Errorf("%+v: ops %v (training) and %v (inference)", s, to, io)
		}
		// Trained-looking weights: scaled so heads use the whole ball, not just its centre.
		ps, _ := train.ParamsOf(tm, tnames)
		for _, p := range ps {
			for i := range p.Data {
				p.Data[i] *= 3
			}
		}
		shape := []int64{4, int64(ns.Channels), int64(ns.Height), int64(ns.Width)}
		if ns.Layout == "NHWC" {
			shape = []int64{4, int64(ns.Height), int64(ns.Width), int64(ns.Channels)}
		}
		x := inference.NewTensor(shape...)
		rng := rand.New(rand.NewPCG(8, 9))
		for i := range x.Data {
			x.Data[i] = float32(ns.Range[0] + rng.Float64()*(ns.Range[1]-ns.Range[0]))
		}
		run := func(m *onnx.ModelProto, ps []*train.Param) []float32 {
			sess := bakedSession(t, rt, m, ps)
			defer sess.Close()
			out, err := sess.Run(ctx, map[string]*inference.Tensor{Input: x})
			if err != nil {
				t.Fatal(err)
			}
			return out[Output].Data
		}
		a, b := run(tm, ps), run(im, inferenceParams(ps))
		// Unbaked, the inference form's own initial weights are the training form's.
		if c := run(im, nil); fmt.Sprint(c[:50]) != fmt.Sprint(run(im, inferenceParams(func() []*train.Param { p, _ := train.ParamsOf(tm, tnames); return p }()))[:50]) {
			t.Errorf("%+v: the inference form's initial head is not twice the training form's", s)
		}
		// The split convolutions sum in another order: a few float32 ulps apart.
		tol := 1e-5 * (ns.Range[1] - ns.Range[0])
		var moved int
		per, K := len(x.Data)/4, len(ns.Eps)
		for i := range a {
			if math.Abs(float64(a[i]-b[i])) > tol {
				t.Fatalf("%+v: value %d: %g (training form), %g (inference form)", s, i, a[i], b[i])
			}
			if math.Abs(float64(a[i]-x.Data[i/(K*per)*per+i%per])) > 0.1*ns.Eps[0] {
				moved++
			}
		}
		if moved < len(a)/2 {
			t.Errorf("%+v: only %d of %d outputs moved: the comparison checks too little", s, moved, len(a))
		}
	}
}

// bakedSession loads generator m with the values of ps baked in as initializers.
func bakedSession(t *testing.T, rt *inference.Runtime, m *onnx.ModelProto, ps []*train.Param) *inference.Session {
	t.Helper()
	baked, err := train.Bake(m, ps)
	if err != nil {
		t.Fatal(err)
	}
	data, err := onnx.Encode(baked)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := rt.NewSession(data)
	if err != nil {
		t.Fatal(err)
	}
	return sess
}
