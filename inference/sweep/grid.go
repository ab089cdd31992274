package sweep

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gibbon/inference"
)

// MaxGrid bounds how many budgets one sweep takes.
const MaxGrid = 64

// ParseGrid reads budgets on the input range: FROM:TO:STEP ("0:0.4:0.025", both ends
// included) or a comma-separated list ("0.1,0.2,0.3" or "4/255,8/255"). Values may be
// fractions of pixel levels. The result is sorted, without repeats; 0 (the clean
// image) is allowed.
func ParseGrid(s string) ([]float32, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("no ε values (write FROM:TO:STEP like 0:0.4:0.025, or a list like 0.1,0.2,0.3)")
	}
	var out []float32
	if parts := strings.Split(s, ":"); len(parts) > 1 {
		if len(parts) != 3 {
			return nil, fmt.Errorf("ε range %q: write FROM:TO:STEP, like 0:0.4:0.025", s)
		}
		from, err := inference.ParseEps(parts[0])
		if err != nil {
			return nil, fmt.Errorf("ε range %q: %w", s, err)
		}
		to, err := inference.ParseEps(parts[1])
		if err != nil {
			return nil, fmt.Errorf("ε range %q: %w", s, err)
		}
		step, err := inference.ParseEps(parts[2])
		if err != nil || step <= 0 {
			return nil, fmt.Errorf("ε range %q: the step must be a positive number", s)
		}
		if to < from {
			return nil, fmt.Errorf("ε range %q: TO is below FROM", s)
		}
		n := math.Floor((to-from)/step+1e-6) + 1
		if n > MaxGrid {
			return nil, fmt.Errorf("ε range %q has %.0f values, at most %d", s, n, MaxGrid)
		}
		for k := range int(n) {
			// Rounded to 1e-6 so that 0.1+0.1+0.1 prints as 0.3.
			out = append(out, float32(math.Round((from+float64(k)*step)*1e6)/1e6))
		}
	} else {
		for _, p := range strings.Split(s, ",") {
			if strings.TrimSpace(p) == "" {
				continue
			}
			v, err := inference.ParseEps(p)
			if err != nil {
				return nil, err
			}
			out = append(out, float32(v))
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no ε values in %q", s)
	}
	if len(out) > MaxGrid {
		return nil, fmt.Errorf("%d ε values, at most %d", len(out), MaxGrid)
	}
	return out, nil
}

// CheckGrid reports budgets outside [0, range width].
func CheckGrid(eps []float32, rng [2]float32) error {
	if len(eps) == 0 {
		return fmt.Errorf("no ε values")
	}
	w := rng[1] - rng[0]
	for _, e := range eps {
		if !(e >= 0) || e > w || math.IsInf(float64(e), 0) {
			return fmt.Errorf("ε %g is outside [0, %g], the width of the input range [%g,%g]", e, w, rng[0], rng[1])
		}
	}
	return nil
}
