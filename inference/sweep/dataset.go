package sweep

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gibbon/inference"
)

// Schema versions of the JSON reports.
const (
	SchemaDataset  = "gibbon.sweep.dataset/1"
	SchemaImage    = "gibbon.sweep.image/1"
	SchemaCompete  = "gibbon.compete/1"
	SchemaTransfer = "gibbon.transfer/1"
)

// DatasetSpec is a robust-accuracy sweep over a labelled set.
type DatasetSpec struct {
	Dataset string // its name in reports, e.g. "mnist-test"
	Attack  *Attack
	// Eps are the budgets on Range, ascending; 0 is the clean accuracy.
	Eps      []float32
	Range    [2]float32
	Defences []Defence
	Images   *inference.Tensor // [N, ...] on Range
	Labels   []int
	// Batch is images per pass (each carries every ε); 0 means MaxRows/len(ε).
	Batch int
	Seed  int64
	// KeepPredictions keeps every defence's answer per image and ε in the result.
	KeepPredictions bool
}

// DatasetResult is robust accuracy against ε for every defence. A partial result (N <
// Total) is what a progress callback sees.
type DatasetResult struct {
	Schema   string    `json:"schema"`
	Dataset  string    `json:"dataset"`
	N        int       `json:"n"`     // images done
	Total    int       `json:"total"` // images to do
	Attack   Info      `json:"attack"`
	Range    []float64 `json:"range"`
	Eps      []float64 `json:"eps"`     // on Range
	Eps255   []float64 `json:"eps_255"` // in /255 steps of the range
	Seed     int64     `json:"seed"`
	Batch    int       `json:"batch_images"`
	Defences []Curve   `json:"defences"`
	// Wall is the time so far; ImagesPerSecond counts images, each attacked at every ε.
	WallSeconds     float64 `json:"wall_seconds"`
	ImagesPerSecond float64 `json:"images_per_second"`
}

// Curve is one defence's robust accuracy at each ε.
type Curve struct {
	Name      string `json:"name"`
	Model     string `json:"model"`
	Transform string `json:"transform,omitempty"`
	// Scoring labels a transform defence: an adaptive twin's curve is measured on the
	// images the attack makes through its transform.
	Scoring
	// Correct[k] counts images the defence still classifies correctly at Eps[k].
	Correct  []int     `json:"correct"`
	Accuracy []float64 `json:"accuracy"`
	// Predictions[k][i] is the defence's answer on image i at Eps[k] (KeepPredictions).
	Predictions [][]int `json:"predictions,omitempty"`
}

// RunDataset attacks the images batch by batch, every batch at every ε in one go, and
// classifies the results with every defence. onBatch (may be nil) sees the partial
// result after each batch; an error from it stops the sweep.
func RunDataset(ctx context.Context, spec DatasetSpec, onBatch func(*DatasetResult) error) (*DatasetResult, error) {
	if err := spec.Attack.Check(); err != nil {
		return nil, err
	}
	if err := checkImages(spec.Images, spec.Labels, spec.Range); err != nil {
		return nil, err
	}
	if err := CheckGrid(spec.Eps, spec.Range); err != nil {
		return nil, err
	}
	if err := checkDefences(spec.Defences); err != nil {
		return nil, err
	}
	if spec.Batch < 0 {
		return nil, errors.New("batch size must not be negative")
	}
	nEps := len(spec.Eps)
	batch := spec.Batch
	if batch == 0 {
		batch = max(1, MaxRows/nEps)
	}
	total := len(spec.Labels)
	res := &DatasetResult{Schema: SchemaDataset, Dataset: spec.Dataset, Total: total, Attack: spec.Attack.Info(),
		Range: []float64{float64(spec.Range[0]), float64(spec.Range[1])}, Seed: spec.Seed, Batch: batch}
	for _, e := range spec.Eps {
		res.Eps = append(res.Eps, round6(float64(e)))
		res.Eps255 = append(res.Eps255, Eps255(e, spec.Range))
	}
	for _, d := range spec.Defences {
		c := Curve{Name: d.Name, Model: d.Model, Transform: d.Transform, Scoring: scoringFor(d, spec.Attack), Correct: make([]int, nEps), Accuracy: make([]float64, nEps)}
		if spec.KeepPredictions {
			c.Predictions = make([][]int, nEps)
		}
		res.Defences = append(res.Defences, c)
	}
	start := time.Now()
	for from := 0; from < total; from += batch {
		to := min(total, from+batch)
		x := slice(spec.Images, from, to)
		labels := spec.Labels[from:to]
		seeds := make([]int64, to-from)
		for i := range seeds {
			seeds[i] = spec.Seed + int64(from+i)
		}
		j, err := attackAndJudge(ctx, spec.Attack, spec.Defences, x, labels, spec.Eps, seeds, false)
		if err != nil {
			return nil, err
		}
		pred := j.pred
		B := to - from
		for d := range spec.Defences {
			c := &res.Defences[d]
			for k := range nEps {
				p := pred[d][k*B : (k+1)*B]
				for i, l := range labels {
					if p[i] == l {
						c.Correct[k]++
					}
				}
				if spec.KeepPredictions {
					c.Predictions[k] = append(c.Predictions[k], p...)
				}
			}
		}
		res.N = to
		res.finish(time.Since(start))
		if onBatch != nil {
			if err := onBatch(res); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

func (r *DatasetResult) finish(wall time.Duration) {
	for d := range r.Defences {
		c := &r.Defences[d]
		for k, n := range c.Correct {
			c.Accuracy[k] = round6(float64(n) / float64(max(r.N, 1)))
		}
	}
	r.WallSeconds = round6(wall.Seconds())
	if s := wall.Seconds(); s > 0 {
		r.ImagesPerSecond = round6(float64(r.N) / s)
	}
}

// Clone is a deep copy (for a partial result kept past its callback).
func (r *DatasetResult) Clone() *DatasetResult {
	c := *r
	c.Range, c.Eps, c.Eps255 = append([]float64(nil), r.Range...), append([]float64(nil), r.Eps...), append([]float64(nil), r.Eps255...)
	c.Attack.Surrogates = append([]string(nil), r.Attack.Surrogates...)
	c.Defences = make([]Curve, len(r.Defences))
	for i, d := range r.Defences {
		d.Correct = append([]int(nil), d.Correct...)
		d.Accuracy = append([]float64(nil), d.Accuracy...)
		d.Predictions = nil
		c.Defences[i] = d
	}
	return &c
}

// HalfEps is, per defence, the smallest ε at which robust accuracy falls to half its
// clean value or below (−1 when it never does): a one-number summary of the curve.
func (r *DatasetResult) HalfEps() []float64 {
	out := make([]float64, len(r.Defences))
	for d, c := range r.Defences {
		out[d] = -1
		if len(c.Accuracy) == 0 {
			continue
		}
		half := c.Accuracy[0] / 2
		for k, a := range c.Accuracy {
			if k > 0 && a <= half {
				out[d] = r.Eps[k]
				break
			}
		}
	}
	return out
}

func (r *DatasetResult) String() string {
	return fmt.Sprintf("%s: %d/%d images, %d ε values, %d defences", r.Dataset, r.N, r.Total, len(r.Eps), len(r.Defences))
}
