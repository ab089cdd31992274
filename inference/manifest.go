package inference

import (
	"encoding/json"
	"fmt"
)

// Manifest lists models and records what their graphs cannot say: checksum, input
// contract, labels, provenance. models/manifest.json (embedded) and a user's
// --models DIR/manifest.json share this format.
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
	Robust bool          `json:"robust,omitempty"`
	Input  InputContract `json:"input"`
	// Labels in output order; LabelsFile names a file beside the manifest instead.
	Labels     []string `json:"labels,omitempty"`
	LabelsFile string   `json:"labels_file,omitempty"`
	// OutputsLogits is false when the graph ends in a Softmax.
	OutputsLogits bool `json:"outputs_logits"`
	// Metrics are measured results by name, e.g. "clean_accuracy", "pgd40_eps0.3_accuracy".
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	Training *Provenance        `json:"training,omitempty"`
	Attack   *AttackNetInfo     `json:"attack,omitempty"`
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
