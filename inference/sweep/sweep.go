// Package sweep runs attacks over many budgets, images, attacks and defences at once
// and summarises the outcomes: robust accuracy against ε for one image or a data set,
// the NIPS 2017 competition's attack × defence matrix with its scores and ranks, and
// the transfer matrix of surrogates against targets.
//
// Work is batched across images and ε values together: one gradient pass carries
// every (image, ε) pair of a batch, each row inside its own L∞ ball (see Attack). The
// package knows nothing of HTTP or files; cli/sweep.go and server/ adapt it.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
)

// MaxRows is the default number of (image, ε) rows in one pass. Per CPU-second, the
// built-in MLP runs 1.4× faster at 256 rows than at 16 and the CNNs the same, while
// on a busy machine passes of 1024 rows lost wall time (BenchmarkPGD10Sweep).
const MaxRows = 256

// Defence is a classifier an attack is judged against: a model alone, or behind an
// input transformation.
type Defence struct {
	Name      string `json:"name"`                // "mnist-cnn" or "mnist-cnn + JPEG q75"
	Model     string `json:"model"`               // the classifier's name
	Transform string `json:"transform,omitempty"` // the transform's name, "" for none
	Scoring
	// Net classifies images on the attack's pixel range.
	Net attack.Classifier `json:"-"`

	// A transform defence keeps its parts for its adaptive twin (see Adaptive).
	model     attack.Classifier
	transform defense.Transform
	format    defense.Format
	seed      uint64
	samples   int // EOT draws of the twin's attacks
}

// NewDefence puts transform kind id (with its parameter) in front of net; an empty id
// is the classifier alone. seed drives a random transform's draws.
func NewDefence(model string, net attack.Classifier, id string, param int, f defense.Format, seed uint64) (Defence, error) {
	if net == nil || model == "" {
		return Defence{}, errors.New("a defence needs a named classifier")
	}
	if id == "" {
		return Defence{Name: model, Model: model, Net: net}, nil
	}
	t, err := defense.NewTransform(id, param)
	if err != nil {
		return Defence{}, err
	}
	d, err := defense.New(t, net, f, seed)
	if err != nil {
		return Defence{}, err
	}
	k, _ := defense.KindByID(id)
	return Defence{Name: model + " + " + t.Name(), Model: model, Transform: t.Name(), Net: d,
		Scoring: Scoring{Mode: NonAdaptive, Caveat: k.Caveat}, model: net, transform: t, format: f, seed: seed}, nil
}

// ParseDefence reads a defence written as MODEL or MODEL+KIND[:PARAM], e.g.
// "mnist-cnn+jpeg:75" or "mnist-mlp+bits"; a missing parameter is the kind's default.
func ParseDefence(s string) (model, kind string, param int, err error) {
	s = strings.TrimSpace(s)
	model, rest, hasT := strings.Cut(s, "+")
	model = strings.TrimSpace(model)
	if model == "" {
		return "", "", 0, fmt.Errorf("defence %q names no model (write MODEL or MODEL+KIND[:PARAM])", s)
	}
	if !hasT {
		return model, "", 0, nil
	}
	id, p, hasP := strings.Cut(strings.TrimSpace(rest), ":")
	k, ok := defense.KindByID(id)
	if !ok {
		ids := make([]string, len(defense.Kinds))
		for i, k := range defense.Kinds {
			ids[i] = k.ID
		}
		return "", "", 0, fmt.Errorf("defence %q: unknown transform %q (choose one of %s)", s, id, strings.Join(ids, ", "))
	}
	param = k.Default
	if hasP {
		if _, err := fmt.Sscanf(strings.TrimSpace(p), "%d", &param); err != nil || fmt.Sprint(param) != strings.TrimSpace(p) {
			return "", "", 0, fmt.Errorf("defence %q: %s must be a whole number", s, k.Param)
		}
	}
	if param < k.Min || param > k.Max {
		return "", "", 0, fmt.Errorf("defence %q: %s must be between %d and %d", s, k.Param, k.Min, k.Max)
	}
	return model, k.ID, param, nil
}

// Generator is a trained attack network: one pass gives one adversarial image per
// head, each of budget Eps()[k]. *attack.Network is one.
type Generator interface {
	Name() string
	Eps() []float32
	Generate(ctx context.Context, x *inference.Tensor) ([]*inference.Tensor, error)
}

// Attack makes adversarial images for any budget: an iterative or black-box attack
// on its surrogates (Config, with Eps set per row), or an attack network.
type Attack struct {
	// Name is what reports call it: "pgd" or "attack network atn-mnist".
	Name string
	// Config is the attack's parameters; Eps and Seed are set per call, and Range
	// and Layout must be the images'. Alpha, when set, is the step for every ε;
	// otherwise each ε gets its own default (ε/steps, PGD 2.5ε/steps, FGSM ε).
	Config     attack.Config
	Surrogates []attack.Model
	// Network replaces Config and Surrogates.
	Network Generator
}

// Info describes an attack for reports.
type Info struct {
	Name       string   `json:"name"`
	Method     string   `json:"method"`
	Steps      int      `json:"steps,omitempty"`
	Alpha      string   `json:"alpha,omitempty"` // "ε/steps", "2.5ε/steps", "ε" or a value
	Loss       string   `json:"loss,omitempty"`
	Restarts   int      `json:"restarts,omitempty"`
	Queries    int      `json:"queries,omitempty"`
	Surrogates []string `json:"surrogates,omitempty"`
	Network    string   `json:"network,omitempty"`
	// Heads are an attack network's budgets; an image gets the largest head within its ε.
	Heads []float64 `json:"heads,omitempty"`
}

// Info is a's description.
func (a *Attack) Info() Info {
	if a.Network != nil {
		in := Info{Name: a.Name, Method: string(attack.AttackNetwork), Network: a.Network.Name()}
		for _, e := range a.Network.Eps() {
			in.Heads = append(in.Heads, round6(float64(e)))
		}
		return in
	}
	c := a.Config
	c.Eps = 1 // any positive budget: only the step rule is reported
	c = c.Defaults()
	in := Info{Name: a.Name, Method: string(c.Method), Loss: string(c.Loss)}
	if c.Method.BlackBox() {
		in.Loss = ""
		in.Queries = c.Queries
	} else {
		in.Steps = c.Steps
		switch {
		case a.Config.Alpha > 0:
			in.Alpha = fmt.Sprint(a.Config.Alpha)
		case c.Method == attack.FGSM:
			in.Alpha = "ε"
		case c.Method == attack.PGD:
			in.Alpha = "2.5ε/steps"
		default:
			in.Alpha = "ε/steps"
		}
	}
	if c.Method == attack.PGD {
		in.Restarts = c.Restarts
	}
	for _, m := range a.Surrogates {
		in.Surrogates = append(in.Surrogates, m.Name)
	}
	return in
}

// Check reports an attack that cannot run, before any pass.
func (a *Attack) Check() error {
	if a == nil {
		return errors.New("no attack")
	}
	if a.Name == "" {
		return errors.New("an attack needs a name")
	}
	if a.Network != nil {
		if len(a.Network.Eps()) == 0 {
			return fmt.Errorf("attack network %s has no ε heads", a.Network.Name())
		}
		return nil
	}
	if len(a.Surrogates) == 0 {
		return fmt.Errorf("attack %s: no model to attack", a.Name)
	}
	c := a.Config
	c.Eps = min(1, c.Range[1]-c.Range[0])
	if c.Range == [2]float32{} {
		c.Eps = 1
	}
	c = c.Defaults()
	if err := c.Validate(); err != nil {
		return fmt.Errorf("attack %s: %w", a.Name, err)
	}
	if c.Target != attack.Untargeted {
		return fmt.Errorf("attack %s: sweeps and matrices judge untargeted attacks (misclassification), so leave the target out", a.Name)
	}
	for _, m := range a.Surrogates {
		if m.Net == nil || m.Name == "" {
			return fmt.Errorf("attack %s: every model needs a name and a network", a.Name)
		}
		if _, ok := m.Net.(attack.Differentiable); !ok && !c.Method.BlackBox() {
			return fmt.Errorf("attack %s: %s needs gradients, and model %s gives predictions only", a.Name, c.Method, m.Name)
		}
	}
	return nil
}

// classify runs every defence on x and returns their top classes; probs, when
// non-nil, receives each defence's softmax rows.
func classify(ctx context.Context, defs []Defence, x *inference.Tensor, wantProbs bool) (pred [][]int, probs [][][]float32, err error) {
	n := int(x.Shape[0])
	pred = make([][]int, len(defs))
	if wantProbs {
		probs = make([][][]float32, len(defs))
	}
	for d, def := range defs {
		l, err := def.Net.Predict(ctx, x)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, fmt.Errorf("defence %s: %w", def.Name, err)
		}
		if l == nil || len(l.Shape) != 2 || int(l.Shape[0]) != n || l.Shape[1] < 2 || l.Validate() != nil {
			var shape []int64
			if l != nil {
				shape = l.Shape
			}
			return nil, nil, fmt.Errorf("defence %s returned scores of shape %v for %d images", def.Name, shape, n)
		}
		c := int(l.Shape[1])
		pred[d] = make([]int, n)
		if wantProbs {
			probs[d] = make([][]float32, n)
		}
		for i := range n {
			row := l.Data[i*c : (i+1)*c]
			best := 0
			for j, v := range row {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return nil, nil, fmt.Errorf("defence %s returned a non-finite score", def.Name)
				}
				if v > row[best] {
					best = j
				}
			}
			pred[d][i] = best
			if wantProbs {
				p := append([]float32(nil), row...)
				inference.Softmax(p)
				probs[d][i] = p
			}
		}
	}
	return pred, probs, nil
}

// checkDefences validates a defence list.
func checkDefences(defs []Defence) error {
	if len(defs) == 0 {
		return errors.New("no defence to judge the attack on")
	}
	seen := map[string]bool{}
	for _, d := range defs {
		if d.Net == nil || d.Name == "" {
			return errors.New("every defence needs a name and a classifier")
		}
		if seen[d.Name] {
			return fmt.Errorf("defence %s is listed twice", d.Name)
		}
		seen[d.Name] = true
	}
	return nil
}

// checkImages validates images [N, ...] on rng and their labels.
func checkImages(x *inference.Tensor, labels []int, rng [2]float32) error {
	if x == nil {
		return errors.New("no images")
	}
	if err := x.Validate(); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if len(x.Shape) < 2 || x.Shape[0] < 1 || x.Numel() == 0 {
		return fmt.Errorf("images must be a non-empty batch [N, ...], got shape %v", x.Shape)
	}
	if len(labels) != int(x.Shape[0]) {
		return fmt.Errorf("%d labels for %d images", len(labels), x.Shape[0])
	}
	for i, l := range labels {
		if l < 0 {
			return fmt.Errorf("label %d of image %d is negative", l, i)
		}
	}
	if !(rng[0] < rng[1]) {
		return fmt.Errorf("pixel range [%g,%g] is empty", rng[0], rng[1])
	}
	for i, v := range x.Data {
		if !(v >= rng[0] && v <= rng[1]) {
			return fmt.Errorf("image value %g at index %d is outside the pixel range [%g,%g]", v, i, rng[0], rng[1])
		}
	}
	return nil
}

// rows copies the listed images of x into a new batch.
func rows(x *inference.Tensor, idx []int) *inference.Tensor {
	per := x.Numel() / int(x.Shape[0])
	out := inference.NewTensor(append([]int64{int64(len(idx))}, x.Shape[1:]...)...)
	for j, i := range idx {
		copy(out.Data[j*per:(j+1)*per], x.Data[i*per:(i+1)*per])
	}
	return out
}

// slice is images [from, to) of x, copied.
func slice(x *inference.Tensor, from, to int) *inference.Tensor {
	per := x.Numel() / int(x.Shape[0])
	out := inference.NewTensor(append([]int64{int64(to - from)}, x.Shape[1:]...)...)
	copy(out.Data, x.Data[from*per:to*per])
	return out
}

// Eps255 is a budget in /255 steps of the range.
func Eps255(eps float32, rng [2]float32) float64 {
	return math.Round(inference.EpsOn(eps, rng).Levels()*1e4) / 1e4
}

func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }
