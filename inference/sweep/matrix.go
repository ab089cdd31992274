package sweep

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"gibbon/inference"
)

// grid is the raw outcome of attacks × defences on a set: every defence's answer
// on every attack's images, and on the clean ones.
type grid struct {
	labels []int
	clean  [][]int   // [defence][image]
	pred   [][][]int // [attack][defence][image]
	eps    []float32 // per batch
	wall   []time.Duration
}

type gridSpec struct {
	attacks  []*Attack
	defences []Defence
	images   *inference.Tensor
	labels   []int
	rng      [2]float32
	batch    int
	seed     int64
	epsFor   func(batch int) float32
	onBatch  func(g *grid, done int) error
}

func (s gridSpec) check() error {
	if len(s.attacks) == 0 {
		return errors.New("no attack")
	}
	seen := map[string]bool{}
	for _, a := range s.attacks {
		if err := a.Check(); err != nil {
			return err
		}
		if seen[a.Name] {
			return fmt.Errorf("attack %s is listed twice", a.Name)
		}
		seen[a.Name] = true
	}
	if err := checkDefences(s.defences); err != nil {
		return err
	}
	if s.batch < 0 {
		return errors.New("batch size must not be negative")
	}
	return checkImages(s.images, s.labels, s.rng)
}

func runGrid(ctx context.Context, s gridSpec) (*grid, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	n := len(s.labels)
	g := &grid{labels: s.labels, clean: make([][]int, len(s.defences)), pred: make([][][]int, len(s.attacks)),
		wall: make([]time.Duration, len(s.attacks))}
	for a := range s.attacks {
		g.pred[a] = make([][]int, len(s.defences))
	}
	batch := s.batch
	if batch == 0 {
		batch = 100
	}
	for b, from := 0, 0; from < n; b, from = b+1, from+batch {
		to := min(n, from+batch)
		x := slice(s.images, from, to)
		labels := s.labels[from:to]
		eps := s.epsFor(b)
		g.eps = append(g.eps, eps)
		clean, _, err := classify(ctx, s.defences, x, false)
		if err != nil {
			return nil, err
		}
		for d := range s.defences {
			g.clean[d] = append(g.clean[d], clean[d]...)
		}
		seeds := make([]int64, to-from)
		for i := range seeds {
			seeds[i] = s.seed + int64(from+i)
		}
		for a, at := range s.attacks {
			j, err := attackAndJudge(ctx, at, s.defences, x, labels, []float32{eps}, seeds, false)
			if err != nil {
				return nil, err
			}
			g.wall[a] += j.wall
			for d := range s.defences {
				g.pred[a][d] = append(g.pred[a][d], j.pred[d]...)
			}
		}
		if s.onBatch != nil {
			if err := s.onBatch(g, to); err != nil {
				return nil, err
			}
		}
	}
	return g, nil
}

// CompeteSpec is the NIPS 2017 competition's setting: every untargeted attack against
// every defence, on batches whose budget is drawn from a fixed set. Adaptive twins
// among the defences (Defence.Adaptive) are scored beside the competition, not in it.
type CompeteSpec struct {
	Dataset  string
	Attacks  []*Attack
	Defences []Defence
	Images   *inference.Tensor // [N, ...] on Range
	Labels   []int
	Range    [2]float32
	// EpsSet are the budgets a batch may draw (the competition: 4, 8, 12, 16 /255).
	EpsSet []float32
	// Batch is images per batch (the competition's: 100); 0 means 100.
	Batch int
	Seed  int64
	// KeepPredictions keeps the raw outcomes (every answer) in the result.
	KeepPredictions bool
}

// Matrix is the competition's result.
type Matrix struct {
	Schema    string    `json:"schema"`
	Dataset   string    `json:"dataset"`
	N         int       `json:"n"`
	Total     int       `json:"total"`
	Batch     int       `json:"batch_images"`
	Range     []float64 `json:"range"`
	EpsSet    []float64 `json:"eps_set"`
	EpsSet255 []float64 `json:"eps_set_255"`
	// BatchEps is the budget each batch drew, in order.
	BatchEps []float64 `json:"batch_eps"`
	Seed     int64     `json:"seed"`
	Attacks  []Entrant `json:"attacks"`
	// Defences are the competition's, each adaptive twin after its defence: a twin's
	// column counts what each attack did through its transform (an attack network's
	// own images: it cannot see through one).
	Defences []Entrant `json:"defences"`
	// Misclassified[a][d] counts the images attack a made defence d get wrong.
	Misclassified [][]int `json:"misclassified"`
	// Labels, CleanPredictions[d][i] and Predictions[a][d][i] are the raw outcomes
	// the scores are sums of (KeepPredictions).
	Labels           []int     `json:"labels,omitempty"`
	CleanPredictions [][]int   `json:"clean_predictions,omitempty"`
	Predictions      [][][]int `json:"predictions,omitempty"`
	WallSeconds      float64   `json:"wall_seconds"`
}

// Entrant is an attack or a defence with its competition score and rank.
type Entrant struct {
	Name      string `json:"name"`
	Attack    *Info  `json:"attack,omitempty"`
	Model     string `json:"model,omitempty"`
	Transform string `json:"transform,omitempty"`
	// Scoring labels a transform defence (which way it was attacked).
	Scoring
	// Score: an attack's misclassifications summed over the competition's defences
	// (adaptive twins left out); a defence's correct answers summed over attacks. Rate
	// is Score over its maximum.
	Score int     `json:"score"`
	Rate  float64 `json:"rate"`
	// Rank is 1 for the best score; equal scores share a rank (1, 2, 2, 4). Defences
	// are ranked among the competition's; an adaptive twin gets the rank it would have
	// in its defence's place.
	Rank int `json:"rank"`
	// CleanCorrect (defences) counts correct answers on the clean images.
	CleanCorrect int `json:"clean_correct,omitempty"`
	// WallSeconds (attacks) is the time spent making the adversarial images.
	WallSeconds float64 `json:"wall_seconds,omitempty"`
}

// Compete runs the competition. onBatch (may be nil) sees the partial matrix after
// each batch.
func Compete(ctx context.Context, spec CompeteSpec, onBatch func(*Matrix) error) (*Matrix, error) {
	if err := CheckGrid(spec.EpsSet, spec.Range); err != nil {
		return nil, err
	}
	for _, e := range spec.EpsSet {
		if e == 0 {
			return nil, errors.New("the competition's budgets must be positive (0 would leave a batch clean)")
		}
	}
	draw := rand.New(rand.NewPCG(uint64(spec.Seed), 0x6a09e667f3bcc909))
	start := time.Now()
	m := &Matrix{Schema: SchemaCompete, Dataset: spec.Dataset, Total: len(spec.Labels), Batch: spec.Batch, Seed: spec.Seed,
		Range: []float64{float64(spec.Range[0]), float64(spec.Range[1])}}
	if m.Batch == 0 {
		m.Batch = 100
	}
	for _, e := range spec.EpsSet {
		m.EpsSet = append(m.EpsSet, round6(float64(e)))
		m.EpsSet255 = append(m.EpsSet255, Eps255(e, spec.Range))
	}
	gs := gridSpec{attacks: spec.Attacks, defences: spec.Defences, images: spec.Images, labels: spec.Labels, rng: spec.Range,
		batch: spec.Batch, seed: spec.Seed, epsFor: func(int) float32 { return spec.EpsSet[draw.IntN(len(spec.EpsSet))] }}
	gs.onBatch = func(g *grid, done int) error {
		if onBatch == nil {
			return nil
		}
		m.fill(g, spec, done, time.Since(start), false)
		return onBatch(m)
	}
	g, err := runGrid(ctx, gs)
	if err != nil {
		return nil, err
	}
	m.fill(g, spec, len(spec.Labels), time.Since(start), spec.KeepPredictions)
	return m, nil
}

func (m *Matrix) fill(g *grid, spec CompeteSpec, done int, wall time.Duration, raw bool) {
	m.N = done
	m.BatchEps = m.BatchEps[:0]
	for _, e := range g.eps {
		m.BatchEps = append(m.BatchEps, round6(float64(e)))
	}
	A, D := len(spec.Attacks), len(spec.Defences)
	m.Misclassified = make([][]int, A)
	for a := range A {
		m.Misclassified[a] = make([]int, D)
		for d := range D {
			for i, p := range g.pred[a][d] {
				if p != g.labels[i] {
					m.Misclassified[a][d]++
				}
			}
		}
	}
	m.Attacks, m.Defences = make([]Entrant, A), make([]Entrant, D)
	competitors := 0
	for _, def := range spec.Defences {
		if competing(def) {
			competitors++
		}
	}
	for a, at := range spec.Attacks {
		info := at.Info()
		e := Entrant{Name: at.Name, Attack: &info, WallSeconds: round6(g.wall[a].Seconds())}
		for d, def := range spec.Defences {
			if competing(def) {
				e.Score += m.Misclassified[a][d]
			}
		}
		e.Rate = round6(float64(e.Score) / float64(max(1, done*competitors)))
		m.Attacks[a] = e
	}
	for d, def := range spec.Defences {
		e := Entrant{Name: def.Name, Model: def.Model, Transform: def.Transform, Scoring: scoringFor(def, spec.Attacks...)}
		for a := range A {
			e.Score += done - m.Misclassified[a][d]
		}
		for i, p := range g.clean[d] {
			if p == g.labels[i] {
				e.CleanCorrect++
			}
		}
		e.Rate = round6(float64(e.Score) / float64(max(1, done*A)))
		m.Defences[d] = e
	}
	rank(m.Attacks, func(int) bool { return true })
	rank(m.Defences, func(d int) bool { return competing(spec.Defences[d]) })
	m.WallSeconds = round6(wall.Seconds())
	if raw {
		m.Labels, m.CleanPredictions, m.Predictions = g.labels[:done], g.clean, g.pred
	}
}

// rank gives competition ranks: 1 + the number of competing entrants with a higher
// score; an entrant that does not compete (an adaptive twin) is ranked against the
// competitors but its own defence.
func rank(es []Entrant, competes func(int) bool) {
	for i := range es {
		es[i].Rank = 1
		for j := range es {
			if competes(j) && es[j].Score > es[i].Score && !twinOf(es[i].Name, es[j].Name) {
				es[i].Rank++
			}
		}
	}
}

// Clone is a deep copy without the raw outcomes (for a partial result).
func (m *Matrix) Clone() *Matrix {
	c := *m
	c.Range, c.EpsSet, c.EpsSet255, c.BatchEps = append([]float64(nil), m.Range...), append([]float64(nil), m.EpsSet...),
		append([]float64(nil), m.EpsSet255...), append([]float64(nil), m.BatchEps...)
	c.Attacks, c.Defences = append([]Entrant(nil), m.Attacks...), append([]Entrant(nil), m.Defences...)
	c.Misclassified = make([][]int, len(m.Misclassified))
	for i, r := range m.Misclassified {
		c.Misclassified[i] = append([]int(nil), r...)
	}
	c.Labels, c.CleanPredictions, c.Predictions = nil, nil, nil
	return &c
}

// TransferSpec crafts adversarial images on each source (an attack on one surrogate,
// or an attack network) and judges them on every target at one budget.
type TransferSpec struct {
	Dataset string
	Sources []*Attack
	Targets []Defence
	Images  *inference.Tensor
	Labels  []int
	Range   [2]float32
	Eps     float32
	// Batch is images per pass; 0 means MaxRows.
	Batch           int
	Seed            int64
	KeepPredictions bool
}

// TransferMatrix is the success of each source's images on each target.
type TransferMatrix struct {
	Schema  string        `json:"schema"`
	Dataset string        `json:"dataset"`
	N       int           `json:"n"`
	Total   int           `json:"total"`
	Range   []float64     `json:"range"`
	Eps     float64       `json:"eps"`
	Eps255  float64       `json:"eps_255"`
	Seed    int64         `json:"seed"`
	Sources []Info        `json:"sources"`
	Targets []TargetClean `json:"targets"`
	// Fooled[s][t] counts images target t classifies correctly when clean and wrongly
	// after source s's attack; Rate[s][t] = Fooled / CleanCorrect (the transfer
	// success). Wrong[s][t] counts every wrong answer, clean mistakes included.
	Fooled [][]int     `json:"fooled"`
	Rate   [][]float64 `json:"rate"`
	Wrong  [][]int     `json:"wrong"`
	// Raw outcomes (KeepPredictions).
	Labels           []int     `json:"labels,omitempty"`
	CleanPredictions [][]int   `json:"clean_predictions,omitempty"`
	Predictions      [][][]int `json:"predictions,omitempty"`
	WallSeconds      float64   `json:"wall_seconds"`
}

// TargetClean is a target with its clean accuracy.
type TargetClean struct {
	Name          string  `json:"name"`
	Model         string  `json:"model"`
	Transform     string  `json:"transform,omitempty"`
	CleanCorrect  int     `json:"clean_correct"`
	CleanAccuracy float64 `json:"clean_accuracy"`
}

// Transfer runs the transfer matrix. onBatch (may be nil) sees partial results.
func Transfer(ctx context.Context, spec TransferSpec, onBatch func(*TransferMatrix) error) (*TransferMatrix, error) {
	if err := CheckGrid([]float32{spec.Eps}, spec.Range); err != nil {
		return nil, err
	}
	if spec.Eps == 0 {
		return nil, errors.New("the transfer budget must be positive")
	}
	for _, d := range spec.Targets {
		if d.Mode == Adaptive {
			return nil, fmt.Errorf("target %s: a transfer matrix judges images made on other models, so no target is attacked through its transform", d.Name)
		}
	}
	start := time.Now()
	t := &TransferMatrix{Schema: SchemaTransfer, Dataset: spec.Dataset, Total: len(spec.Labels), Seed: spec.Seed,
		Range: []float64{float64(spec.Range[0]), float64(spec.Range[1])}, Eps: round6(float64(spec.Eps)), Eps255: Eps255(spec.Eps, spec.Range)}
	batch := spec.Batch
	if batch == 0 {
		batch = MaxRows
	}
	gs := gridSpec{attacks: spec.Sources, defences: spec.Targets, images: spec.Images, labels: spec.Labels, rng: spec.Range,
		batch: batch, seed: spec.Seed, epsFor: func(int) float32 { return spec.Eps }}
	gs.onBatch = func(g *grid, done int) error {
		if onBatch == nil {
			return nil
		}
		t.fill(g, spec, done, time.Since(start), false)
		return onBatch(t)
	}
	g, err := runGrid(ctx, gs)
	if err != nil {
		return nil, err
	}
	t.fill(g, spec, len(spec.Labels), time.Since(start), spec.KeepPredictions)
	return t, nil
}

func (t *TransferMatrix) fill(g *grid, spec TransferSpec, done int, wall time.Duration, raw bool) {
	t.N = done
	S, T := len(spec.Sources), len(spec.Targets)
	t.Sources = make([]Info, S)
	for s, a := range spec.Sources {
		t.Sources[s] = a.Info()
	}
	t.Targets = make([]TargetClean, T)
	for d, def := range spec.Targets {
		tc := TargetClean{Name: def.Name, Model: def.Model, Transform: def.Transform}
		for i, p := range g.clean[d] {
			if p == g.labels[i] {
				tc.CleanCorrect++
			}
		}
		tc.CleanAccuracy = round6(float64(tc.CleanCorrect) / float64(max(1, done)))
		t.Targets[d] = tc
	}
	t.Fooled, t.Wrong, t.Rate = make([][]int, S), make([][]int, S), make([][]float64, S)
	for s := range S {
		t.Fooled[s], t.Wrong[s], t.Rate[s] = make([]int, T), make([]int, T), make([]float64, T)
		for d := range T {
			for i, p := range g.pred[s][d] {
				if p != g.labels[i] {
					t.Wrong[s][d]++
					if g.clean[d][i] == g.labels[i] {
						t.Fooled[s][d]++
					}
				}
			}
			if c := t.Targets[d].CleanCorrect; c > 0 {
				t.Rate[s][d] = round6(float64(t.Fooled[s][d]) / float64(c))
			}
		}
	}
	t.WallSeconds = round6(wall.Seconds())
	if raw {
		t.Labels, t.CleanPredictions, t.Predictions = g.labels[:done], g.clean, g.pred
	}
}

// Clone is a deep copy without the raw outcomes.
func (t *TransferMatrix) Clone() *TransferMatrix {
	c := *t
	c.Range = append([]float64(nil), t.Range...)
	c.Sources, c.Targets = append([]Info(nil), t.Sources...), append([]TargetClean(nil), t.Targets...)
	cp := func(v [][]int) [][]int {
		out := make([][]int, len(v))
		for i, r := range v {
			out[i] = append([]int(nil), r...)
		}
		return out
	}
	c.Fooled, c.Wrong = cp(t.Fooled), cp(t.Wrong)
	c.Rate = make([][]float64, len(t.Rate))
	for i, r := range t.Rate {
		c.Rate[i] = append([]float64(nil), r...)
	}
	c.Labels, c.CleanPredictions, c.Predictions = nil, nil, nil
	return &c
}
