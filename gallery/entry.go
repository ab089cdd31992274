package gallery

import (
	"encoding/json"
	"time"
)

// Kind says what an entry records.
type Kind string

// Kinds of entries. A run is one attack on one image; sweeps and matrices (many
// runs summarised) keep their results in Payload under the same provenance rules.
const (
	KindRun    Kind = "run"
	KindSweep  Kind = "sweep"
	KindMatrix Kind = "matrix"
)

// Eps units: pixel steps out of 255, or a fraction of a [0,1] range.
const (
	Unit255 = "/255"
	Unit1   = "/1"
)

// Entry is one saved record: everything needed to trust and reproduce it.
//
// On Save, Original and Adversarial carry lossless PNG bytes; Slug, CreatedAt
// (when zero), the SHA fields, Width, Height and LInfMeasured are filled in. Get returns the
// SHA fields but not the bytes: read those with Store.Image.
type Entry struct {
	Slug      string    `json:"slug"`
	Kind      Kind      `json:"kind"`
	Title     string    `json:"title,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// GibbonVersion is the version of the Gibbon that made the run.
	GibbonVersion string `json:"gibbon_version"`

	// Models are every model involved: attacked ones and defences, names unique.
	Models []ModelRef `json:"models"`
	Attack string     `json:"attack"`
	// Params holds all the attack's parameters as a JSON object.
	Params  json.RawMessage `json:"params"`
	Seed    int64           `json:"seed"`
	Eps     float64         `json:"eps"`
	EpsUnit string          `json:"eps_unit"` // Unit255 or Unit1
	// LInf is the L-infinity distance the attack reports reaching, in EpsUnit.
	LInf float64 `json:"linf"`
	// LInfMeasured is the L-infinity distance between the two stored images in
	// /255 steps, computed at save time (nil without both images).
	LInfMeasured *float64 `json:"linf_measured_255,omitempty"`
	// L2 is the L2 distance the run reached, on the models' input range.
	L2 float64 `json:"l2,omitempty"`
	// Runtime and Provider say what computed the entry: "ONNX Runtime 1.24.1" and
	// the execution provider its passes ran on ("cpu").
	Runtime  string `json:"runtime,omitempty"`
	Provider string `json:"provider,omitempty"`
	// Imported marks an entry an operator restored with gallery import: this
	// server did not compute it.
	Imported bool `json:"imported,omitempty"`

	Steps       []Step              `json:"steps"`
	Predictions []DefencePrediction `json:"predictions"`
	// Timings in milliseconds by name, e.g. "total", "per_step", "load".
	Timings map[string]float64 `json:"timings_ms,omitempty"`
	// Payload holds a sweep's or matrix's results (a JSON object or array).
	Payload json.RawMessage `json:"payload,omitempty"`

	Original       []byte `json:"-"`
	Adversarial    []byte `json:"-"`
	OriginalSHA    string `json:"original_sha256,omitempty"`
	AdversarialSHA string `json:"adversarial_sha256,omitempty"`
	// Width and Height of the images in pixels (0 without images).
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

// ModelRef names a model by name and file checksum.
type ModelRef struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	// Attacked marks the models whose gradients (or the attack network) made the
	// perturbation; the others are defences it was evaluated against.
	Attacked bool `json:"attacked,omitempty"`
}

// Step summarises one attack step.
type Step struct {
	Step int     `json:"step"`
	Loss float64 `json:"loss"`
	// Top1 is each defence's best guess on this step's adversarial image.
	Top1 []Top1 `json:"top1"`
}

// Top1 is one defence's best guess.
type Top1 struct {
	// Defence names the defence ("mnist-mlp + JPEG q75"); "" means Model alone.
	Defence string  `json:"defence,omitempty"`
	Model   string  `json:"model"`
	Label   string  `json:"label"`
	Prob    float64 `json:"prob"`
	// TrueProb is the probability of the true class (nil when unrecorded).
	TrueProb *float64 `json:"true_prob,omitempty"`
}

// Name is the defence's name: Defence, or Model when that is empty.
func (t Top1) Name() string {
	if t.Defence != "" {
		return t.Defence
	}
	return t.Model
}

// DefencePrediction is one defence's final top-k on both images: a classifier,
// alone or behind an input transformation.
type DefencePrediction struct {
	// Name is the defence's name ("mnist-mlp + JPEG q75"); "" means Model alone.
	Name  string `json:"name,omitempty"`
	Model string `json:"model"`
	// Transform and Param name the input transformation in front of Model, if any.
	Transform   string       `json:"transform,omitempty"`
	Param       int          `json:"param,omitempty"`
	Original    []Prediction `json:"original"`
	Adversarial []Prediction `json:"adversarial"`
}

// DefenceName is the defence's name: Name, or Model when that is empty.
func (d DefencePrediction) DefenceName() string {
	if d.Name != "" {
		return d.Name
	}
	return d.Model
}

// Prediction is one of a top-k.
type Prediction struct {
	Index int     `json:"index"`
	Label string  `json:"label"`
	Prob  float64 `json:"prob"`
}

// Summary is what the gallery index shows of an entry.
type Summary struct {
	Slug             string
	Kind             Kind
	Title            string
	CreatedAt        time.Time
	Model            string // the first model (attacked models first)
	Attack           string
	Eps              float64
	EpsUnit          string
	LInf             float64
	OriginalLabel    string // first model's top-1 on the original
	AdversarialLabel string // and on the adversarial image
	OriginalSHA      string
	AdversarialSHA   string
}

// Receipt is what the saver gets back: the permalink slug and the secret that
// deletes the entry. The token is not stored, only its hash.
type Receipt struct {
	Slug        string
	DeleteToken string
}
