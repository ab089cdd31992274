package attack

import (
	"math"
	"strings"
	"testing"
)

func TestParseMethod(t *testing.T) {
	for in, want := range map[string]Method{
		"pgd": PGD, "I-FGSM": BIM, "bim": BIM, "mifgsm": MIFGSM, "MI-FGSM": MIFGSM,
		"di-fgsm": DIFGSM, "M-DI2-FGSM": MDI2FGSM, "mdi2fgsm": MDI2FGSM, "square": Square, "noise": Noise, "fgsm": FGSM,
	} {
		got, err := ParseMethod(in)
		if err != nil || got != want {
			t.Fatalf("ParseMethod(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseMethod("deepfool")
	if err == nil || !strings.Contains(err.Error(), "pgd") {
		t.Fatalf("unknown method error should list the methods, got %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Method: PGD, Eps: 0.3}.Defaults()
	if c.Steps != 40 || math.Abs(float64(c.Alpha)-2.5*0.3/40) > 1e-7 || c.Restarts != 1 || c.Range != [2]float32{0, 1} || c.Loss != LossCE {
		t.Fatalf("PGD defaults: %+v", c)
	}
	c = Config{Method: MIFGSM, Eps: 0.3}.Defaults()
	if c.Steps != 10 || math.Abs(float64(c.Alpha)-0.03) > 1e-7 || c.Momentum != 1 {
		t.Fatalf("MI-FGSM defaults: %+v", c)
	}
	c = Config{Method: FGSM, Eps: 0.1, Steps: 7}.Defaults()
	if c.Steps != 1 || c.Alpha != 0.1 {
		t.Fatalf("FGSM defaults: %+v", c)
	}
	c = Config{Method: MDI2FGSM, Eps: 0.1}.Defaults()
	if c.DiversityProb != 0.5 || c.DiversityMin != 0.9 || c.Momentum != 1 {
		t.Fatalf("M-DI2-FGSM defaults: %+v", c)
	}
	c = Config{Method: Square, Eps: 0.1}.Defaults()
	if c.Queries != 1000 || c.SquareP != 0.05 {
		t.Fatalf("Square defaults: %+v", c)
	}
}

func TestValidateRejectsBadConfigs(t *testing.T) {
	for name, c := range map[string]Config{
		"no method":       {Eps: 0.1},
		"zero eps":        {Method: PGD},
		"negative eps":    {Method: PGD, Eps: -1},
		"NaN eps":         {Method: PGD, Eps: float32(math.NaN())},
		"eps over range":  {Method: PGD, Eps: 2},
		"empty range":     {Method: PGD, Eps: 0.1, Range: [2]float32{1, 1}},
		"steps":           {Method: BIM, Eps: 0.1, Steps: -3},
		"negative alpha":  {Method: BIM, Eps: 0.1, Alpha: -1},
		"loss":            {Method: BIM, Eps: 0.1, Loss: "hinge"},
		"target":          {Method: BIM, Eps: 0.1, Target: "some"},
		"target class":    {Method: BIM, Eps: 0.1, Target: TargetClass, TargetClass: -1},
		"diversity prob":  {Method: DIFGSM, Eps: 0.1, DiversityProb: 2},
		"diversity ratio": {Method: DIFGSM, Eps: 0.1, DiversityMin: 1.5},
		"queries":         {Method: Square, Eps: 0.1, Queries: -1},
		"square p":        {Method: Square, Eps: 0.1, SquareP: 3},
		"layout":          {Method: PGD, Eps: 0.1, Layout: "CHW"},
		"restarts":        {Method: PGD, Eps: 0.1, Restarts: -2},
	} {
		if err := c.Defaults().Validate(); err == nil {
			t.Errorf("%s: %+v was accepted", name, c)
		}
	}
	for _, m := range Methods {
		if err := (Config{Method: m, Eps: 0.1}).Defaults().Validate(); err != nil {
			t.Errorf("%s with defaults: %v", m, err)
		}
	}
}

func TestSquareScheduleShrinks(t *testing.T) {
	prev := math.Inf(1)
	for it := 0; it < 1000; it++ {
		p := squareP(0.8, it, 1000)
		if p > prev {
			t.Fatalf("p grew at iteration %d: %v > %v", it, p, prev)
		}
		prev = p
	}
	if squareP(0.8, 0, 1000) != 0.8 || squareP(0.8, 999, 1000) != 0.8/512 {
		t.Fatalf("schedule ends: %v %v", squareP(0.8, 0, 1000), squareP(0.8, 999, 1000))
	}
}
