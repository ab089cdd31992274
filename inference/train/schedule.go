package train

import (
	"fmt"
	"math"
)

// Learning-rate schedule kinds.
const (
	Constant = "constant"
	Cosine   = "cosine"   // linear warm-up, then half a cosine down to Final×LR
	Step     = "step"     // × Gamma at each of Milestones (fractions of training)
	OneCycle = "onecycle" // linear up to LR at Warmup, linear down to 0 at the end (Smith; Wong et al. 2020)
)

// Schedule gives the learning rate at each step.
type Schedule struct {
	Kind string  `json:"kind"`
	LR   float64 `json:"lr"` // peak learning rate
	// Warmup is the fraction of training spent rising linearly from 0 to LR.
	Warmup float64 `json:"warmup,omitempty"`
	// Final is the cosine schedule's last rate as a fraction of LR.
	Final float64 `json:"final,omitempty"`
	// Milestones (fractions of training) and Gamma for the step schedule.
	Milestones []float64 `json:"milestones,omitempty"`
	Gamma      float64   `json:"gamma,omitempty"`
}

func (s Schedule) validate() error {
	if !(s.LR > 0) {
		return fmt.Errorf("learning rate %g must be positive", s.LR)
	}
	if s.Warmup < 0 || s.Warmup >= 1 {
		return fmt.Errorf("warm-up fraction %g must be in [0,1)", s.Warmup)
	}
	switch s.Kind {
	case Constant, Cosine, OneCycle:
	case Step:
		if s.Gamma <= 0 || s.Gamma > 1 {
			return fmt.Errorf("step schedule gamma %g must be in (0,1]", s.Gamma)
		}
	default:
		return fmt.Errorf("unknown schedule %q (constant, cosine, step or onecycle)", s.Kind)
	}
	return nil
}

// At returns the rate for step (0-based) of total.
func (s Schedule) At(step, total int) float64 {
	if total <= 0 {
		return s.LR
	}
	f := float64(step) / float64(total)
	warm := 1.0
	if s.Warmup > 0 && f < s.Warmup {
		warm = (float64(step) + 1) / (s.Warmup * float64(total))
		if warm > 1 {
			warm = 1
		}
	}
	switch s.Kind {
	case Cosine:
		if f < s.Warmup {
			return s.LR * warm
		}
		p := (f - s.Warmup) / (1 - s.Warmup)
		return s.LR * (s.Final + (1-s.Final)*0.5*(1+math.Cos(math.Pi*p)))
	case Step:
		lr := s.LR * warm
		for _, m := range s.Milestones {
			if f >= m {
				lr *= s.Gamma
			}
		}
		return lr
	case OneCycle:
		if f < s.Warmup {
			return s.LR * warm
		}
		return s.LR * (1 - f) / (1 - s.Warmup)
	default:
		return s.LR * warm
	}
}
