package attack

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gibbon/inference"
)

// Method names an attack.
type Method string

const (
	FGSM     Method = "fgsm"
	BIM      Method = "bim" // also called I-FGSM
	PGD      Method = "pgd"
	MIFGSM   Method = "mi-fgsm"
	DIFGSM   Method = "di-fgsm"
	MDI2FGSM Method = "m-di2-fgsm"
	Square   Method = "square"
	Noise    Method = "noise"
	// APGDCE, APGDDLR and APGDT are Auto-PGD (Croce & Hein, ICML 2020) on the
	// cross-entropy, the DLR loss, and the targeted DLR loss over the top classes.
	APGDCE  Method = "apgd-ce"
	APGDDLR Method = "apgd-dlr"
	APGDT   Method = "apgd-t"
	// FABT is the targeted L∞ Fast Adaptive Boundary attack (Croce & Hein, ICML 2020).
	FABT Method = "fab-t"
	// AutoAttack is the standard ensemble: APGD-CE, APGD-T, FAB-T, then Square.
	AutoAttack Method = "autoattack"
)

// Methods lists every attack, in the order menus show them.
var Methods = []Method{FGSM, BIM, PGD, MIFGSM, DIFGSM, MDI2FGSM, Square, Noise, APGDCE, APGDDLR, APGDT, FABT, AutoAttack}

// ParseMethod accepts a method's name in any case, with or without dashes
// (e.g. "mifgsm", "I-FGSM", "mdi2fgsm").
func ParseMethod(s string) (Method, error) {
	key := strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(strings.TrimSpace(s)))
	switch key {
	case "fgsm":
		return FGSM, nil
	case "bim", "ifgsm":
		return BIM, nil
	case "pgd":
		return PGD, nil
	case "mifgsm", "mim":
		return MIFGSM, nil
	case "difgsm", "di2fgsm":
		return DIFGSM, nil
	case "mdi2fgsm", "mdifgsm":
		return MDI2FGSM, nil
	case "square", "squareattack":
		return Square, nil
	case "noise", "random", "randomnoise":
		return Noise, nil
	case "apgdce", "apgd", "autopgd":
		return APGDCE, nil
	case "apgddlr":
		return APGDDLR, nil
	case "apgdt", "apgddlrt":
		return APGDT, nil
	case "fabt":
		return FABT, nil
	case "autoattack", "aa":
		return AutoAttack, nil
	}
	names := make([]string, len(Methods))
	for i, m := range Methods {
		names[i] = string(m)
	}
	return "", fmt.Errorf("unknown attack %q (choose one of %s)", s, strings.Join(names, ", "))
}

// BlackBox reports whether the method uses predictions only.
func (m Method) BlackBox() bool { return m == Square || m == Noise }

// parameterFree reports the methods that set their own step sizes (APGD, FAB and the
// AutoAttack ensemble of them).
func (m Method) parameterFree() bool {
	return m == APGDCE || m == APGDDLR || m == APGDT || m == FABT || m == AutoAttack
}

// sweepsTargets reports the methods that attack each image towards its most likely
// wrong classes in turn (Config.TargetClasses of them) and count any misclassification.
func (m Method) sweepsTargets() bool { return m == APGDT || m == FABT || m == AutoAttack }

// Loss is the objective gradient attacks climb.
type Loss string

const (
	// LossCE is softmax cross-entropy: of the label (untargeted, maximised) or of the
	// target (targeted, minimised).
	LossCE Loss = "ce"
	// LossMargin is the C&W-style logit margin: max_{j≠y} z_j − z_y (untargeted) or
	// z_t − max_{j≠t} z_j (targeted), maximised.
	LossMargin Loss = "margin"
	// LossDLR is the Difference of Logits Ratio of APGD (Croce & Hein 2020), maximised:
	// −(z_y − max_{j≠y} z_j)/(z_π1 − z_π3) untargeted, −(z_y − z_t)/(z_π1 − (z_π3+z_π4)/2)
	// targeted, π ordering the logits from the largest. It is invariant to shifting and
	// scaling the logits. Only the APGD methods take it.
	LossDLR Loss = "dlr"
)

// TargetMode says which class the attack aims for.
type TargetMode string

const (
	Untargeted  TargetMode = ""
	TargetClass TargetMode = "class"        // Config.TargetClass for every image
	LeastLikely TargetMode = "least-likely" // the surrogates' least likely clean class
)

// Config is an attack's parameters. Zero values take the method's defaults (Defaults).
type Config struct {
	Method Method `json:"method"`
	// Eps is the L∞ budget on the input range (0.3 on [0,1] is 76.5/255).
	Eps float32 `json:"eps"`
	// Range is the valid input range; zero means [0,1].
	Range [2]float32 `json:"range"`
	// Steps of gradient attacks (FGSM: 1).
	Steps int `json:"steps,omitempty"`
	// Alpha is the step size; 0 means ε/Steps (2.5ε/Steps for PGD).
	Alpha float32 `json:"alpha,omitempty"`
	// Restarts of PGD from random starts; the best per image is kept. APGD and FAB-T
	// restart (per target class) only the images not yet fooled.
	Restarts int `json:"restarts,omitempty"`
	// TargetClasses is how many of each image's most likely wrong classes APGD-T and
	// FAB-T aim at in turn (default 9, or the classes there are if fewer).
	TargetClasses int `json:"target_classes,omitempty"`
	// NoRandomStart starts PGD at the clean image.
	NoRandomStart bool `json:"no_random_start,omitempty"`
	// Momentum μ of MI-FGSM and M-DI²-FGSM (default 1).
	Momentum float32 `json:"momentum,omitempty"`
	// DiversityProb is the chance an image is transformed at a DI step (default 0.5);
	// DiversityMin the smallest resize ratio (default 0.9): the image is resized to
	// [ratio·H, H] by nearest neighbour and padded back to H×W at a random offset.
	DiversityProb float32 `json:"diversity_prob,omitempty"`
	DiversityMin  float32 `json:"diversity_min,omitempty"`
	Loss          Loss    `json:"loss,omitempty"`
	// Target and TargetClass select a targeted attack.
	Target      TargetMode `json:"target,omitempty"`
	TargetClass int        `json:"target_class,omitempty"`
	// Queries is the per-image budget of Square Attack (default 1000; AutoAttack's
	// Square stage 5000) and the number of random draws of Noise (default 1).
	Queries int `json:"queries,omitempty"`
	// SquareP is Square Attack's initial fraction of pixels changed per query (default
	// 0.05; the paper and AutoAttack use 0.8).
	SquareP float32 `json:"square_p,omitempty"`
	// NoQuantize keeps float values instead of 256 levels over Range.
	NoQuantize bool `json:"no_quantize,omitempty"`
	// Layout of images: "NCHW" (default) or "NHWC"; used by DI and Square.
	Layout string `json:"layout,omitempty"`
	Seed   int64  `json:"seed"`
}

// Defaults returns c with every zero field set to the method's default.
func (c Config) Defaults() Config {
	if c.Range == [2]float32{} {
		c.Range = [2]float32{0, 1}
	}
	if c.Loss == "" && (c.Method == APGDDLR || c.Method == APGDT) {
		c.Loss = LossDLR
	}
	if c.Loss == "" {
		c.Loss = LossCE
	}
	if l, err := inference.ParseLayout(c.Layout); err == nil {
		c.Layout = l
	}
	switch c.Method {
	case FGSM:
		c.Steps = 1
		if c.Alpha == 0 {
			c.Alpha = c.Eps
		}
	case BIM, PGD, MIFGSM, DIFGSM, MDI2FGSM:
		if c.Steps == 0 {
			c.Steps = 10
			if c.Method == PGD {
				c.Steps = 40
			}
		}
		if c.Alpha == 0 && c.Steps > 0 {
			c.Alpha = c.Eps / float32(c.Steps)
			if c.Method == PGD {
				c.Alpha = 2.5 * c.Eps / float32(c.Steps)
			}
		}
	}
	if c.Method == PGD && c.Restarts == 0 {
		c.Restarts = 1
	}
	if (c.Method == MIFGSM || c.Method == MDI2FGSM) && c.Momentum == 0 {
		c.Momentum = 1
	}
	if c.Method == DIFGSM || c.Method == MDI2FGSM {
		if c.DiversityProb == 0 {
			c.DiversityProb = 0.5
		}
		if c.DiversityMin == 0 {
			c.DiversityMin = 0.9
		}
	}
	if c.Method == Square {
		if c.Queries == 0 {
			c.Queries = 1000
		}
		if c.SquareP == 0 {
			c.SquareP = 0.05
		}
	}
	if c.Method == Noise && c.Queries == 0 {
		c.Queries = 1
	}
	if c.Method.parameterFree() {
		// The papers' budgets: 100 iterations, one run per target class.
		if c.Steps == 0 {
			c.Steps = 100
		}
		if c.Restarts == 0 {
			c.Restarts = 1
		}
	}
	if c.Method == AutoAttack {
		if c.Queries == 0 {
			c.Queries = 5000
		}
		if c.SquareP == 0 {
			c.SquareP = 0.8
		}
	}
	return c
}

// Validate reports a configuration that cannot run (call it on Defaults()).
func (c Config) Validate() error {
	if _, err := ParseMethod(string(c.Method)); err != nil || c.Method == "" {
		return fmt.Errorf("unknown attack %q", c.Method)
	}
	lo, hi := c.Range[0], c.Range[1]
	if !finite(lo) || !finite(hi) || !(lo < hi) {
		return fmt.Errorf("input range [%g,%g] is empty", lo, hi)
	}
	if !finite(c.Eps) || c.Eps <= 0 {
		return fmt.Errorf("eps must be a positive number, got %g", c.Eps)
	}
	if c.Eps > hi-lo {
		return fmt.Errorf("eps %g exceeds the input range [%g,%g]", c.Eps, lo, hi)
	}
	if !c.Method.BlackBox() {
		if c.Steps < 1 || c.Steps > 100000 {
			return fmt.Errorf("steps must be between 1 and 100000, got %d", c.Steps)
		}
		if c.Method.parameterFree() && c.Alpha != 0 {
			return fmt.Errorf("%s sets its own step size: leave the step size out", c.Method)
		}
		if !c.Method.parameterFree() && (!finite(c.Alpha) || c.Alpha <= 0) {
			return fmt.Errorf("step size must be positive, got %g", c.Alpha)
		}
	}
	if c.Restarts < 0 || c.Restarts > 1000 {
		return fmt.Errorf("restarts must be between 1 and 1000, got %d", c.Restarts)
	}
	if !finite(c.Momentum) || c.Momentum < 0 {
		return fmt.Errorf("momentum must be ≥ 0, got %g", c.Momentum)
	}
	if !finite(c.DiversityProb) || c.DiversityProb < 0 || c.DiversityProb > 1 {
		return fmt.Errorf("diversity probability must be in [0,1], got %g", c.DiversityProb)
	}
	if c.DiversityProb > 0 && (!finite(c.DiversityMin) || c.DiversityMin <= 0 || c.DiversityMin > 1) {
		return fmt.Errorf("diversity resize ratio must be in (0,1], got %g", c.DiversityMin)
	}
	if err := c.validateLoss(); err != nil {
		return err
	}
	switch c.Target {
	case Untargeted, LeastLikely:
	case TargetClass:
		if c.TargetClass < 0 {
			return fmt.Errorf("target class must be ≥ 0, got %d", c.TargetClass)
		}
	default:
		return fmt.Errorf("unknown target mode %q (choose class or least-likely)", c.Target)
	}
	if c.Method.sweepsTargets() && c.Target != Untargeted {
		return fmt.Errorf("%s picks its own targets (the %s most likely wrong classes of each image): leave the target out", c.Method, orDefault(c.TargetClasses, "9"))
	}
	if c.TargetClasses < 0 || c.TargetClasses > 1000 {
		return fmt.Errorf("target classes must be between 1 and 1000, got %d", c.TargetClasses)
	}
	if (c.Method.BlackBox() || c.Method == AutoAttack) && (c.Queries < 1 || c.Queries > 1000000) {
		return fmt.Errorf("queries must be between 1 and 1000000, got %d", c.Queries)
	}
	if (c.Method == Square || c.Method == AutoAttack) && (!finite(c.SquareP) || c.SquareP <= 0 || c.SquareP > 1) {
		return fmt.Errorf("square fraction p must be in (0,1], got %g", c.SquareP)
	}
	if _, err := inference.ParseLayout(c.Layout); err != nil {
		return err
	}
	return nil
}

// validateLoss checks that the loss is one the method climbs.
func (c Config) validateLoss() error {
	switch c.Loss {
	case LossCE, LossMargin, LossDLR:
	default:
		return fmt.Errorf("unknown loss %q (choose ce, margin or dlr)", c.Loss)
	}
	switch {
	case c.Method == APGDCE && c.Loss != LossCE:
		return fmt.Errorf("apgd-ce climbs the cross-entropy, not %s (use apgd-dlr for the DLR loss)", c.Loss)
	case (c.Method == APGDDLR || c.Method == APGDT) && c.Loss != LossDLR:
		return fmt.Errorf("%s climbs the DLR loss, not %s (use apgd-ce for the cross-entropy)", c.Method, c.Loss)
	case (c.Method == FABT || c.Method == AutoAttack) && c.Loss != LossCE:
		return fmt.Errorf("%s has no loss option (got %s)", c.Method, c.Loss)
	case c.Loss == LossDLR && c.Method != APGDDLR && c.Method != APGDT:
		return fmt.Errorf("the dlr loss is for apgd-dlr and apgd-t, not %s", c.Method)
	}
	return nil
}

func orDefault(n int, def string) string {
	if n == 0 {
		return def
	}
	return strconv.Itoa(n)
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
