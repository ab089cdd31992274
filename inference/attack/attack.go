// Package attack holds Gibbon's adversarial attacks: FGSM, BIM/I-FGSM, PGD, MI-FGSM,
// DI-FGSM, M-DI²-FGSM, APGD (CE, DLR, targeted) and FAB-T on gradients; Square Attack
// and random noise on predictions only; and the AutoAttack ensemble of APGD-CE,
// APGD-T, FAB-T and Square. Every attack is a loop that reports each step through a callback, runs in the
// caller's goroutine, honours ctx within one step, and never leaves the L∞ ball around
// the clean image nor the model's input range, before and after 8-bit quantisation.
//
// The attacks see models through two small interfaces declared here: Classifier
// (predictions) and Differentiable (gradients). ONNXModel adapts an ONNX graph run by
// ONNX Runtime to both, taking gradients from an autodiff graph.
package attack

import (
	"context"
	"time"

	"gibbon/inference"
)

// Classifier predicts logits for a batch of images.
type Classifier interface {
	// Predict returns logits [N, classes] for images [N, ...] on the model's input range.
	Predict(ctx context.Context, x *inference.Tensor) (*inference.Tensor, error)
}

// LossKind says what the weights passed to Differentiable.Gradient mean.
type LossKind int

const (
	// CrossEntropy: weights are label weights [N,C] (one-hot or soft);
	// loss_i = -Σ_c w_ic · log softmax(z_i)_c.
	CrossEntropy LossKind = iota
	// LogitSeed: weights are a seed [N,C]; loss_i = Σ_c w_ic · z_ic.
	LogitSeed
)

// Gradient is what one forward and backward pass returns.
type Gradient struct {
	Logits *inference.Tensor // [N,C] at the input
	Loss   []float32         // per image
	Input  *inference.Tensor // d(Σ_i loss_i)/d input, shaped like the input
}

// Differentiable is a classifier that also returns input gradients.
type Differentiable interface {
	Classifier
	Gradient(ctx context.Context, x *inference.Tensor, kind LossKind, w *inference.Tensor) (*Gradient, error)
}

// Model is a classifier with the name results report it under.
type Model struct {
	Name string
	Net  Classifier
}

// Request is what to attack.
type Request struct {
	// Images [N, ...] on the models' input range (Config.Range).
	Images *inference.Tensor
	// Labels are the true classes; nil means the surrogates' clean predictions.
	Labels []int
	// Surrogates are attacked together (losses averaged for gradient attacks, logits
	// averaged for black-box ones). Gradient attacks need every Net to be Differentiable.
	// To average logits before the loss, merge the graphs with MergeLogits first.
	Surrogates []Model
	// Others are only evaluated on the final images (transfer).
	Others []Model
}

// Step is one reported point of an attack. Adv and the tensors in it belong to the
// attack and are valid only during the callback: clone what you keep.
type Step struct {
	// Stage names AutoAttack's attack running ("apgd-ce", "apgd-t", "fab-t", "square");
	// "" for the other methods.
	Stage string
	// Restart is the 0-based restart (PGD), or run (APGD and FAB-T: target class ×
	// restarts + restart); 0 otherwise. Restarts is their number.
	Restart  int
	Restarts int
	Step     int // 0 is the start point; Steps is the final, quantised point
	Steps    int
	// Final marks the attack's last step: its Adv is the result. With PGD restarts,
	// each restart ends in a quantised step, and a last Best step follows.
	Final bool
	// Best marks the per-image best of all restarts (reported once, after them).
	Best bool
	Adv  *inference.Tensor
	// Loss is the objective the attack maximises, per image, averaged over surrogates:
	// cross-entropy of the label (untargeted) or minus that of the target (targeted),
	// or the margin or DLR loss (see Loss). FAB-T reports z_target − z_label at its
	// current iterate, which may lie outside the ball (Adv holds the best adversarial
	// found inside it, else the clean image). AutoAttack reports each stage's objective
	// for the images the stage attacks; the others keep their last value.
	Loss []float32
	// Pred is the argmax of the surrogates' averaged logits; Logits are per surrogate.
	Pred   []int
	Logits []*inference.Tensor
	// Diverse marks steps whose loss and predictions were taken on the input-diversity
	// transform of Adv (DI-FGSM), not on Adv itself.
	Diverse bool
	// Queries so far per image (black-box attacks).
	Queries []int
}

// StepFunc receives every step; a non-nil error stops the attack and is returned.
type StepFunc func(Step) error

// ModelResult is one model's verdict on the final images.
type ModelResult struct {
	Name      string `json:"name"`
	Surrogate bool   `json:"surrogate"`
	Clean     []int  `json:"clean_pred"`
	Adv       []int  `json:"adv_pred"`
	// Success: untargeted, the adversarial prediction differs from the label;
	// targeted, it equals the target.
	Success       []bool  `json:"success"`
	SuccessRate   float64 `json:"success_rate"`
	CleanAccuracy float64 `json:"clean_accuracy"`
	AdvAccuracy   float64 `json:"adv_accuracy"`
}

// Result is an attack's outcome.
type Result struct {
	Config  Config            `json:"config"` // with defaults filled in
	Adv     *inference.Tensor `json:"-"`      // final images, quantised unless Config.NoQuantize
	Labels  []int             `json:"labels"`
	Targets []int             `json:"targets,omitempty"`
	Models  []ModelResult     `json:"models"` // surrogates first, then others
	Linf    []float32         `json:"linf"`   // per image, after quantisation
	L2      []float32         `json:"l2"`
	LinfMax float32           `json:"linf_max"`
	// OffGrid counts pixels that could not be put on the 8-bit grid inside the ball
	// (only possible when the clean image is off the grid and ε < half a level); they
	// keep their clean value.
	OffGrid int `json:"off_grid"`
	// Forward and Backward count image passes through the surrogates (a batch of N is N
	// passes; a gradient is one forward and one backward). Queries are black-box
	// predictions per image.
	Forward  int64         `json:"forward_passes"`
	Backward int64         `json:"backward_passes"`
	Queries  []int         `json:"queries,omitempty"`
	Wall     time.Duration `json:"wall_ns"`
	Seed     int64         `json:"seed"`
	// Stages are AutoAttack's attacks in order, each run on the images still robust.
	Stages []Stage `json:"stages,omitempty"`
	// Note says what a reader must know to read the result (AutoAttack on a model
	// without gradients: its black-box part only).
	Note string `json:"note,omitempty"`
}

// Stage is one attack of an AutoAttack run.
type Stage struct {
	Name string `json:"name"` // apgd-ce, apgd-t, fab-t, square
	// Attacked images were still robust when the stage began; Fooled of them it fooled.
	Attacked int `json:"attacked"`
	Fooled   int `json:"fooled"`
	// RobustAccuracy is the share of all images classified correctly after the stage.
	RobustAccuracy float64       `json:"robust_accuracy"`
	Forward        int64         `json:"forward_passes"`
	Backward       int64         `json:"backward_passes"`
	Wall           time.Duration `json:"wall_ns"`
	// Skipped says why the stage did not run.
	Skipped string `json:"skipped,omitempty"`
}

// N is the number of images.
func (r *Result) N() int { return len(r.Labels) }

// PassesPerImage is the mean forward and backward passes per image.
func (r *Result) PassesPerImage() (fwd, bwd float64) {
	if n := r.N(); n > 0 {
		return float64(r.Forward) / float64(n), float64(r.Backward) / float64(n)
	}
	return 0, 0
}
