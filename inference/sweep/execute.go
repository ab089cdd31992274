package sweep

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/inference/mnist"
)

// Input is what a plan runs on: an image sweep's clean image (one image on the
// models' grid, [1, ...] on the range), or the data set's images.
type Input struct {
	Image *inference.Tensor // KindImage
	Set   *mnist.Set        // the other kinds: the MNIST test set
}

// Events are what an executing plan reports as it goes; any may be nil.
type Events struct {
	// Queued is the run's place in line while it waits for a runner (the server's
	// run queue, or a job queue's stream); Execute itself does not wait.
	Queued func(position, running, waiting int)
	// Started comes once the inputs are ready: total is the work to do (ε values
	// of an image sweep, images of a data set run).
	Started func(total, label int) error
	// Point is an image sweep's result at one ε.
	Point func(Point) error
	// Progress is a data set run's partial result after done images.
	Progress func(done int, partial any) error
}

// Outcome is a finished sweep or matrix: its result, and the gallery entry the
// server or the command line saves (nil, with NoSave saying why, when it cannot be
// saved). Image sweeps keep the attacked model's first flip as the entry's
// adversarial image, else the one at the largest ε. It is data only: a job
// queue's worker sends it to the web node as it is (gob).
type Outcome struct {
	Result  Result
	Entry   *gallery.Entry
	NoSave  string
	Seconds float64
}

// Result is a run's result, finished or partial: *ImageResult, *DatasetResult,
// *Matrix or *TransferMatrix, each of which writes itself as CSV (report.go).
type Result interface {
	WriteCSV(io.Writer) error
}

func init() {
	// An Outcome's Result (and a partial result) travels as gob through the job
	// queue: gob must know every type the interface holds.
	for _, r := range []Result{&ImageResult{}, &DatasetResult{}, &Matrix{}, &TransferMatrix{}} {
		gob.Register(r)
	}
}

// WriteCSV writes the result as CSV.
func (o *Outcome) WriteCSV(w io.Writer) error { return o.Result.WriteCSV(w) }

// Job is a run as data, what a job queue carries to a worker, which plans it
// again on its own models (the same files, by checksum) and loads its input with
// LoadInput.
type Job struct {
	// Settings are the run's as planned (Plan.Settings: defaults filled in, every
	// model named), so that planning them again gives the same plan.
	Settings Settings
	// Image is an image sweep's clean image as a PNG on the models' 8-bit grid
	// (CleanPNG): what the sweep attacks, exactly.
	Image []byte
	// Limits are those the run was planned within; Timeout caps it once it starts.
	Limits  Limits
	Timeout time.Duration
}

// CleanPNG is an image sweep's clean image (on plan's grid) as the PNG a Job
// carries and a gallery entry keeps.
func (plan *Plan) CleanPNG(clean *inference.Tensor) ([]byte, error) {
	g := engine.NewGrid(plan.Contract)
	return engine.EncodePNG(g.Image(g.Quantize(clean.Data)))
}

// LoadInput is what job runs on: an image sweep's image read back from its PNG
// onto plan's grid, else the data set, from data.
func (plan *Plan) LoadInput(ctx context.Context, job Job, data *Datasets) (Input, error) {
	if plan.Settings.Kind != KindImage {
		set, err := data.MNISTTest(ctx)
		return Input{Set: set}, err
	}
	clean, err := engine.LoadImage(engine.Image{Data: job.Image, Exact: true}, plan.Contract)
	if err != nil {
		return Input{}, err
	}
	return Input{Image: engine.NewGrid(plan.Contract).Tensor(clean.Levels)}, nil
}

// Datasets are the data sets a process's runs use (a server's, a worker's),
// loaded on first use from the Go module cache and kept; a failed load is tried
// again the next time.
type Datasets struct {
	mu   sync.Mutex
	test *mnist.Set
}

// MNISTTest is the MNIST test set.
func (d *Datasets) MNISTTest(ctx context.Context) (*mnist.Set, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.test != nil {
		return d.test, nil
	}
	set, err := mnist.LoadTest(ctx)
	if err != nil {
		return nil, fmt.Errorf("the MNIST test set could not be loaded: %w", err)
	}
	d.test = set
	return set, nil
}

// Execute runs plan on in: the one executor behind the sweep, compete and
// transfer pages and commands.
func Execute(ctx context.Context, plan *Plan, in Input, ev Events) (*Outcome, error) {
	s := plan.Settings
	start := time.Now()
	progress := func(done int, partial any) error {
		if ev.Progress != nil {
			return ev.Progress(done, partial)
		}
		return nil
	}
	var x *inference.Tensor
	var labels []int
	if s.Kind != KindImage {
		if in.Set == nil {
			return nil, fmt.Errorf("a %s run needs the %s images", s.Kind, s.Dataset)
		}
		var err error
		if x, labels, err = plan.Contract.MNISTTensor(in.Set, 0, s.N); err != nil {
			return nil, err
		}
	}
	o := &Outcome{}
	var orig, adv []byte
	var linf255 float64
	switch s.Kind {
	case KindImage:
		spec := ImageSpec{Attack: plan.Attack, Eps: plan.Eps, Range: plan.Range, Defences: plan.Defences, Image: in.Image,
			Label: s.Label, Labels: plan.Labels, Seed: s.Seed, Chunk: 1}
		label, err := spec.TrueLabel(ctx)
		if err != nil {
			return nil, err
		}
		spec.Label = label
		if ev.Started != nil {
			if err := ev.Started(len(plan.Eps), label); err != nil {
				return nil, err
			}
		}
		res, err := RunImage(ctx, spec, func(p Point) error {
			if ev.Point != nil {
				return ev.Point(p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		o.Result = res
		g := engine.NewGrid(plan.Contract)
		if orig, err = plan.CleanPNG(in.Image); err != nil {
			return nil, err
		}
		if adv, err = engine.EncodePNG(g.Image(g.Quantize(res.Points[entryPoint(res, plan)].Adv.Data))); err != nil {
			return nil, err
		}
		for _, p := range res.Points {
			linf255 = max(linf255, p.Linf255)
		}
	case KindDataset:
		if ev.Started != nil {
			if err := ev.Started(len(labels), -1); err != nil {
				return nil, err
			}
		}
		res, err := RunDataset(ctx, DatasetSpec{Dataset: s.Dataset, Attack: plan.Attack, Eps: plan.Eps, Range: plan.Range,
			Defences: plan.Defences, Images: x, Labels: labels, Batch: s.Batch, Seed: s.Seed},
			func(r *DatasetResult) error { return progress(r.N, r.Clone()) })
		if err != nil {
			return nil, err
		}
		o.Result = res
	case KindCompete:
		if ev.Started != nil {
			if err := ev.Started(len(labels), -1); err != nil {
				return nil, err
			}
		}
		m, err := Compete(ctx, CompeteSpec{Dataset: s.Dataset, Attacks: plan.Attacks, Defences: plan.Defences, Images: x,
			Labels: labels, Range: plan.Range, EpsSet: plan.Eps, Batch: s.Batch, Seed: s.Seed},
			func(m *Matrix) error { return progress(m.N, m.Clone()) })
		if err != nil {
			return nil, err
		}
		o.Result = m
	case KindTransfer:
		if ev.Started != nil {
			if err := ev.Started(len(labels), -1); err != nil {
				return nil, err
			}
		}
		t, err := Transfer(ctx, TransferSpec{Dataset: s.Dataset, Sources: plan.Attacks, Targets: plan.Defences, Images: x,
			Labels: labels, Range: plan.Range, Eps: plan.Eps[0], Batch: s.Batch, Seed: s.Seed},
			func(t *TransferMatrix) error { return progress(t.N, t.Clone()) })
		if err != nil {
			return nil, err
		}
		o.Result = t
	default:
		return nil, fmt.Errorf("unknown kind %q", s.Kind)
	}
	o.Seconds = time.Since(start).Seconds()
	e, err := plan.Entry(o.Result, linf255, math.Round(o.Seconds*1000))
	switch {
	case err != nil:
		o.NoSave = err.Error()
	case len(e.Payload) > gallery.MaxPayloadBytes:
		o.NoSave = fmt.Sprintf("its results are %d bytes, more than a gallery entry holds (%d)", len(e.Payload), gallery.MaxPayloadBytes)
	default:
		e.Original, e.Adversarial = orig, adv
		o.Entry = e
	}
	return o, nil
}

// entryPoint is the point whose image an image sweep's entry keeps: where the
// attacked model (the defence that is the first attacked classifier, alone) first
// flips, else the largest ε.
func entryPoint(res *ImageResult, plan *Plan) int {
	attacked := ""
	if plan.Attack != nil && len(plan.Attack.Surrogates) > 0 {
		attacked = plan.Attack.Surrogates[0].Name
	}
	for d, def := range plan.Defences {
		if def.Model == attacked && def.Transform == "" && d < len(res.Defences) && res.Defences[d].FlipIndex > 0 {
			return res.Defences[d].FlipIndex
		}
	}
	return len(res.Points) - 1
}

// Entry is a finished sweep or matrix as a gallery entry, less the title and the
// images: every model by name and checksum, all the settings (the plan that
// re-runs it, and its command line), the seed, the largest budget and the
// distance. linf255 is an image sweep's measured L∞ in /255 of the range (0: the
// largest budget); totalMS the run's wall time. More models than an entry holds
// is an error.
func (plan *Plan) Entry(result any, linf255, totalMS float64) (*gallery.Entry, error) {
	set := plan.Settings
	if len(plan.Models) > gallery.MaxModels {
		return nil, fmt.Errorf("the gallery keeps at most %d models per entry; this run used %d", gallery.MaxModels, len(plan.Models))
	}
	params, err := json.Marshal(set.Saved())
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	e := &gallery.Entry{Kind: gallery.KindSweep, GibbonVersion: inference.Version(), Params: params, Seed: set.Seed,
		Payload: payload, Timings: map[string]float64{"total": totalMS}}
	if set.Kind == KindCompete || set.Kind == KindTransfer {
		e.Kind = gallery.KindMatrix
	}
	for _, m := range plan.Models {
		e.Models = append(e.Models, gallery.ModelRef{Name: m.Name, SHA256: plan.checksums[m.Name], Attacked: m.Attacked})
	}
	e.Attack = set.Attack
	if set.Kind == KindCompete {
		e.Attack = "compete: " + strings.Join(set.Attacks, ", ")
	}
	if r := []rune(e.Attack); len(r) > gallery.MaxNameRunes {
		e.Attack = string(r[:gallery.MaxNameRunes-1]) + "…"
	}
	top := slices.Max(plan.Eps)
	if plan.Range == [2]float32{0, 1} {
		e.Eps, e.EpsUnit = math.Round(float64(top)*1e6)/1e6, gallery.Unit1
		e.LInf = e.Eps
		if linf255 > 0 {
			e.LInf = math.Round(linf255/255*1e6) / 1e6
		}
	} else {
		e.Eps, e.EpsUnit = Eps255(top, plan.Range), gallery.Unit255
		e.LInf = e.Eps
		if linf255 > 0 {
			e.LInf = linf255
		}
	}
	return e, nil
}
