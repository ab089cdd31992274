package sweep_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/sweep"
)

var mnistContract = inference.InputContract{Name: "image", Layout: "NCHW", Channels: 1, Height: 28, Width: 28, Color: "gray",
	Range: [2]float64{0, 1}, Resize: "mnist"}

// zoo resolves the trained test models, the stand-in attack network and one model
// that takes another input.
type zoo struct {
	t    testing.TB
	nets map[string]attack.Model
}

func newZoo(t testing.TB) *zoo {
	z := &zoo{t: t, nets: map[string]attack.Model{}}
	for _, n := range []string{"lin-a", "lin-b", "mlp"} {
		z.nets[n] = model(t, n)
	}
	return z
}

func (z *zoo) Classifiers() []string { return []string{"lin-a", "lin-b", "mlp", "rgb"} }
func (z *zoo) Networks() []string    { return []string{"pushnet"} }

func (z *zoo) Labels(string) []string { return nil }

func (z *zoo) Checksum(name string) string { return fmt.Sprintf("%064x", len(name)) }

func (z *zoo) Contract(name string) (inference.InputContract, bool) {
	if name == "rgb" {
		_, c, _ := z.Classifier(context.Background(), name)
		return c, true
	}
	return mnistContract, name == "pushnet" || z.nets[name].Net != nil
}

func (z *zoo) Classifier(_ context.Context, name string) (attack.Model, inference.InputContract, error) {
	if name == "rgb" {
		c := mnistContract
		c.Channels, c.Color, c.Height, c.Width = 3, "RGB", 32, 32
		return attack.Model{Name: "rgb", Net: z.nets["lin-a"].Net}, c, nil
	}
	m, ok := z.nets[name]
	if !ok {
		return attack.Model{}, inference.InputContract{}, fmt.Errorf("no classifier %q", name)
	}
	return m, mnistContract, nil
}

func (z *zoo) Network(_ context.Context, name string) (sweep.Generator, inference.InputContract, error) {
	if name != "pushnet" {
		return nil, inference.InputContract{}, fmt.Errorf("no attack network %q", name)
	}
	return pushNet(z.t), mnistContract, nil
}

func TestSettingsPlanDefaultsAndCommand(t *testing.T) {
	ctx := context.Background()
	z := newZoo(t)
	p, err := sweep.Settings{Kind: "dataset", Seed: 4}.Plan(ctx, z, sweep.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	s := p.Settings
	if s.Eps != "0:0.4:0.025" || len(p.Eps) != 17 || s.N != 1000 || s.Attack != "pgd" || s.Models[0] != "lin-a" || p.Attack.Config.Steps != 10 {
		t.Errorf("defaults: %+v", s)
	}
	want := "lin-a,lin-b,mlp,lin-a+jpeg:75,lin-a+bits:3,lin-a+median:3,lin-a+resize-pad:90"
	if got := strings.Join(s.Defences, ","); got != want {
		t.Errorf("default defences %s, want %s", got, want)
	}
	if len(p.Skipped) != 1 || !strings.Contains(p.Skipped[0], "rgb") {
		t.Errorf("skipped %v", p.Skipped)
	}
	if cmd := s.Command(); cmd != "gibbon sweep --dataset mnist-test --n 1000 --model lin-a --defences "+want+" --attack pgd --eps 0:0.4:0.025 --seed 4" {
		t.Errorf("command %s", cmd)
	}
	// The recorded settings plan the same run again.
	again, err := s.Plan(ctx, z, sweep.CLILimits)
	if err != nil || fmt.Sprint(again.Settings) != fmt.Sprint(s) {
		t.Errorf("re-planned settings differ: %+v vs %+v (%v)", again.Settings, s, err)
	}

	c, err := sweep.Settings{Kind: "compete", Models: []string{"mlp"}, Defences: []string{"lin-a", "mlp+bits:1"}}.Plan(ctx, z, sweep.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	if c.Settings.Eps != "0.1,0.2,0.3" || len(c.Attacks) != 5 || c.Attacks[4].Network == nil || c.Settings.N != 500 {
		t.Errorf("compete defaults: %+v, %d attacks", c.Settings, len(c.Attacks))
	}
	if len(c.Models) != 3 || !c.Models[0].Attacked || !c.Models[1].Network || c.Models[2].Name != "lin-a" {
		t.Errorf("models %+v", c.Models)
	}
	tr, err := sweep.Settings{Kind: "transfer", N: 50}.Plan(ctx, z, sweep.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Settings.Eps != "0.2" || len(tr.Attacks) != 4 || tr.Attacks[0].Name != "lin-a" || tr.Attacks[3].Network == nil || len(tr.Defences) != 3 {
		t.Errorf("transfer defaults: %+v", tr.Settings)
	}
	img, err := sweep.Settings{Kind: "image", Attack: "net:pushnet", Image: "seven.png", Label: 7}.Plan(ctx, z, sweep.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	if img.Attack.Network == nil || img.Defences[0].Name != "lin-a" || img.Models[0].Name != "pushnet" {
		t.Errorf("network sweep: %+v", img.Settings)
	}
	if cmd := img.Settings.Command(); !strings.HasPrefix(cmd, "gibbon sweep seven.png --label 7 ") || !strings.Contains(cmd, "--attack net:pushnet") {
		t.Errorf("command %s", cmd)
	}
}

func TestSettingsPlanRefusals(t *testing.T) {
	ctx := context.Background()
	z := newZoo(t)
	lim := sweep.Limits{MaxImages: 100, MaxSteps: 50, MaxDefences: 4, MaxAttacks: 3}
	for _, c := range []struct {
		s    sweep.Settings
		want string
	}{
		{sweep.Settings{Kind: "sweep"}, "unknown kind"},
		{sweep.Settings{Kind: "dataset", Dataset: "cifar"}, "unknown dataset"},
		{sweep.Settings{Kind: "dataset", N: 101}, "between 1 and 100"},
		{sweep.Settings{Kind: "dataset", N: 10, Steps: 51}, "steps"},
		{sweep.Settings{Kind: "dataset", N: 10, Models: []string{"nope"}}, "no classifier"},
		{sweep.Settings{Kind: "dataset", N: 10, Models: []string{"lin-a", "rgb"}}, "same input"},
		{sweep.Settings{Kind: "dataset", N: 10, Models: []string{"rgb"}}, "28×28 gray digits"},
		{sweep.Settings{Kind: "dataset", N: 10, Attack: "cw"}, "unknown attack"},
		{sweep.Settings{Kind: "dataset", N: 10, Attack: "net:pushnet", Models: []string{"lin-a"}}, "leave the models"},
		{sweep.Settings{Kind: "dataset", N: 10, Eps: "0:2:0.5"}, "outside"},
		{sweep.Settings{Kind: "dataset", N: 10, Defences: []string{"lin-a+blur"}}, "unknown transform"},
		{sweep.Settings{Kind: "dataset", N: 10, Defences: []string{"rgb"}}, "takes"},
		{sweep.Settings{Kind: "dataset", N: 10, Defences: []string{"lin-a+bits", "lin-a+bits:3"}}, "listed twice"},
		{sweep.Settings{Kind: "dataset", N: 10}, "at most 4 defences"},
		{sweep.Settings{Kind: "compete", N: 10, Eps: "0,0.1", Defences: []string{"lin-a"}}, "positive"},
		{sweep.Settings{Kind: "compete", N: 10, Defences: []string{"lin-a"}}, "at most 3 attacks"},
		{sweep.Settings{Kind: "transfer", N: 10, Eps: "0.1,0.2", Defences: []string{"lin-a"}, Models: []string{"lin-a"}}, "one positive ε"},
		{sweep.Settings{Kind: "transfer", N: 10, Attack: "net:pushnet", Defences: []string{"lin-a"}, Models: []string{"lin-a"}}, "sources"},
		{sweep.Settings{Kind: "dataset", N: 10, Batch: -1}, "batch"},
	} {
		_, err := c.s.Plan(ctx, z, lim)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one about %q", c.s, err, c.want)
		}
	}
}
