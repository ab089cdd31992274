package inference

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
	"strings"
)

// ModelSource is a set of models: a manifest.json and the files it names.
type ModelSource struct {
	// Name says where the models come from, for people: "built-in" or a directory.
	Name string
	FS   fs.FS
}

// Problem is a model (or a whole manifest, when Model is "") that could not be
// served, and why. Problems are reported; the other models are served.
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

// Registry holds every model that loaded, in manifest order (sources in the order
// given), and the problems of those that did not.
type Registry struct {
	models   []*Model
	byName   map[string]*Model
	problems []Problem
}

// LoadRegistry loads every model of every source: it verifies each file's sha256
// against the manifest, opens a session, and checks the manifest's input contract
// and labels against the graph. A model that fails is reported as a Problem and
// skipped. The error is non-nil only when ctx ends first.
func LoadRegistry(ctx context.Context, rt *Runtime, sources ...ModelSource) (*Registry, error) {
	r := &Registry{byName: map[string]*Model{}}
	for _, src := range sources {
		man, err := ReadManifestFS(src.FS)
		if err != nil {
			r.problems = append(r.problems, Problem{Source: src.Name, Err: err})
			continue
		}
		for _, e := range man.Models {
			if err := ctx.Err(); err != nil {
				r.Close()
				return nil, err
			}
			if prev, ok := r.byName[e.Name]; ok {
				r.problems = append(r.problems, Problem{Source: src.Name, Model: e.Name, File: e.File,
					Err: fmt.Errorf("the name is already used by a %s model: rename one of them in its %s", prev.Source, ManifestFile)})
				continue
			}
			m, err := loadModel(rt, src, e)
			if err != nil {
				r.problems = append(r.problems, Problem{Source: src.Name, Model: e.Name, File: e.File, Err: err})
				continue
			}
			r.models = append(r.models, m)
			r.byName[m.Name] = m
		}
	}
	return r, nil
}

// All is every loaded model, classifiers and attack networks.
func (r *Registry) All() []*Model { return append([]*Model(nil), r.models...) }

// Classifiers is every loaded classifier.
func (r *Registry) Classifiers() []*Model { return r.withTask(TaskClassifier) }

// AttackNetworks is every loaded attack network.
func (r *Registry) AttackNetworks() []*Model { return r.withTask(TaskAttackNetwork) }

func (r *Registry) withTask(task string) []*Model {
	var out []*Model
	for _, m := range r.models {
		if m.Task == task {
			out = append(out, m)
		}
	}
	return out
}

// Model finds a loaded model by name.
func (r *Registry) Model(name string) (*Model, bool) {
	m, ok := r.byName[name]
	return m, ok
}

// Problems lists the models (and manifests) that could not be served.
func (r *Registry) Problems() []Problem { return append([]Problem(nil), r.problems...) }

// Close releases every session.
func (r *Registry) Close() {
	for _, m := range r.models {
		m.session.Close()
	}
}

// Model is one loaded model: its manifest entry, checked against its graph.
type Model struct {
	ModelEntry
	// Source is where it came from ("built-in" or the user's directory).
	Source string
	// Labels are the class names in output order (for classifiers).
	Labels []string
	// Bytes is the size of the .onnx file.
	Bytes int64

	session *Session
	input   string
	output  string
	classes int
}

// Session is the model's ONNX Runtime session.
func (m *Model) Session() *Session { return m.session }

// InputName is the graph input the image goes to.
func (m *Model) InputName() string { return m.input }

// OutputName is the graph output Gibbon reads (the scores, for a classifier).
func (m *Model) OutputName() string { return m.output }

func loadModel(rt *Runtime, src ModelSource, e ModelEntry) (*Model, error) {
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
	if e.Task != TaskClassifier && e.Task != TaskAttackNetwork {
		return nil, fmt.Errorf("task %q is unknown, want %q or %q", e.Task, TaskClassifier, TaskAttackNetwork)
	}
	if err := e.Input.Check(); err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	if e.Task == TaskAttackNetwork && (e.Attack == nil || len(e.Attack.Eps) == 0) {
		return nil, errors.New("an attack network needs \"attack\": {\"eps\": [...]} in the manifest")
	}
	labels, err := readLabels(src.FS, e)
	if err != nil {
		return nil, err
	}

	s, err := rt.NewSession(data)
	if err != nil {
		return nil, fmt.Errorf("ONNX Runtime cannot load it: %w", err)
	}
	m := &Model{ModelEntry: e, Source: src.Name, Labels: labels, Bytes: int64(len(data)), session: s}
	if err := m.checkGraph(); err != nil {
		s.Close()
		return nil, err
	}
	return m, nil
}

func readLabels(fsys fs.FS, e ModelEntry) ([]string, error) {
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

// checkGraph compares the manifest with the graph's declared inputs and outputs.
func (m *Model) checkGraph() error {
	ins, outs := m.session.Inputs(), m.session.Outputs()
	c := m.Input
	var in *IOInfo
	switch {
	case c.Name != "":
		for i := range ins {
			if ins[i].Name == c.Name {
				in = &ins[i]
			}
		}
		if in == nil {
			return fmt.Errorf("the manifest's input %q is not a graph input (the graph has %s)", c.Name, ioNames(ins))
		}
	case len(ins) == 1:
		in = &ins[0]
	default:
		return fmt.Errorf("the graph has inputs %s: name the image input in the manifest", ioNames(ins))
	}
	if len(ins) != 1 {
		return fmt.Errorf("the graph has inputs %s; Gibbon feeds one image input", ioNames(ins))
	}
	if !in.Float {
		return fmt.Errorf("input %q is %s; Gibbon feeds float32 images", in.Name, in.Type)
	}
	want := c.Shape()
	if !shapeFits(in.Shape, want) {
		return fmt.Errorf("input %q has shape %s, the manifest's contract (%s, %d channel(s), %d×%d) means %s",
			in.Name, dimsString(in.Shape), strings.ToUpper(c.Layout), c.Channels, c.Width, c.Height, dimsString(want))
	}
	m.input = in.Name

	if len(outs) == 0 {
		return errors.New("the graph has no outputs")
	}
	out := &outs[0]
	if len(outs) > 1 {
		return fmt.Errorf("the graph has outputs %s; Gibbon reads one", ioNames(outs))
	}
	if !out.Float {
		return fmt.Errorf("output %q is %s; Gibbon reads float32", out.Name, out.Type)
	}
	m.output = out.Name
	if m.Task != TaskClassifier {
		return nil
	}
	k, ok := classCount(out.Shape)
	if !ok {
		// The graph does not say: run it once on a gray image to find out.
		x := NewTensor(want...)
		res, err := m.session.Run(context.Background(), map[string]*Tensor{m.input: x})
		if err != nil {
			return fmt.Errorf("a test run on a blank %s input failed: %w", dimsString(want), err)
		}
		k = res[m.output].Numel()
	}
	if k < 2 {
		return fmt.Errorf("output %q has %d score(s); a classifier needs at least 2", out.Name, k)
	}
	if len(m.Labels) == 0 {
		for i := range k {
			m.Labels = append(m.Labels, fmt.Sprint(i))
		}
	} else if len(m.Labels) != k {
		return fmt.Errorf("the manifest has %d labels, output %q has %d scores", len(m.Labels), out.Name, k)
	}
	m.classes = k
	return nil
}

// shapeFits reports whether a graph shape (-1 = dynamic) accepts want.
func shapeFits(graph, want []int64) bool {
	if len(graph) != len(want) {
		return false
	}
	for i := range graph {
		if graph[i] >= 0 && graph[i] != want[i] {
			return false
		}
	}
	return true
}

// classCount is the number of scores per image a [N,K] (or [K], [N,K,1,1]) output
// declares; false when a dimension is dynamic or missing.
func classCount(shape []int64) (int, bool) {
	if len(shape) == 0 {
		return 0, false
	}
	k := int64(1)
	for i, d := range shape {
		if i == 0 && len(shape) > 1 {
			continue // batch
		}
		if d < 0 {
			return 0, false
		}
		k *= d
	}
	return int(k), true
}

func ioNames(infos []IOInfo) string {
	names := make([]string, len(infos))
	for i, v := range infos {
		names[i] = fmt.Sprintf("%q %s", v.Name, dimsString(v.Shape))
	}
	return strings.Join(names, ", ")
}

func dimsString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "N"
		} else {
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
