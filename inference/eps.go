package inference

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Eps is an L∞ budget on a model's pixel range: Value in the range's units (0.3 on
// [0,1], 8 on [0,255]). People count budgets in /255 steps of the range as well:
// 0.3 on [0,1] is 76.5/255.
type Eps struct {
	Value float64
	Range [2]float32 // the zero range means [0,1]
}

// EpsOn is a budget of v on rng, as attacks hold it.
func EpsOn(v float32, rng [2]float32) Eps { return Eps{Value: float64(v), Range: rng} }

// EpsLevels is a budget of levels /255 steps of rng.
func EpsLevels(levels float64, rng [2]float32) Eps {
	e := Eps{Range: rng}
	e.Value = levels / 255 * e.width()
	return e
}

// ParseEps reads a budget written as a number ("0.3") or a fraction of pixel levels
// ("8/255"), on the model's input range. 0 (the clean image) is a budget too;
// negative, infinite and unreadable values are not.
func ParseEps(s string) (float64, error) {
	s = strings.TrimSpace(s)
	num, den, frac := strings.Cut(s, "/")
	a, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil {
		return 0, fmt.Errorf("ε %q is not a number or a fraction like 8/255", s)
	}
	if frac {
		b, err := strconv.ParseFloat(strings.TrimSpace(den), 64)
		if err != nil || b == 0 {
			return 0, fmt.Errorf("ε %q is not a fraction like 8/255", s)
		}
		a /= b
	}
	if math.IsNaN(a) || math.IsInf(a, 0) || a < 0 {
		return 0, fmt.Errorf("ε %q must be a number ≥ 0", s)
	}
	return a, nil
}

func (e Eps) width() float64 {
	if w := float64(e.Range[1]) - float64(e.Range[0]); w > 0 {
		return w
	}
	return 1
}

func (e Eps) unitRange() bool { return e.Range == [2]float32{0, 1} || e.Range == [2]float32{} }

// Levels is the budget in /255 steps of its range.
func (e Eps) Levels() float64 { return e.Value / e.width() * 255 }

// WholeLevels is the largest whole number of /255 steps within the budget: what a
// budget allows an image kept on the 8-bit grid to move.
func (e Eps) WholeLevels() int { return int(math.Floor(e.Levels() + 1e-6)) }

// String writes the value first, then the /255 steps: "0.3 (76.5/255)" on [0,1],
// "8 on [0,255] (8/255)" on other ranges, "0 (clean)".
func (e Eps) String() string {
	switch {
	case e.Value == 0:
		return "0 (clean)"
	case e.unitRange():
		return fmt.Sprintf("%s (%s/255)", fmtNum(e.Value), fmtNum(e.Levels()))
	}
	return fmt.Sprintf("%s on [%s,%s] (%s/255)", fmtNum(e.Value), fmtNum(float64(e.Range[0])), fmtNum(float64(e.Range[1])), fmtNum(e.Levels()))
}

// LevelsString writes the /255 steps first, then the value: "40/255 = 0.157" on
// [0,1], "40/255 of [0,255] = 40" on other ranges.
func (e Eps) LevelsString() string {
	if e.unitRange() {
		return fmt.Sprintf("%s/255 = %.3g", fmtNum(e.Levels()), e.Value)
	}
	return fmt.Sprintf("%s/255 of [%g,%g] = %.4g", fmtNum(e.Levels()), e.Range[0], e.Range[1], e.Value)
}

// fmtNum writes v with at most four decimals and no trailing zeros.
func fmtNum(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e4)/1e4, 'f', -1, 64)
}
