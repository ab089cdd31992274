package sweep

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/defense"
)

// Kinds of run.
const (
	KindImage    = "image"    // one image over ε
	KindDataset  = "dataset"  // robust accuracy over ε on a data set
	KindCompete  = "compete"  // attack × defence matrix
	KindTransfer = "transfer" // surrogate × target matrix
)

// NetworkPrefix marks an attack network among attack names ("net:atn-mnist").
const NetworkPrefix = "net:"

// DatasetMNIST is the one data set Gibbon ships with.
const DatasetMNIST = "mnist-test"

// Settings are everything a sweep or matrix was asked for, as people write it. They
// are what a gallery entry records and what re-runs it: the command line and the web
// page both turn Settings into a Plan.
type Settings struct {
	Kind string `json:"kind"`
	// Attack is a method ("pgd") or NetworkPrefix+name (sweeps; transfer: the method
	// used on every classifier source).
	Attack string `json:"attack,omitempty"`
	// Attacks are the competition's entrants (methods or networks).
	Attacks []string `json:"attacks,omitempty"`
	// Models are the classifiers gradient and black-box attacks attack (their losses
	// averaged); transfer: the sources (classifiers or networks).
	Models []string `json:"models,omitempty"`
	// Defences are MODEL or MODEL+KIND[:PARAM] (transfer: the targets); empty means
	// every classifier taking the same input, and every transform in front of the
	// first attacked model.
	Defences []string `json:"defences,omitempty"`
	// Eps is a grid (sweeps: "0:0.4:0.025"), a set (compete: "0.1,0.2,0.3") or one
	// budget (transfer), on the models' input range; "" takes the default.
	Eps string `json:"eps"`
	// Steps of gradient attacks, queries of black-box ones; 0 takes the default.
	Steps int `json:"steps,omitempty"`
	// Adaptive also scores every transform defence adaptively (data-set sweeps, one-
	// image sweeps and the competition): each gets a twin judged on the images the
	// attack makes through its transform (Defence.Adaptive).
	Adaptive bool `json:"adaptive,omitempty"`
	// EOTSamples is the number of random draws an adaptive attack averages each
	// gradient over, for random transforms (1–100); 0 takes defense.DefaultSamples.
	EOTSamples int    `json:"eot_samples,omitempty"`
	Dataset    string `json:"dataset,omitempty"`
	N          int    `json:"n,omitempty"`
	Batch      int    `json:"batch,omitempty"`
	Seed       int64  `json:"seed"`
	// Image names the swept image (a sample's file name, or an uploaded file's).
	Image string `json:"image,omitempty"`
	// Label is the image's true class; −1 takes the attacked models' prediction.
	Label int `json:"label"`
}

// Limits bound what one plan may ask for (the web app's are tighter than the CLI's).
type Limits struct {
	MaxImages   int
	MaxSteps    int
	MaxDefences int
	MaxAttacks  int
}

// CLILimits are the command line's.
var CLILimits = Limits{MaxImages: 10000, MaxSteps: 10000, MaxDefences: 64, MaxAttacks: 32}

// Resolver finds models by name: the CLI's from a manifest, the server's from its registry.
type Resolver interface {
	// Classifiers and Networks list the names available, in menu order.
	Classifiers() []string
	Networks() []string
	// Contract is a classifier's or network's input contract, without loading it.
	Contract(name string) (inference.InputContract, bool)
	// Classifier adapts a classifier for attacks (gradients on its pixel range).
	Classifier(ctx context.Context, name string) (attack.Model, inference.InputContract, error)
	// Network loads an attack network.
	Network(ctx context.Context, name string) (Generator, inference.InputContract, error)
	// Labels are a classifier's class names (nil when it names none).
	Labels(name string) []string
	// Checksum is a model file's SHA-256, as the gallery records it.
	Checksum(name string) string
}

// Plan is Settings checked and resolved: ready to run.
type Plan struct {
	Settings Settings // with defaults filled in
	Contract inference.InputContract
	Range    [2]float32
	Format   defense.Format
	Eps      []float32
	Attack   *Attack   // sweeps
	Attacks  []*Attack // compete; transfer: the sources
	Defences []Defence
	// Models are every model involved, attacked ones (and networks) first.
	Models []ModelUse
	// Skipped says which classifiers "every defence" left out, and why.
	Skipped []string
	// Labels name the classes (the first defence's classifier's).
	Labels []string
	// checksums are the models' file checksums, for the gallery entry.
	checksums map[string]string
}

// ModelUse is a model a plan uses.
type ModelUse struct {
	Name     string
	Attacked bool
	Network  bool
}

// smallGray reports an MNIST-like input, whose budgets are counted in tenths of the
// range rather than in /255 steps.
func smallGray(c inference.InputContract) bool {
	return c.Channels == 1 && c.Height <= 32 && c.Width <= 32
}

// DefaultEps is the default budget text for a kind on a contract: MNIST-like inputs
// 0 to 0.4 in 16 steps (sets 0.1, 0.2, 0.3; transfer 0.2), larger images 0 to 16/255
// (sets 4, 8, 12, 16 /255; transfer 8/255), scaled to the range.
func DefaultEps(kind string, c inference.InputContract) string {
	r := c.PixelRange()
	w := float64(r[1] - r[0])
	f := func(v float64) string { return strconv.FormatFloat(math.Round(v*w*1e6)/1e6, 'f', -1, 64) }
	if smallGray(c) {
		switch kind {
		case KindCompete:
			return f(0.1) + "," + f(0.2) + "," + f(0.3)
		case KindTransfer:
			return f(0.2)
		}
		return "0:" + f(0.4) + ":" + f(0.025)
	}
	switch kind {
	case KindCompete:
		return f(4.0/255) + "," + f(8.0/255) + "," + f(12.0/255) + "," + f(16.0/255)
	case KindTransfer:
		return f(8.0 / 255)
	}
	return "0:" + f(16.0/255) + ":" + f(1.0/255)
}

// DefaultAttacks are the competition's entrants when none are named: random noise
// (the baseline), FGSM, PGD and MI-FGSM (the NIPS'17 winner), and every attack network.
func DefaultAttacks(r Resolver) []string {
	out := []string{string(attack.Noise), string(attack.FGSM), string(attack.PGD), string(attack.MIFGSM)}
	for _, n := range r.Networks() {
		out = append(out, NetworkPrefix+n)
	}
	return out
}

// Plan checks s, fills in its defaults and resolves every model. Each error is a
// sentence people can act on.
func (s Settings) Plan(ctx context.Context, r Resolver, lim Limits) (*Plan, error) {
	p := &Plan{}
	s.Kind = strings.ToLower(strings.TrimSpace(s.Kind))
	switch s.Kind {
	case KindImage, KindDataset, KindCompete, KindTransfer:
	default:
		return nil, fmt.Errorf("unknown kind %q (image, dataset, compete or transfer)", s.Kind)
	}
	if s.Kind != KindImage {
		if s.Dataset == "" {
			s.Dataset = DatasetMNIST
		}
		if s.Dataset != DatasetMNIST {
			return nil, fmt.Errorf("unknown dataset %q (the one Gibbon has is %s)", s.Dataset, DatasetMNIST)
		}
		if s.N == 0 {
			s.N = 1000
			if s.Kind != KindDataset {
				s.N = 500
			}
		}
		if s.N < 1 || s.N > lim.MaxImages {
			return nil, fmt.Errorf("the number of images must be between 1 and %d, not %d", lim.MaxImages, s.N)
		}
		s.Label = -1
	} else {
		s.Dataset, s.N = "", 0
	}
	if s.Batch < 0 || s.Batch > 10000 {
		return nil, fmt.Errorf("the batch size must be between 1 and 10000 (0: automatic), not %d", s.Batch)
	}
	if s.Steps < 0 || s.Steps > lim.MaxSteps {
		return nil, fmt.Errorf("steps must be between 1 and %d (0: the default), not %d", lim.MaxSteps, s.Steps)
	}
	if err := s.checkAdaptive(); err != nil {
		return nil, err
	}
	if len(r.Classifiers()) == 0 {
		return nil, fmt.Errorf("there is no classifier to attack")
	}

	// The attacked models (transfer: the sources), which fix the input form.
	s.Models = cleanList(s.Models)
	sweepNet := (s.Kind == KindImage || s.Kind == KindDataset) && strings.HasPrefix(strings.TrimSpace(s.Attack), NetworkPrefix)
	if sweepNet && len(s.Models) > 0 {
		return nil, fmt.Errorf("an attack network attacks no model of its own: leave the models to attack out")
	}
	if len(s.Models) == 0 && !sweepNet {
		if s.Kind == KindTransfer {
			// Every classifier and network that takes the first classifier's input.
			c0, _ := r.Contract(r.Classifiers()[0])
			for _, name := range r.Classifiers() {
				if c, ok := r.Contract(name); ok && c.SameTensor(c0) {
					s.Models = append(s.Models, name)
				}
			}
			for _, n := range r.Networks() {
				if c, ok := r.Contract(n); ok && c.SameTensor(c0) {
					s.Models = append(s.Models, NetworkPrefix+n)
				}
			}
		} else {
			s.Models = []string{r.Classifiers()[0]}
		}
	}
	if len(s.Models) > lim.MaxAttacks {
		return nil, fmt.Errorf("at most %d models can be attacked, not %d", lim.MaxAttacks, len(s.Models))
	}
	var surrogates []attack.Model
	var sources []*Attack
	first := true
	useContract := func(name string, c inference.InputContract) error {
		if first {
			p.Contract, first = c, false
			return nil
		}
		if !c.SameTensor(p.Contract) {
			return fmt.Errorf("%s takes %s, but %s: use models that take the same input together", name, c.Describe(), p.Contract.Describe())
		}
		return nil
	}
	used := map[string]bool{}
	use := func(u ModelUse) {
		if !used[u.Name] {
			used[u.Name] = true
			p.Models = append(p.Models, u)
		}
	}
	for _, name := range s.Models {
		if net, ok := strings.CutPrefix(name, NetworkPrefix); ok {
			if s.Kind != KindTransfer {
				return nil, fmt.Errorf("%s is an attack network: name it as the attack, not as a model to attack", net)
			}
			g, c, err := r.Network(ctx, net)
			if err != nil {
				return nil, err
			}
			if err := useContract(net, c); err != nil {
				return nil, err
			}
			sources = append(sources, &Attack{Name: "attack network " + net, Network: g})
			use(ModelUse{Name: net, Attacked: true, Network: true})
			continue
		}
		m, c, err := r.Classifier(ctx, name)
		if err != nil {
			return nil, err
		}
		if err := useContract(name, c); err != nil {
			return nil, err
		}
		surrogates = append(surrogates, m)
		use(ModelUse{Name: name, Attacked: true})
	}
	if sweepNet {
		name := strings.TrimPrefix(strings.TrimSpace(s.Attack), NetworkPrefix)
		_, c, err := r.Network(ctx, name)
		if err != nil {
			return nil, err
		}
		p.Contract, first = c, false
	}
	p.Range = p.Contract.PixelRange()
	p.Format = defense.Format{Layout: p.Contract.TensorLayout(), Range: p.Range, Color: p.Contract.Color}
	if s.Kind != KindImage && !p.Contract.FitsMNIST() {
		return nil, fmt.Errorf("%s holds 28×28 gray digits; the attacked models take %s", DatasetMNIST, p.Contract.Describe())
	}

	// Budgets.
	if strings.TrimSpace(s.Eps) == "" {
		s.Eps = DefaultEps(s.Kind, p.Contract)
	}
	eps, err := ParseGrid(s.Eps)
	if err != nil {
		return nil, err
	}
	if err := CheckGrid(eps, p.Range); err != nil {
		return nil, err
	}
	switch s.Kind {
	case KindTransfer:
		if len(eps) != 1 || eps[0] == 0 {
			return nil, fmt.Errorf("a transfer matrix takes one positive ε, not %q", s.Eps)
		}
	case KindCompete:
		if eps[0] == 0 {
			return nil, fmt.Errorf("the competition's budgets must be positive: leave 0 out of %q", s.Eps)
		}
	}
	p.Eps = eps

	// Attacks.
	makeAttack := func(id string, sur []attack.Model) (*Attack, error) {
		id = strings.TrimSpace(id)
		if net, ok := strings.CutPrefix(id, NetworkPrefix); ok {
			g, c, err := r.Network(ctx, net)
			if err != nil {
				return nil, err
			}
			if err := useContract(net, c); err != nil {
				return nil, err
			}
			use(ModelUse{Name: net, Attacked: true, Network: true})
			return &Attack{Name: "attack network " + net, Network: g, Config: attack.Config{Range: p.Range}}, nil
		}
		m, err := attack.ParseMethod(id)
		if err != nil || id == "" {
			return nil, fmt.Errorf("unknown attack %q (choose one of %s, or %sNAME for an attack network)", id, methodNames(), NetworkPrefix)
		}
		if len(sur) == 0 {
			return nil, fmt.Errorf("%s needs a classifier to attack", m)
		}
		cfg := attack.Config{Method: m, Range: p.Range, Layout: p.Contract.TensorLayout()}
		steps := s.Steps
		switch {
		case m == attack.Square:
			if steps == 0 {
				steps = 100
			}
			cfg.Queries = max(steps, 2)
		case m == attack.Noise:
			cfg.Queries = max(steps, 1)
		case m == attack.FGSM:
			cfg.Steps = 1
		default:
			if steps == 0 {
				steps = 10
			}
			cfg.Steps = steps
		}
		a := &Attack{Name: string(m), Config: cfg, Surrogates: sur}
		if err := a.Check(); err != nil {
			return nil, err
		}
		return a, nil
	}
	switch s.Kind {
	case KindImage, KindDataset:
		if s.Attack == "" {
			s.Attack = string(attack.PGD)
		}
		if p.Attack, err = makeAttack(s.Attack, surrogates); err != nil {
			return nil, err
		}
		s.Attacks = nil
	case KindCompete:
		s.Attacks = cleanList(s.Attacks)
		if len(s.Attacks) == 0 {
			s.Attacks = DefaultAttacks(r)
		}
		if len(s.Attacks) > lim.MaxAttacks {
			return nil, fmt.Errorf("at most %d attacks can compete, not %d", lim.MaxAttacks, len(s.Attacks))
		}
		for _, id := range s.Attacks {
			a, err := makeAttack(id, surrogates)
			if err != nil {
				return nil, err
			}
			p.Attacks = append(p.Attacks, a)
		}
		s.Attack = ""
	case KindTransfer:
		if s.Attack == "" {
			s.Attack = string(attack.PGD)
		}
		if strings.HasPrefix(s.Attack, NetworkPrefix) {
			return nil, fmt.Errorf("the transfer attack is a method run on each source: name attack networks among the sources")
		}
		for _, m := range s.Models {
			if strings.HasPrefix(m, NetworkPrefix) {
				p.Attacks = append(p.Attacks, sources[0])
				sources = sources[1:]
				continue
			}
			var sm attack.Model
			for _, x := range surrogates {
				if x.Name == m {
					sm = x
				}
			}
			a, err := makeAttack(s.Attack, []attack.Model{sm})
			if err != nil {
				return nil, err
			}
			a.Name = m
			p.Attacks = append(p.Attacks, a)
		}
	}
	if a := p.Attack; a != nil && a.Network != nil {
		p.Attack.Config.Range = p.Range
	}

	// Defences.
	s.Defences = cleanList(s.Defences)
	if len(s.Defences) == 0 {
		for _, name := range r.Classifiers() {
			c, _ := r.Contract(name)
			if !c.SameTensor(p.Contract) {
				p.Skipped = append(p.Skipped, fmt.Sprintf("%s takes %s", name, c.Describe()))
				continue
			}
			s.Defences = append(s.Defences, name)
		}
		base := ""
		if len(surrogates) > 0 {
			base = surrogates[0].Name
		} else if len(s.Defences) > 0 {
			base = s.Defences[0]
		}
		if base != "" && s.Kind != KindTransfer {
			for _, k := range defense.Kinds {
				s.Defences = append(s.Defences, fmt.Sprintf("%s+%s:%d", base, k.ID, k.Default))
			}
		}
	}
	if len(s.Defences) > lim.MaxDefences {
		return nil, fmt.Errorf("at most %d defences, not %d", lim.MaxDefences, len(s.Defences))
	}
	seen := map[string]bool{}
	for i, spec := range s.Defences {
		model, kind, param, err := ParseDefence(spec)
		if err != nil {
			return nil, err
		}
		m, c, err := r.Classifier(ctx, model)
		if err != nil {
			return nil, err
		}
		if !c.SameTensor(p.Contract) {
			return nil, fmt.Errorf("defence %s takes %s, the attack makes %s", model, c.Describe(), p.Contract.Describe())
		}
		d, err := NewDefence(model, m.Net, kind, param, p.Format, uint64(s.Seed)+uint64(i)*0x9e37)
		if err != nil {
			return nil, err
		}
		if seen[d.Name] {
			return nil, fmt.Errorf("the defence %s is listed twice", d.Name)
		}
		seen[d.Name] = true
		p.Defences = append(p.Defences, d)
		use(ModelUse{Name: model})
	}
	if len(p.Defences) == 0 {
		return nil, fmt.Errorf("no defence takes the attacked models' input (%s)", p.Contract.Describe())
	}
	if s.Adaptive {
		if p.Defences, err = withTwins(p.Defences, s.EOTSamples); err != nil {
			return nil, err
		}
	}
	p.Settings = s
	p.checksums = map[string]string{}
	for _, m := range p.Models {
		p.checksums[m.Name] = r.Checksum(m.Name)
	}
	if len(p.Defences) > 0 {
		p.Labels = r.Labels(p.Defences[0].Model)
	}
	return p, nil
}

// checkAdaptive checks the adaptive settings and fills in the EOT default.
func (s *Settings) checkAdaptive() error {
	if !s.Adaptive {
		if s.EOTSamples != 0 {
			return fmt.Errorf("EOT samples are for adaptive scoring: ask for it too, or leave them out")
		}
		return nil
	}
	if s.Kind == KindTransfer {
		return fmt.Errorf("a transfer matrix judges images made on other models: adaptive scoring is for sweeps and the competition")
	}
	if s.EOTSamples == 0 {
		s.EOTSamples = defense.DefaultSamples
	}
	return defense.CheckSamples(s.EOTSamples)
}

// withTwins puts each transform defence's adaptive twin right after it.
func withTwins(defs []Defence, samples int) ([]Defence, error) {
	var out []Defence
	for _, d := range defs {
		out = append(out, d)
		if d.Mode != NonAdaptive {
			continue
		}
		tw, err := d.Adaptive(samples)
		if err != nil {
			return nil, err
		}
		out = append(out, tw)
	}
	if len(out) == len(defs) {
		return nil, fmt.Errorf("adaptive scoring attacks through transforms, and no defence has one (write MODEL+KIND, e.g. mnist-mlp+bits:1)")
	}
	return out, nil
}

func cleanList(v []string) []string {
	var out []string
	for _, s := range v {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

func methodNames() string {
	names := make([]string, len(attack.Methods))
	for i, m := range attack.Methods {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// Saved is what a gallery entry records as a sweep's or matrix's parameters: the
// settings that re-run it, and the command line that does.
type Saved struct {
	Settings
	Command string `json:"command"`
}

// Saved is s as a gallery entry records it.
func (s Settings) Saved() Saved { return Saved{Settings: s, Command: s.Command()} }

// Command is the gibbon command line that runs s (IMAGE stands for an image sweep's file).
func (s Settings) Command() string {
	args := []string{"gibbon"}
	switch s.Kind {
	case KindCompete:
		args = append(args, "compete")
	case KindTransfer:
		args = append(args, "transfer")
	default:
		args = append(args, "sweep")
	}
	q := func(v string) string {
		if v == "" || strings.ContainsAny(v, " \t'\"\\$`!*?;&|<>()") {
			return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
		}
		return v
	}
	add := func(flag, v string) {
		if v != "" {
			args = append(args, "--"+flag, q(v))
		}
	}
	switch s.Kind {
	case KindImage:
		args = append(args, q(s.Image))
		if s.Label >= 0 {
			add("label", strconv.Itoa(s.Label))
		}
	default:
		add("dataset", s.Dataset)
		add("n", strconv.Itoa(s.N))
	}
	if s.Kind == KindTransfer {
		add("sources", strings.Join(s.Models, ","))
		add("targets", strings.Join(s.Defences, ","))
	} else {
		add("model", strings.Join(s.Models, ","))
		add("defences", strings.Join(s.Defences, ","))
	}
	add("attack", s.Attack)
	add("attacks", strings.Join(s.Attacks, ","))
	add("eps", s.Eps)
	if s.Steps > 0 {
		add("steps", strconv.Itoa(s.Steps))
	}
	if s.Adaptive {
		args = append(args, "--adaptive")
		add("eot-samples", strconv.Itoa(s.EOTSamples))
	}
	if s.Batch > 0 {
		add("batch", strconv.Itoa(s.Batch))
	}
	add("seed", strconv.FormatInt(s.Seed, 10))
	return strings.Join(args, " ")
}
