package engine

import (
	"context"
	"fmt"
	"math"
	"strings"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
	"gibbon/inference/zoo"
)

// TopK is how many classes a verdict keeps.
const TopK = 5

// Prepared is a checked plan with its models resolved, its image on the grid and
// every defence's clean verdict taken: ready to Run. It runs once.
type Prepared struct {
	// Plan is the plan as it will be recorded (Image.SHA256 filled in).
	Plan Plan
	Grid Grid
	// Labels are the attacked models' (or the network's first defence's) class names.
	Labels []string
	Clean  *Clean
	// Label is the true class the record scores against; Target the target class
	// of a targeted attack, −1 otherwise (least-likely is resolved by the run).
	Label, Target int
	// EpsLevels is ε in whole /255 levels of the range: the ball the 8-bit image reaches.
	EpsLevels int
	Defences  []*Watch

	method   attack.Method
	cfg      attack.Config
	through  *defense.Adaptive // the attacked model behind its transform (Plan.Through)
	network  *zoo.Model
	head     int // the network's head for ε
	attacked []*zoo.Model
	models   []gallery.ModelRef
}

// Watch is one watched defence: a classifier, alone or behind a transform, fed the
// attack's image (converted when it takes another size or form).
type Watch struct {
	Name, Model, Transform string
	Param                  int
	Random, Robust         bool
	// Input says how the attack's image is fed to a classifier taking another
	// form ("" when it takes it as it is).
	Input string
	// Clean is the verdict on the clean image (top 5), or CleanErr why there is none.
	Clean    []inference.Prediction
	CleanErr string

	model *zoo.Model
	net   defense.Classifier
}

// Prepare checks plan against the zoo and lim, loads the image for the attacked
// models and takes every defence's verdict on it. Every problem with the plan or
// the image is an *InvalidError or an *inference.ImageError saying what to change.
func Prepare(ctx context.Context, z *zoo.Zoo, plan Plan, img Image, lim Limits) (*Prepared, error) {
	m, err := plan.method()
	if err != nil {
		return nil, err
	}
	if err := plan.checkNumbers(m, lim); err != nil {
		return nil, err
	}
	if err := plan.checkDefences(lim); err != nil {
		return nil, err
	}
	p := &Prepared{Plan: plan, method: m, Target: -1}
	if err := p.resolveAttack(ctx, z); err != nil {
		return nil, err
	}
	if p.Clean, err = loadImage(img, p.Grid); err != nil {
		return nil, err
	}
	p.Plan.Image = img.Ref
	p.Plan.Image.SHA256 = p.Clean.SHA256
	for _, d := range plan.Defences {
		w, err := p.watch(ctx, z, d)
		if err != nil {
			return nil, err
		}
		p.Defences = append(p.Defences, w)
		p.use(w.model, false)
	}
	if err := p.resolveThrough(); err != nil {
		return nil, err
	}
	if err := p.resolveLabels(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// resolveThrough puts the watched transform the plan attacks through in front of
// the attacked model, as an adaptive attacker sees it.
func (p *Prepared) resolveThrough() error {
	name := p.Plan.Through
	if name == "" {
		return nil
	}
	var w *Watch
	for _, d := range p.Defences {
		if d.Name == name {
			w = d
		}
	}
	switch {
	case w == nil:
		return invalid("There is no watched defence %q to attack through.", clip(name))
	case w.Transform == "":
		return invalid("%s has no input transformation to attack through: pick a defence with one.", name)
	case len(p.attacked) != 1 || p.attacked[0].Name != w.Model:
		return invalid("Attacking through %s attacks %s: make it the one attacked model.", name, w.Model)
	}
	t, err := defense.NewTransform(w.Transform, w.Param)
	if err != nil {
		return invalid("%s.", upperFirst(err.Error()))
	}
	samples := p.Plan.EOTSamples
	if samples == 0 {
		samples = defense.DefaultSamples
	}
	// The attacker's draws are its own (it knows the transform, not the defender's dice).
	a, err := defense.NewAdaptive(t, w.model.Net(), formatOf(p.Grid.Contract()), samples, uint64(p.Plan.Seed)^0x5bd1e995)
	if err != nil {
		return err
	}
	p.through = a
	return nil
}

// resolveAttack finds the attacked models (or the network), fixes the input form,
// the budget and the attack's configuration.
func (p *Prepared) resolveAttack(ctx context.Context, z *zoo.Zoo) error {
	plan := p.Plan
	var contract inference.InputContract
	if name := plan.Network(); name != "" {
		net, err := getModel(ctx, z, name, inference.TaskAttackNetwork, "to run")
		if err != nil {
			return err
		}
		p.network, contract = net, net.Input
		p.use(net, true)
	} else {
		for _, name := range plan.Models {
			m, err := getModel(ctx, z, name, inference.TaskClassifier, "to attack")
			if err != nil {
				return err
			}
			for _, prev := range p.attacked {
				if prev.Name == m.Name {
					return invalid("Model %s is listed twice among the attacked models.", m.Name)
				}
			}
			if len(p.attacked) > 0 {
				first := p.attacked[0]
				if !first.Input.SameTensor(m.Input) {
					return invalid("%s takes %s and %s takes %s: attack models that take the same input together.",
						first.Name, first.Input.Describe(), m.Name, m.Input.Describe())
				}
				if len(m.Labels) != len(first.Labels) {
					return invalid("%s has %d classes and %s has %d: attack models with the same classes together.",
						first.Name, len(first.Labels), m.Name, len(m.Labels))
				}
			}
			p.attacked = append(p.attacked, m)
			p.use(m, true)
		}
		contract = p.attacked[0].Input
		p.Labels = p.attacked[0].Labels
	}
	p.Grid = NewGrid(contract)
	rng := contract.PixelRange()
	width := float64(rng[1] - rng[0])
	if plan.Eps > width {
		return invalid("ε %g exceeds the models' input range [%g,%g].", plan.Eps, rng[0], rng[1])
	}
	p.EpsLevels = p.Grid.EpsLevels(plan.Eps)
	if p.EpsLevels < 1 {
		return invalid("ε %g is less than one 8-bit level of the range (%s): the image could not change.", plan.Eps, inference.EpsOn(float32(width/255), rng).String())
	}
	if p.network != nil {
		return p.chooseHead()
	}
	cfg := attack.Config{Method: p.method, Eps: float32(plan.Eps), Range: rng, Alpha: float32(plan.Alpha),
		Restarts: plan.Restarts, Momentum: float32(plan.Momentum), NoRandomStart: plan.NoRandomStart,
		DiversityProb: float32(plan.DiversityProb), DiversityMin: float32(plan.DiversityMin), SquareP: float32(plan.SquareP),
		Loss: attack.Loss(plan.Loss), TargetClasses: plan.TargetClasses,
		Target: attack.TargetMode(plan.Target), Layout: contract.TensorLayout(), Seed: plan.Seed}
	if p.method.BlackBox() {
		cfg.Queries = plan.Steps
	} else {
		cfg.Steps = plan.Steps
	}
	if cfg.Target == attack.TargetClass {
		if plan.TargetClass < 0 || plan.TargetClass >= len(p.Labels) {
			return invalid("Target class %d does not exist: the attacked models have classes 0 to %d.", plan.TargetClass, len(p.Labels)-1)
		}
		cfg.TargetClass = plan.TargetClass
		p.Target = plan.TargetClass
	}
	p.cfg = cfg.Defaults()
	if err := p.cfg.Validate(); err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, string(p.method)) { // an attack's name keeps its case
			msg = upperFirst(msg)
		}
		return invalid("%s.", msg)
	}
	return nil
}

// chooseHead picks the network's head for the plan's ε: the budgets are the ones
// it was trained for, so ε must be one of them (to the 8-bit level).
func (p *Prepared) chooseHead() error {
	heads := p.network.Attack.Eps
	rng := p.network.Input.PixelRange()
	var have []string
	for k, e := range heads {
		if p.Grid.EpsLevels(e) == p.EpsLevels {
			p.head = k
			p.Plan.Eps = e
			return nil
		}
		have = append(have, inference.EpsOn(float32(e), rng).String())
	}
	return invalid("Attack network %s was trained for ε %s: choose one of them.", p.network.Name, strings.Join(have, ", "))
}

// watch resolves one defence.
func (p *Prepared) watch(ctx context.Context, z *zoo.Zoo, d Defence) (*Watch, error) {
	name, err := d.Name()
	if err != nil {
		return nil, err
	}
	m, err := getModel(ctx, z, d.Model, inference.TaskClassifier, "to watch")
	if err != nil {
		return nil, err
	}
	w := &Watch{Name: name, Model: m.Name, Transform: d.Transform, Param: d.Param, Robust: m.Robust, model: m}
	from := p.Grid.Contract()
	var net defense.Classifier = m.Net()
	if !m.Input.SameTensor(from) {
		cv, err := newConverted(net, from, m.Input)
		if err != nil {
			return nil, invalid("%s cannot watch this attack: %v.", m.Name, err)
		}
		net, w.Input = cv, cv.describe()
	}
	if d.Transform != "" {
		k, _ := defense.KindByID(d.Transform)
		t, err := defense.NewTransform(k.ID, d.Param)
		if err != nil {
			return nil, invalid("%s.", upperFirst(err.Error()))
		}
		// Each defence draws from its own stream: its verdicts do not depend on the others.
		seed := uint64(p.Plan.Seed) + uint64(len(p.Defences))*0x9e37
		dn, err := defense.New(t, net, formatOf(from), seed)
		if err != nil {
			return nil, err
		}
		net, w.Random, w.Transform = dn, k.Random, k.ID
	}
	w.net = net
	return w, nil
}

// resolveLabels takes the clean verdicts and fixes the true class.
func (p *Prepared) resolveLabels(ctx context.Context) error {
	x := p.Grid.Tensor(p.Clean.Levels)
	for _, w := range p.Defences {
		v, err := w.verdict(ctx, x, -1)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.CleanErr = err.Error()
			continue
		}
		w.Clean = v.Top
	}
	if p.network != nil {
		p.Labels = p.Defences[0].model.Labels
	}
	switch {
	case p.Plan.Label != nil:
		if l := *p.Plan.Label; l < 0 || l >= len(p.Labels) {
			return invalid("The true class must be between 0 and %d, not %d.", len(p.Labels)-1, l)
		}
		p.Label = *p.Plan.Label
	case p.network != nil:
		if len(p.Defences[0].Clean) == 0 {
			return fmt.Errorf("%s could not classify the clean image: %s", p.Defences[0].Name, p.Defences[0].CleanErr)
		}
		p.Label = p.Defences[0].Clean[0].Index
	default:
		// As the attack does: the attacked models' averaged logits.
		var sum []float64
		for _, m := range p.attacked {
			y, err := m.Net().Predict(ctx, x)
			if err != nil {
				return err
			}
			if sum == nil {
				sum = make([]float64, len(y.Data))
			}
			for i, v := range y.Data {
				sum[i] += float64(v)
			}
		}
		best := 0
		for i, v := range sum {
			if v > sum[best] {
				best = i
			}
		}
		p.Label = best
	}
	return nil
}

func (p *Prepared) use(m *zoo.Model, attacked bool) {
	for i, r := range p.models {
		if r.Name == m.Name {
			p.models[i].Attacked = p.models[i].Attacked || attacked
			return
		}
	}
	p.models = append(p.models, gallery.ModelRef{Name: m.Name, SHA256: strings.ToLower(m.SHA256), Attacked: attacked})
}

// getModel loads a model of the given task from the zoo ("to attack", "to watch"
// say what for), or says why not.
func getModel(ctx context.Context, z *zoo.Zoo, name, task, purpose string) (*zoo.Model, error) {
	what := "classifier"
	if task == inference.TaskAttackNetwork {
		what = "attack network"
	}
	e, ok := z.Entry(name)
	if !ok {
		return nil, invalid("There is no %s called %q %s.", what, clip(name), purpose)
	}
	if e.Task != task {
		return nil, invalid("%s is an %s, not a %s %s.", name, strings.ReplaceAll(e.Task, "-", " "), what, purpose)
	}
	m, err := z.Get(ctx, name)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, invalid("Model %s cannot be used here: %v.", name, err)
	}
	return m, nil
}

// Verdict is one defence's view of one image.
type Verdict struct {
	Top []inference.Prediction
	// TrueProb is the probability of the true class (NaN when unknown).
	TrueProb float64
}

// verdict classifies x (one image on the attack's grid): the top 5, and the
// probability of class label (−1: none).
func (w *Watch) verdict(ctx context.Context, x *inference.Tensor, label int) (Verdict, error) {
	logits, err := w.net.Predict(ctx, x)
	if err != nil {
		return Verdict{}, err
	}
	if len(logits.Data) != len(w.model.Labels) {
		return Verdict{}, fmt.Errorf("%d scores for %d labels", len(logits.Data), len(w.model.Labels))
	}
	probs := append([]float32(nil), logits.Data...)
	inference.Softmax(probs)
	v := Verdict{Top: w.model.TopK(probs, TopK), TrueProb: math.NaN()}
	if label >= 0 && label < len(probs) {
		v.TrueProb = float64(probs[label])
	}
	return v, nil
}

func formatOf(c inference.InputContract) defense.Format {
	return defense.Format{Layout: c.TensorLayout(), Range: c.PixelRange(), Color: c.Color}
}

// Network is the attack network's model, or nil.
func (p *Prepared) Network() *zoo.Model { return p.network }

// Attacked are the attacked models, in plan order.
func (p *Prepared) Attacked() []*zoo.Model { return append([]*zoo.Model(nil), p.attacked...) }

// Method is the attack's method ("" for an attack network).
func (p *Prepared) Method() attack.Method { return p.method }

// Config is the attack's configuration with its defaults filled in (zero for an
// attack network).
func (p *Prepared) Config() attack.Config { return p.cfg }

// Models are every model the run involves, attacked ones marked.
func (p *Prepared) Models() []gallery.ModelRef { return append([]gallery.ModelRef(nil), p.models...) }

// Start describes a prepared run: what a page shows before the first frame. It is
// data only, so it can travel (a queue worker sends it to the web node).
type Start struct {
	Plan     Plan
	Contract inference.InputContract // the attacked form, on the pixel range
	Clean    Clean
	Labels   []string
	// Label is the true class, Target the targeted class (−1: none or
	// least-likely), EpsLevels ε in whole /255 levels.
	Label, Target, EpsLevels int
	// Config is the attack with its defaults (zero for an attack network); Network
	// the attack network's name.
	Config    attack.Config
	Network   string
	Defences  []Watch
	Providers []PassProvider
}

// Start is the prepared run's description.
func (p *Prepared) Start() *Start {
	s := &Start{Plan: p.Plan, Contract: p.Grid.Contract(), Clean: *p.Clean, Labels: p.Labels, Label: p.Label, Target: p.Target,
		EpsLevels: p.EpsLevels, Config: p.cfg, Providers: p.providers()}
	if p.network != nil {
		s.Network = p.network.Name
	}
	for _, w := range p.Defences {
		s.Defences = append(s.Defences, *w)
	}
	return s
}

// Grid is the start's image grid.
func (s *Start) Grid() Grid { return NewGrid(s.Contract) }
