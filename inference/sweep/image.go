package sweep

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"gibbon/inference"
)

// ImageSpec is a sweep of one image over budgets.
type ImageSpec struct {
	Attack   *Attack
	Eps      []float32 // ascending, on Range; 0 is the clean image
	Range    [2]float32
	Defences []Defence
	Image    *inference.Tensor // [1, ...] on Range
	// Label is the true class; −1 takes the attacked models' clean prediction (an
	// attack network's: the first defence's).
	Label int
	// Labels name the classes in reports (optional).
	Labels []string
	Seed   int64
	// Chunk is how many budgets one pass carries; 0 means 1, so points arrive one by
	// one. Results do not depend on it (see RowSeed), but for an adaptive twin of a
	// random transform, whose EOT draws are taken a pass at a time.
	Chunk int
}

// Point is the sweep at one budget.
type Point struct {
	Index  int     `json:"index"`
	Eps    float64 `json:"eps"`
	Eps255 float64 `json:"eps_255"`
	// Linf255 is the measured L∞ distance of the adversarial image, in /255 steps.
	Linf255  float64        `json:"linf_255"`
	Defences []DefencePoint `json:"defences"`
	// Adv is the adversarial image [1, ...]; it belongs to the caller after the callback.
	Adv *inference.Tensor `json:"-"`
}

// DefencePoint is one defence's answer at one budget.
type DefencePoint struct {
	Top1      int     `json:"top1"`
	Top1Label string  `json:"top1_label,omitempty"`
	Top1Prob  float64 `json:"top1_prob"`
	// TrueProb is the probability of the true class; WrongProb that of the most
	// probable other class, WrongClass.
	TrueProb   float64 `json:"true_prob"`
	WrongProb  float64 `json:"wrong_prob"`
	WrongClass int     `json:"wrong_class"`
	WrongLabel string  `json:"wrong_label,omitempty"`
	// Flipped: the top class is not the true class.
	Flipped bool `json:"flipped"`
}

// ImageDefence is a defence's summary: the smallest budget that flips it.
type ImageDefence struct {
	Name      string `json:"name"`
	Model     string `json:"model"`
	Transform string `json:"transform,omitempty"`
	// Scoring labels a transform defence: an adaptive twin answers on the images the
	// attack makes through its transform, not on the point's Adv.
	Scoring
	// FlipIndex is the first point where the defence's top class is not the true
	// class (−1: never); FlipEps its budget (nil: never).
	FlipIndex int      `json:"flip_index"`
	FlipEps   *float64 `json:"flip_eps"`
}

// ImageResult is a finished sweep of one image.
type ImageResult struct {
	Schema      string         `json:"schema"`
	Label       int            `json:"label"`
	LabelName   string         `json:"label_name,omitempty"`
	Attack      Info           `json:"attack"`
	Range       []float64      `json:"range"`
	Eps         []float64      `json:"eps"`
	Eps255      []float64      `json:"eps_255"`
	Seed        int64          `json:"seed"`
	Defences    []ImageDefence `json:"defences"`
	Points      []Point        `json:"points"`
	WallSeconds float64        `json:"wall_seconds"`
}

// RunImage attacks the image at every budget, chunk by chunk, and reports each point
// to onPoint (may be nil) as soon as it is judged.
func RunImage(ctx context.Context, spec ImageSpec, onPoint func(Point) error) (*ImageResult, error) {
	if err := spec.Attack.Check(); err != nil {
		return nil, err
	}
	if spec.Image == nil || len(spec.Image.Shape) < 2 || spec.Image.Shape[0] != 1 {
		var shape []int64
		if spec.Image != nil {
			shape = spec.Image.Shape
		}
		return nil, fmt.Errorf("a sweep of one image takes an image [1, ...], got shape %v", shape)
	}
	if err := CheckGrid(spec.Eps, spec.Range); err != nil {
		return nil, err
	}
	if err := checkDefences(spec.Defences); err != nil {
		return nil, err
	}
	if spec.Chunk < 0 {
		return nil, errors.New("chunk size must not be negative")
	}
	label := spec.Label
	if label < 0 {
		var err error
		if label, err = cleanLabel(ctx, spec); err != nil {
			return nil, err
		}
	}
	if err := checkImages(spec.Image, []int{label}, spec.Range); err != nil {
		return nil, err
	}
	name := func(c int) string {
		if c >= 0 && c < len(spec.Labels) {
			return spec.Labels[c]
		}
		return ""
	}
	res := &ImageResult{Schema: SchemaImage, Label: label, LabelName: name(label), Attack: spec.Attack.Info(),
		Range: []float64{float64(spec.Range[0]), float64(spec.Range[1])}, Seed: spec.Seed}
	for _, e := range spec.Eps {
		res.Eps = append(res.Eps, round6(float64(e)))
		res.Eps255 = append(res.Eps255, Eps255(e, spec.Range))
	}
	for _, d := range spec.Defences {
		res.Defences = append(res.Defences, ImageDefence{Name: d.Name, Model: d.Model, Transform: d.Transform, Scoring: scoringFor(d, spec.Attack), FlipIndex: -1})
	}
	chunk := max(spec.Chunk, 1)
	start := time.Now()
	for from := 0; from < len(spec.Eps); from += chunk {
		to := min(len(spec.Eps), from+chunk)
		eps := spec.Eps[from:to]
		j, err := attackAndJudge(ctx, spec.Attack, spec.Defences, spec.Image, []int{label}, eps, []int64{spec.Seed}, true)
		if err != nil {
			return nil, err
		}
		adv, pred, probs := j.adv, j.pred, j.probs
		for k := range eps {
			idx := from + k
			pt := Point{Index: idx, Eps: res.Eps[idx], Eps255: res.Eps255[idx], Adv: slice(adv, k, k+1)}
			pt.Linf255 = linf255(pt.Adv.Data, spec.Image.Data, spec.Range)
			for d := range spec.Defences {
				p := probs[d][k]
				top := pred[d][k]
				dp := DefencePoint{Top1: top, Top1Label: name(top), Top1Prob: round6(float64(p[top])), WrongClass: -1, Flipped: top != label}
				if label < len(p) {
					dp.TrueProb = round6(float64(p[label]))
				}
				for c, v := range p {
					if c != label && (dp.WrongClass < 0 || v > p[dp.WrongClass]) {
						dp.WrongClass = c
					}
				}
				if dp.WrongClass >= 0 {
					dp.WrongProb, dp.WrongLabel = round6(float64(p[dp.WrongClass])), name(dp.WrongClass)
				}
				pt.Defences = append(pt.Defences, dp)
				if dp.Flipped && res.Defences[d].FlipIndex < 0 {
					e := res.Eps[idx]
					res.Defences[d].FlipIndex, res.Defences[d].FlipEps = idx, &e
				}
			}
			res.Points = append(res.Points, pt)
			if onPoint != nil {
				if err := onPoint(pt); err != nil {
					return nil, err
				}
			}
		}
	}
	res.WallSeconds = round6(time.Since(start).Seconds())
	return res, nil
}

// TrueLabel is spec.Label, or when it is −1 the label RunImage will use: the attacked
// models' clean prediction.
func (spec ImageSpec) TrueLabel(ctx context.Context) (int, error) {
	if spec.Label >= 0 {
		return spec.Label, nil
	}
	if spec.Attack == nil || spec.Image == nil || len(spec.Defences) == 0 {
		return 0, errors.New("the sweep needs an attack, an image and a defence")
	}
	return cleanLabel(ctx, spec)
}

// cleanLabel is the attacked models' prediction on the clean image (averaged logits),
// or the first defence's for an attack network.
func cleanLabel(ctx context.Context, spec ImageSpec) (int, error) {
	var sum []float32
	add := func(name string, net interface {
		Predict(context.Context, *inference.Tensor) (*inference.Tensor, error)
	}) error {
		l, err := net.Predict(ctx, spec.Image)
		if err != nil {
			return modelErr(ctx, name, err)
		}
		if l == nil || l.Validate() != nil || len(l.Shape) != 2 || l.Shape[0] != 1 || (sum != nil && len(l.Data) != len(sum)) {
			return fmt.Errorf("model %s returned scores that are not one row per image", name)
		}
		if sum == nil {
			sum = make([]float32, len(l.Data))
		}
		for j, v := range l.Data {
			sum[j] += v
		}
		return nil
	}
	if spec.Attack.Network != nil {
		if err := add(spec.Defences[0].Name, spec.Defences[0].Net); err != nil {
			return 0, err
		}
	} else {
		for _, m := range spec.Attack.Surrogates {
			if err := add(m.Name, m.Net); err != nil {
				return 0, err
			}
		}
	}
	best := 0
	for j, v := range sum {
		if v > sum[best] {
			best = j
		}
	}
	return best, nil
}

// linf255 is the L∞ distance in /255 steps of the range.
func linf255(a, b []float32, rng [2]float32) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return round6(inference.Eps{Value: m, Range: rng}.Levels())
}
