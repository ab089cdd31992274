package inference

import (
	"math"
	"testing"
)

func TestParseEps(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
	}{{"0.3", 0.3}, {"8/255", 8.0 / 255}, {" 76.5 / 255 ", 76.5 / 255}, {"8", 8}, {"0", 0}, {"0/255", 0}} {
		got, err := ParseEps(c.in)
		if err != nil || math.Abs(got-c.want) > 1e-12 {
			t.Fatalf("ParseEps(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "abc", "8/", "8/0", "-0.1", "NaN", "Inf", "1/x"} {
		if _, err := ParseEps(bad); err == nil {
			t.Fatalf("ParseEps(%q) accepted", bad)
		}
	}
}

func TestEpsFormatsBothWays(t *testing.T) {
	for _, c := range []struct {
		eps          float32
		rng          [2]float32
		value, steps string
	}{
		{0.3, [2]float32{0, 1}, "0.3 (76.5/255)", "76.5/255 = 0.3"},
		{8.0 / 255, [2]float32{0, 1}, "0.0314 (8/255)", "8/255 = 0.0314"},
		{0.3, [2]float32{}, "0.3 (76.5/255)", "76.5/255 = 0.3"},
		{8, [2]float32{0, 255}, "8 on [0,255] (8/255)", "8/255 of [0,255] = 8"},
		{0.1, [2]float32{-1, 1}, "0.1 on [-1,1] (12.75/255)", "12.75/255 of [-1,1] = 0.1"},
		{0, [2]float32{0, 1}, "0 (clean)", "0/255 = 0"},
	} {
		e := EpsOn(c.eps, c.rng)
		if got := e.String(); got != c.value {
			t.Errorf("EpsOn(%v, %v).String() = %q, want %q", c.eps, c.rng, got, c.value)
		}
		if got := e.LevelsString(); got != c.steps {
			t.Errorf("EpsOn(%v, %v).LevelsString() = %q, want %q", c.eps, c.rng, got, c.steps)
		}
	}
}

func TestEpsLevels(t *testing.T) {
	if e := EpsLevels(40, [2]float32{0, 1}); math.Abs(e.Value-40.0/255) > 1e-12 || e.WholeLevels() != 40 {
		t.Fatalf("40/255 on [0,1]: %+v, %d whole levels", e, e.WholeLevels())
	}
	if e := EpsLevels(8, [2]float32{0, 255}); e.Value != 8 || e.Levels() != 8 {
		t.Fatalf("8/255 on [0,255]: %+v", e)
	}
	// A head trained at 0.1 on [0,1] moves pixels 25 whole levels (25.5 rounded down);
	// a float32 budget of exactly k/255 still counts k.
	for _, c := range []struct {
		eps  float32
		want int
	}{{0.1, 25}, {8.0 / 255, 8}, {0.3, 76}, {1, 255}} {
		if got := EpsOn(c.eps, [2]float32{0, 1}).WholeLevels(); got != c.want {
			t.Errorf("EpsOn(%v).WholeLevels() = %d, want %d", c.eps, got, c.want)
		}
	}
}
