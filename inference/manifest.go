package inference

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

	"gibbon/internal/atomicfile"
)

// ManifestFile is the manifest's name inside a models folder or ModelSource.
const ManifestFile = "manifest.json"

// Manifest lists models and records what their graphs cannot say: checksum, input
// contract, labels, provenance. models/manifest.json (embedded) and a user's
// --models DIR/manifest.json share this format; this file is the one place that
// reads and writes it.
type Manifest struct {
	Models []ModelEntry `json:"models"`
}

// Model tasks.
const (
	TaskClassifier    = "classifier"
	TaskAttackNetwork = "attack-network"
)

// ModelEntry describes one model file.
type ModelEntry struct {
	Name         string `json:"name"`
	File         string `json:"file"`
	SHA256       string `json:"sha256"`
	Task         string `json:"task"` // classifier (default) or attack-network
	Description  string `json:"description,omitempty"`
	Architecture string `json:"architecture,omitempty"`
	// Robust marks adversarially trained models.
	Robust bool `json:"robust,omitempty"`
	// Role is the part a pulled model plays in the NIPS'17 setting: RoleDefence or
	// RoleSurrogate (empty for any other model).
	Role  string        `json:"role,omitempty"`
	Input InputContract `json:"input"`
	// Labels in output order; LabelsFile names a file beside the manifest instead.
	Labels     []string `json:"labels,omitempty"`
	LabelsFile string   `json:"labels_file,omitempty"`
	// OutputsLogits is false when the graph ends in a Softmax.
	OutputsLogits bool `json:"outputs_logits"`
	// Metrics are measured results by name, e.g. "clean_accuracy", "pgd40_eps0.3_accuracy".
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	Training *Provenance        `json:"training,omitempty"`
	Attack   *AttackNetInfo     `json:"attack,omitempty"`
	// Pin says which published bytes a pulled model was made from; a later pull of
	// the same name fetches exactly these again.
	Pin *Pin `json:"pin,omitempty"`
}

// Roles a pulled model can play in the NIPS'17 competition's setting.
const (
	RoleDefence   = "defence"
	RoleSurrogate = "surrogate"
)

// Pin sources: who vouched for a pulled file's SHA-256.
const (
	PinByHub     = "hub"     // the hub's LFS metadata for a commit
	PinByCatalog = "catalog" // a checksum stored in Gibbon's catalog
	PinByUser    = "user"    // --sha256, given by the user
)

// Pin records the published file a pulled model was prepared from (the registered
// file's own checksum is ModelEntry.SHA256).
type Pin struct {
	Source string `json:"source"`
	// Repo, Path and Commit locate the file on the hub (empty for other sources).
	Repo   string `json:"repo,omitempty"`
	Path   string `json:"path,omitempty"`
	Commit string `json:"commit,omitempty"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size,omitempty"`
	// URL is where the verified bytes came from (a file path for --from).
	URL string `json:"url,omitempty"`
}

// Provenance records how a built-in model was made.
type Provenance struct {
	Command     string  `json:"command"`
	Seed        int64   `json:"seed"`
	Data        string  `json:"data"`
	Epochs      float64 `json:"epochs"`
	WallSeconds float64 `json:"wall_seconds"`
	Date        string  `json:"date"`
	Notes       string  `json:"notes,omitempty"`
}

// AttackNetInfo describes an attack network's heads.
type AttackNetInfo struct {
	Eps     []float64 `json:"eps"`     // one head per eps, in output order, on the input Range
	Targets []string  `json:"targets"` // classifiers it was trained against
}

// ParseManifest decodes a manifest and checks required fields.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	seen := map[string]bool{}
	for i, e := range m.Models {
		if e.Name == "" || e.File == "" {
			return nil, fmt.Errorf("manifest: model %d needs a name and a file", i)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("manifest: model name %q appears twice", e.Name)
		}
		seen[e.Name] = true
		if m.Models[i].Task == "" {
			m.Models[i].Task = TaskClassifier
		}
	}
	return &m, nil
}

// ReadManifestFS reads the manifest of a models source: a folder, or the embedded
// built-in models.
func ReadManifestFS(fsys fs.FS) (*Manifest, error) {
	data, err := fs.ReadFile(fsys, ManifestFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ManifestFile, err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%w (fix %s)", err, ManifestFile)
	}
	return m, nil
}

// ReadManifest reads dir's manifest; a folder without one has an empty manifest.
func ReadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Manifest{}, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (fix or move it; Gibbon will not overwrite it)", path, err)
	}
	return m, nil
}

// UpdateManifest applies fn to dir's manifest and writes it back atomically (a crash
// leaves the old one or the new one), once it reads back.
func UpdateManifest(dir string, fn func(*Manifest) error) error {
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
	if _, err := ParseManifest(buf.Bytes()); err != nil {
		return fmt.Errorf("manifest would not read back: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, ManifestFile), buf.Bytes())
}

// Put replaces the entry of e's name, or appends e.
func (m *Manifest) Put(e ModelEntry) {
	for i := range m.Models {
		if m.Models[i].Name == e.Name {
			m.Models[i] = e
			return
		}
	}
	m.Models = append(m.Models, e)
}

// Entry returns the named entry; a name the manifest lacks is an ErrInvalid.
func (m *Manifest) Entry(name string) (*ModelEntry, error) {
	for i := range m.Models {
		if m.Models[i].Name == name {
			return &m.Models[i], nil
		}
	}
	return nil, Invalidf("manifest has no model %q", name)
}

// EntryOf returns the named entry when it is a model of task (a classifier, an
// attack network); otherwise an ErrInvalid.
func (m *Manifest) EntryOf(name, task string) (*ModelEntry, error) {
	e, err := m.Entry(name)
	if err == nil && e.Task != task {
		err = Invalidf("%s is %s, not %s", name, taskNoun(e.Task), taskNoun(task))
	}
	return e, err
}

// taskNoun names a task in a sentence: "an attack network".
func taskNoun(task string) string {
	switch task {
	case TaskAttackNetwork:
		return "an attack network"
	case TaskClassifier:
		return "a classifier"
	}
	return fmt.Sprintf("a model of task %q", task)
}

// ReadModelFile reads an entry's file from dir and checks its SHA-256.
func ReadModelFile(dir string, e *ModelEntry) ([]byte, error) {
	path := filepath.Join(dir, e.File)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); e.SHA256 != "" && got != e.SHA256 {
		return nil, fmt.Errorf("%s has SHA-256 %s but the manifest says %s: retrain it or fix the manifest", path, got, e.SHA256)
	}
	return data, nil
}

// RecordMetrics merges metrics into name's entry in dir's manifest, refusing when the
// model file changed (another checksum) while it was being evaluated.
func RecordMetrics(dir, name, sha256 string, metrics map[string]float64) error {
	return UpdateManifest(dir, func(m *Manifest) error {
		e, err := m.Entry(name)
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
