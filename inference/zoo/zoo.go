// Package zoo is the process's one set of models. Every model a source's manifest
// names is read, checksummed against the manifest and opened here, once; the
// classify page, attacks, defences, attack networks and sweeps all take their
// sessions from it. A model that cannot be served is a Problem, reported with what
// to fix, and the others are served.
//
// A classifier is opened as one graph that takes images on its pixel range and
// returns logits (mean/std folded in, a terminal Softmax cut off): predictions,
// probabilities and, built on first use, gradients all come from it. An attack
// network is opened as its own graph.
package zoo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/onnx"
)

// Problem is a model (or a whole manifest, when Model is "") that could not be
// served, and why.
type Problem struct {
	Source string
	Model  string
	File   string
	Err    error
}

func (p Problem) Error() string {
	if p.Model == "" {
		return fmt.Sprintf("%s models: %v", p.Source, p.Err)
	}
	return fmt.Sprintf("%s model %q (%s): %v", p.Source, p.Model, p.File, p.Err)
}

func (p Problem) Unwrap() error { return p.Err }

// Zoo holds the models of its sources, in manifest order (sources in the order
// given). Open reads the manifests; a model's file is loaded on first use (Get), or
// all at once by LoadAll; Add registers one more while the zoo is in use (a model
// pulled from the models page). It is safe for concurrent use.
type Zoo struct {
	rt *inference.Runtime
	// mu guards the lists below, which only Add changes; a slot's model has its own lock.
	mu       sync.RWMutex
	slots    []*slot
	byName   map[string]*slot
	problems []Problem // manifests and duplicate names
}

// slot is one manifest entry and, once loaded, its model.
type slot struct {
	src   inference.ModelSource
	entry inference.ModelEntry

	mu  sync.Mutex
	m   *Model
	err error // a load that failed for good (not a cancelled one)
}

// Open reads every source's manifest. Manifests that cannot be read and names used
// twice are problems; no model file is read yet.
func Open(rt *inference.Runtime, sources ...inference.ModelSource) *Zoo {
	z := &Zoo{rt: rt, byName: map[string]*slot{}}
	for _, src := range sources {
		man, err := inference.ReadManifestFS(src.FS)
		if err != nil {
			z.problems = append(z.problems, Problem{Source: src.Name, Err: err})
			continue
		}
		for _, e := range man.Models {
			if prev, ok := z.byName[e.Name]; ok {
				z.problems = append(z.problems, Problem{Source: src.Name, Model: e.Name, File: e.File,
					Err: fmt.Errorf("the name is already used by a %s model: rename one of them in its %s", prev.src.Name, inference.ManifestFile)})
				continue
			}
			s := &slot{src: src, entry: e}
			z.slots = append(z.slots, s)
			z.byName[e.Name] = s
		}
	}
	return z
}

// list is the slots as they are now, for reading without the zoo's lock.
func (z *Zoo) list() []*slot {
	z.mu.RLock()
	defer z.mu.RUnlock()
	return slices.Clip(z.slots)
}

// slot finds a name's slot.
func (z *Zoo) slot(name string) (*slot, bool) {
	z.mu.RLock()
	defer z.mu.RUnlock()
	s, ok := z.byName[name]
	return s, ok
}

// Add registers one more model from src while the zoo is in use, loading its file
// now (once: later Gets share it). A name already in the zoo is refused, and a
// model that does not load is not registered: the error says why.
func (z *Zoo) Add(ctx context.Context, src inference.ModelSource, e inference.ModelEntry) (*Model, error) {
	if _, ok := z.slot(e.Name); ok {
		return nil, fmt.Errorf("a model called %q is already served: pick another name or restart to replace it", e.Name)
	}
	if e.Task == "" {
		e.Task = inference.TaskClassifier // as in a manifest
	}
	m, err := loadModel(ctx, z.rt, src, e)
	if err != nil {
		return nil, Problem{Source: src.Name, Model: e.Name, File: e.File, Err: err}
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if _, ok := z.byName[e.Name]; ok { // added meanwhile by another caller
		m.close()
		return nil, fmt.Errorf("a model called %q is already served: pick another name or restart to replace it", e.Name)
	}
	s := &slot{src: src, entry: e, m: m}
	z.slots = append(z.slots, s)
	z.byName[e.Name] = s
	return m, nil
}

// Load opens the sources and loads every model (what a server does at start). The
// error is non-nil only when ctx ends first.
func Load(ctx context.Context, rt *inference.Runtime, sources ...inference.ModelSource) (*Zoo, error) {
	z := Open(rt, sources...)
	if err := z.LoadAll(ctx); err != nil {
		z.Close()
		return nil, err
	}
	return z, nil
}

// LoadAll loads every model not loaded yet; failures become Problems. The error is
// non-nil only when ctx ends first.
func (z *Zoo) LoadAll(ctx context.Context) error {
	for _, s := range z.list() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := z.load(ctx, s); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// Get returns the model called name, loading it on first use.
func (z *Zoo) Get(ctx context.Context, name string) (*Model, error) {
	s, ok := z.slot(name)
	if !ok {
		return nil, fmt.Errorf("there is no model called %q (have: %s)", name, strings.Join(z.Names(""), ", "))
	}
	m, err := z.load(ctx, s)
	if err != nil {
		return nil, Problem{Source: s.src.Name, Model: s.entry.Name, File: s.entry.File, Err: err}
	}
	return m, nil
}

func (z *Zoo) load(ctx context.Context, s *slot) (*Model, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m != nil || s.err != nil {
		return s.m, s.err
	}
	m, err := loadModel(ctx, z.rt, s.src, s.entry)
	if err != nil {
		if ctx.Err() == nil {
			s.err = err // a cancelled load is tried again next time
		}
		return nil, err
	}
	s.m = m
	return m, nil
}

// Entry is a model's manifest entry, without loading it.
func (z *Zoo) Entry(name string) (inference.ModelEntry, bool) {
	s, ok := z.slot(name)
	if !ok {
		return inference.ModelEntry{}, false
	}
	return s.entry, true
}

// Names lists the manifests' model names with the given task ("" for all), in
// order, loaded or not.
func (z *Zoo) Names(task string) []string {
	var out []string
	for _, s := range z.list() {
		if task == "" || s.entry.Task == task {
			out = append(out, s.entry.Name)
		}
	}
	return out
}

// Available lists the names of the models with the given task ("" for all) that
// have not failed to load: loaded ones and ones not tried yet, in order.
func (z *Zoo) Available(task string) []string {
	var out []string
	for _, s := range z.list() {
		s.mu.Lock()
		failed := s.err != nil
		s.mu.Unlock()
		if !failed && (task == "" || s.entry.Task == task) {
			out = append(out, s.entry.Name)
		}
	}
	return out
}

// All is every loaded model, classifiers and attack networks.
func (z *Zoo) All() []*Model { return z.loaded("") }

// Classifiers is every loaded classifier.
func (z *Zoo) Classifiers() []*Model { return z.loaded(inference.TaskClassifier) }

// AttackNetworks is every loaded attack network.
func (z *Zoo) AttackNetworks() []*Model { return z.loaded(inference.TaskAttackNetwork) }

func (z *Zoo) loaded(task string) []*Model {
	var out []*Model
	for _, s := range z.list() {
		s.mu.Lock()
		m := s.m
		s.mu.Unlock()
		if m != nil && (task == "" || m.Task == task) {
			out = append(out, m)
		}
	}
	return out
}

// Model finds a loaded model by name (it does not load one).
func (z *Zoo) Model(name string) (*Model, bool) {
	s, ok := z.slot(name)
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m, s.m != nil
}

// Classifier finds a loaded classifier by name.
func (z *Zoo) Classifier(name string) (*Model, bool) {
	m, ok := z.Model(name)
	if !ok || m.Task != inference.TaskClassifier {
		return nil, false
	}
	return m, true
}

// WarmGradients builds the gradient graphs of every loaded classifier ahead of the
// first attack (attack.ONNXModel.Warm), one model at a time, until ctx ends. It
// returns the models warmed and, for each that cannot be warmed, why: such a model
// is still served, and an attack on it says the same when it needs a gradient.
func (z *Zoo) WarmGradients(ctx context.Context) (warmed []string, failed map[string]error) {
	failed = map[string]error{}
	for _, m := range z.Classifiers() {
		if ctx.Err() != nil {
			return warmed, failed
		}
		if err := m.net.Warm(ctx); err != nil {
			if ctx.Err() == nil {
				failed[m.Name] = err
			}
			continue
		}
		warmed = append(warmed, m.Name)
	}
	return warmed, failed
}

// Problems lists the manifests and models that could not be served.
func (z *Zoo) Problems() []Problem {
	z.mu.RLock()
	out := append([]Problem(nil), z.problems...)
	z.mu.RUnlock()
	for _, s := range z.list() {
		s.mu.Lock()
		if s.err != nil {
			out = append(out, Problem{Source: s.src.Name, Model: s.entry.Name, File: s.entry.File, Err: s.err})
		}
		s.mu.Unlock()
	}
	return out
}

// Close releases every session.
func (z *Zoo) Close() {
	for _, s := range z.list() {
		s.mu.Lock()
		if s.m != nil {
			s.m.close()
		}
		s.mu.Unlock()
	}
}

// Model is one loaded model: its manifest entry, checked against its graph.
type Model struct {
	inference.ModelEntry
	// Source is where it came from ("built-in" or the user's directory).
	Source string
	// Labels are the class names in output order (for classifiers).
	Labels []string
	// Bytes is the size of the .onnx file.
	Bytes int64

	net *attack.ONNXModel // classifiers
	gen *attack.Network   // attack networks
	// input and output are the graph's own names for the image and the result.
	input, output string
}

// InputName is the graph input the image goes to.
func (m *Model) InputName() string { return m.input }

// OutputName is the graph output Gibbon reads (the scores, for a classifier).
func (m *Model) OutputName() string { return m.output }

// Net is a classifier as attacks and defences see it: logits and input gradients
// for images on its pixel range. Nil for an attack network.
func (m *Model) Net() *attack.ONNXModel { return m.net }

// Network is an attack network's generator. Nil for a classifier.
func (m *Model) Network() *attack.Network { return m.gen }

// Classes is a classifier's number of classes.
func (m *Model) Classes() int { return len(m.Labels) }

// Provider is the execution provider the model's forward passes run on.
func (m *Model) Provider() string {
	if m.gen != nil {
		return m.gen.Provider()
	}
	f, _ := m.net.Providers()
	return f
}

func (m *Model) close() {
	if m.net != nil {
		m.net.Close()
	}
	if m.gen != nil {
		m.gen.Close()
	}
}

// Probabilities runs the classifier on images on its pixel range (the contract
// without mean/std: see InputContract.Unnormalized) and returns a probability per
// class for each image, [N][classes].
func (m *Model) Probabilities(ctx context.Context, x *inference.Tensor) ([][]float32, error) {
	if m.net == nil {
		return nil, fmt.Errorf("model %q is a %s, not a classifier", m.Name, m.Task)
	}
	y, err := m.net.Predict(ctx, x)
	if err != nil {
		return nil, err
	}
	k := len(m.Labels)
	if len(y.Data) != int(x.Shape[0])*k {
		return nil, fmt.Errorf("model %q returned %d scores for %d image(s), its manifest has %d labels", m.Name, len(y.Data), x.Shape[0], k)
	}
	out := make([][]float32, x.Shape[0])
	for i := range out {
		p := append([]float32(nil), y.Data[i*k:(i+1)*k]...)
		// A graph that declares probabilities without a Softmax to cut gives them as they are.
		if m.OutputsLogits || m.net.CutSoftmax() {
			inference.Softmax(p)
		}
		out[i] = p
	}
	return out, nil
}

// TopK is the k most probable classes of probs, most probable first.
func (m *Model) TopK(probs []float32, k int) []inference.Prediction {
	return inference.TopK(probs, m.Labels, k)
}

func loadModel(ctx context.Context, rt *inference.Runtime, src inference.ModelSource, e inference.ModelEntry) (*Model, error) {
	if !fs.ValidPath(e.File) {
		return nil, fmt.Errorf("file %q is not a path inside the models directory", e.File)
	}
	data, err := fs.ReadFile(src.FS, e.File)
	if err != nil {
		return nil, fmt.Errorf("read model file: %w", err)
	}
	sum := sha256.Sum256(data)
	got := hex.EncodeToString(sum[:])
	switch want := strings.ToLower(strings.TrimSpace(e.SHA256)); {
	case want == "":
		return nil, fmt.Errorf("the manifest gives no sha256; the file's is %s: add it if this is the file you meant", got)
	case want != got:
		return nil, fmt.Errorf("checksum mismatch: the file's sha256 is %s, the manifest says %s; the file changed or is the wrong one (re-export it or fix the manifest)", got, want)
	}
	if e.Task != inference.TaskClassifier && e.Task != inference.TaskAttackNetwork {
		return nil, fmt.Errorf("task %q is unknown, want %q or %q", e.Task, inference.TaskClassifier, inference.TaskAttackNetwork)
	}
	if err := e.Input.Check(); err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	if e.Task == inference.TaskAttackNetwork && (e.Attack == nil || len(e.Attack.Eps) == 0) {
		return nil, errors.New("an attack network needs \"attack\": {\"eps\": [...]} in the manifest")
	}
	labels, err := readLabels(src.FS, e)
	if err != nil {
		return nil, err
	}
	graph, err := onnx.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("ONNX Runtime cannot load it: not an ONNX model: %w", err)
	}
	if err := checkGraph(graph, e.Input); err != nil {
		return nil, err
	}
	m := &Model{ModelEntry: e, Source: src.Name, Labels: labels, Bytes: int64(len(data)), input: imageName(graph, e.Input), output: graph.Graph.Output[0].GetName()}
	c := e.Input
	if e.Task == inference.TaskAttackNetwork {
		if len(c.Mean) > 0 || len(c.Std) > 0 {
			return nil, errors.New("an attack network takes pixel-range images, so its input contract has no mean/std")
		}
		m.gen, err = attack.NewNetwork(ctx, rt, graph, attack.NetworkOptions{Name: e.Name, Eps: e.Attack.Eps, Range: c.Range})
		if err != nil {
			return nil, fmt.Errorf("ONNX Runtime cannot load it: %w", err)
		}
		return m, nil
	}
	m.net, err = attack.NewONNXModel(ctx, rt, graph, attack.ModelOptions{Name: e.Name, Input: c.Name, Mean: c.Mean, Std: c.Std,
		Layout: c.Layout, Shape: c.Shape()[1:]})
	if err != nil {
		return nil, fmt.Errorf("ONNX Runtime cannot load it: %w", err)
	}
	k := m.net.Classes()
	switch {
	case len(m.Labels) == 0:
		for i := range k {
			m.Labels = append(m.Labels, fmt.Sprint(i))
		}
	case len(m.Labels) != k:
		m.net.Close()
		return nil, fmt.Errorf("the manifest has %d labels, output %q has %d scores", len(m.Labels), graph.Graph.Output[0].GetName(), k)
	}
	return m, nil
}

func readLabels(fsys fs.FS, e inference.ModelEntry) ([]string, error) {
	if e.LabelsFile == "" {
		return append([]string(nil), e.Labels...), nil
	}
	if len(e.Labels) > 0 {
		return nil, errors.New("give labels or labels_file, not both")
	}
	name := path.Join(path.Dir(e.File), e.LabelsFile)
	if !fs.ValidPath(e.LabelsFile) {
		return nil, fmt.Errorf("labels_file %q is not a path inside the models directory", e.LabelsFile)
	}
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("read labels: %w", err)
	}
	var labels []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		labels = append(labels, strings.TrimSpace(sc.Text()))
	}
	for len(labels) > 0 && labels[len(labels)-1] == "" {
		labels = labels[:len(labels)-1]
	}
	return labels, sc.Err()
}
