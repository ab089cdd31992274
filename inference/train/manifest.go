package train

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
)

// ManifestFile is the manifest's name inside a models folder.
const ManifestFile = "manifest.json"

// MNISTInput is the input contract of every built-in MNIST model.
func MNISTInput() inference.InputContract {
	return inference.InputContract{Name: arch.Input, Layout: "NCHW", Channels: 1, Height: mnist.Rows, Width: mnist.Cols,
		Color: "gray", Range: [2]float64{0, 1}, Resize: "mnist"}
}

// DigitLabels are the class names in output order.
func DigitLabels() []string {
	out := make([]string, mnist.Classes)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}

// Entry is the manifest entry of a trained recipe, before evaluation.
func (r Recipe) Entry(file, sha string, prov *inference.Provenance) inference.ModelEntry {
	a, _ := arch.Get(r.Config.Arch)
	return inference.ModelEntry{Name: r.Name, File: file, SHA256: sha, Task: inference.TaskClassifier,
		Description: r.Description, Architecture: a.Name + ": " + a.Description, Robust: r.Robust,
		Input: MNISTInput(), Labels: DigitLabels(), OutputsLogits: true, Training: prov}
}

// SaveModel writes a model atomically and returns its SHA-256.
func SaveModel(m *onnx.ModelProto, path string) (string, error) {
	data, err := onnx.Encode(m)
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return "", err
	}
	return sha256Hex(data), nil
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// ReadManifest reads dir/manifest.json; a missing file is an empty manifest.
func ReadManifest(dir string) (*inference.Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &inference.Manifest{}, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := inference.ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return m, nil
}

// UpdateManifest applies fn to dir/manifest.json and writes it back atomically.
func UpdateManifest(dir string, fn func(*inference.Manifest) error) error {
	m, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	if err := fn(m); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ManifestFile), buf.Bytes())
}

// PutEntry replaces the entry of the same name, or appends e.
func PutEntry(m *inference.Manifest, e inference.ModelEntry) {
	for i := range m.Models {
		if m.Models[i].Name == e.Name {
			m.Models[i] = e
			return
		}
	}
	m.Models = append(m.Models, e)
}

// FindEntry returns the named entry.
func FindEntry(m *inference.Manifest, name string) (*inference.ModelEntry, error) {
	for i := range m.Models {
		if m.Models[i].Name == name {
			return &m.Models[i], nil
		}
	}
	return nil, inference.Invalidf("manifest has no model %q", name)
}

// FindTask returns the named entry when it is a model of task (a classifier, an
// attack network).
func FindTask(m *inference.Manifest, name, task string) (*inference.ModelEntry, error) {
	e, err := FindEntry(m, name)
	if err == nil && e.Task != task {
		err = inference.Invalidf("%s is %s, not %s", name, taskNoun(e.Task), taskNoun(task))
	}
	return e, err
}

// taskNoun names a task in a sentence: "an attack network".
func taskNoun(task string) string {
	switch task {
	case inference.TaskAttackNetwork:
		return "an attack network"
	case inference.TaskClassifier:
		return "a classifier"
	}
	return fmt.Sprintf("a model of task %q", task)
}

// ReadModelFile reads an entry's file from dir and checks its SHA-256.
func ReadModelFile(dir string, e *inference.ModelEntry) ([]byte, error) {
	path := filepath.Join(dir, e.File)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if got := sha256Hex(data); e.SHA256 != "" && got != e.SHA256 {
		return nil, fmt.Errorf("%s has SHA-256 %s but the manifest says %s: retrain it or fix the manifest", path, got, e.SHA256)
	}
	return data, nil
}

// RecordMetrics merges metrics into name's manifest entry in dir, refusing when the
// model file changed (another checksum) while it was being evaluated.
func RecordMetrics(dir, name, sha256 string, metrics map[string]float64) error {
	return UpdateManifest(dir, func(m *inference.Manifest) error {
		e, err := FindEntry(m, name)
		if err != nil {
			return err
		}
		if e.SHA256 != sha256 {
			return fmt.Errorf("%s changed while it was being evaluated; evaluate it again", name)
		}
		if e.Metrics == nil {
			e.Metrics = map[string]float64{}
		}
		maps.Copy(e.Metrics, metrics)
		return nil
	})
}
