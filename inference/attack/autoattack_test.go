package attack_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"gibbon/inference/attack"
)

// On the built-in MLP at ε 0.05, where PGD-40 leaves about half the digits, standard
// AutoAttack leaves no more; its stages run in the reference's order, each on the
// digits still robust, and add up: the fooled images' examples lie in the ball, the
// robust ones keep their clean image, and the last stage's robust accuracy is the
// result's.
func TestAutoAttackNotAbovePGD40(t *testing.T) {
	m := builtin(t, "mnist-mlp")
	x, labels := digits(t, 10)
	req := attack.Request{Images: x, Labels: labels, Surrogates: named([]*attack.ONNXModel{m})}
	const eps = 0.05
	pgd, err := attack.Run(context.Background(), attack.Config{Method: attack.PGD, Eps: eps, Steps: 40, Seed: 1}, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	aa, steps := runInBall(t, attack.Config{Method: attack.AutoAttack, Eps: eps, Seed: 1}, req)
	got, want := aa.Models[0].AdvAccuracy, pgd.Models[0].AdvAccuracy
	t.Logf("%s ε %.2f on %d digits: PGD-40 %.0f%%, AutoAttack %.0f%% in %v", m.Name(), eps, len(labels), 100*want, 100*got, aa.Wall)
	for _, s := range aa.Stages {
		t.Logf("  %-8s attacked %2d fooled %2d robust %.0f%% passes %d/%d %v", s.Name, s.Attacked, s.Fooled, 100*s.RobustAccuracy, s.Forward, s.Backward, s.Wall)
	}
	if got > want {
		t.Fatalf("AutoAttack leaves %.0f%%, more than PGD-40's %.0f%%", 100*got, 100*want)
	}
	if got == aa.Models[0].CleanAccuracy {
		t.Fatalf("AutoAttack fooled nothing at ε %v: the test needs an ε where attacks work", eps)
	}
	names := make([]string, len(aa.Stages))
	robust := 0
	for i, ok := range aa.Models[0].Clean {
		if ok == labels[i] {
			robust++
		}
	}
	var fwd, bwd int64
	for k, s := range aa.Stages {
		names[k] = s.Name
		if s.Attacked != robust || s.Fooled > s.Attacked || s.Skipped != "" {
			t.Fatalf("stage %s attacked %d (want the %d still robust), fooled %d, skipped %q", s.Name, s.Attacked, robust, s.Fooled, s.Skipped)
		}
		robust -= s.Fooled
		if s.RobustAccuracy != float64(robust)/float64(len(labels)) {
			t.Fatalf("stage %s: robust accuracy %v, %d of %d robust", s.Name, s.RobustAccuracy, robust, len(labels))
		}
		fwd, bwd = fwd+s.Forward, bwd+s.Backward
	}
	if !slices.Equal(names, []string{"apgd-ce", "apgd-t", "fab-t", "square"}) || aa.Stages[3].RobustAccuracy != got {
		t.Fatalf("stages %v ending at %v, want the standard four ending at the result's %v", names, aa.Stages[3].RobustAccuracy, got)
	}
	if fwd+int64(len(labels)) != aa.Forward || bwd != aa.Backward {
		t.Fatalf("stages ran %d/%d passes, the result counts %d/%d (with the clean pass)", fwd, bwd, aa.Forward, aa.Backward)
	}
	for i, fooled := range aa.Models[0].Success {
		if !fooled && aa.Linf[i] != 0 {
			t.Fatalf("image %d survived, yet its result is %v from the clean image", i, aa.Linf[i])
		}
	}
	seen := map[string]bool{}
	for _, s := range steps[:len(steps)-1] {
		seen[s.Stage] = true
	}
	if !seen["apgd-ce"] || (aa.Stages[3].Attacked > 0 && !seen["square"]) || steps[len(steps)-1].Stage != "" {
		t.Fatalf("steps name the stages %v; want each stage that ran, and a final step of the whole", seen)
	}
}

// A model that gives predictions only gets AutoAttack's black-box part: Square alone,
// no backward pass, and a note that says so.
func TestAutoAttackBlackBoxOnly(t *testing.T) {
	m := builtin(t, "mnist-mlp")
	x, labels := digits(t, 4)
	req := attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{{Name: "opaque", Net: predictOnly{m}}}}
	res, err := attack.Run(context.Background(), attack.Config{Method: attack.AutoAttack, Eps: 0.1, Queries: 300, Seed: 1}, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("note: %s", res.Note)
	if res.Backward != 0 || !strings.Contains(res.Note, "black-box part only") || !strings.Contains(res.Note, "opaque") {
		t.Fatalf("%d backward passes, note %q; want none and a note naming the model", res.Backward, res.Note)
	}
	for _, s := range res.Stages {
		if skipped := s.Skipped != ""; skipped != (s.Name != "square") {
			t.Fatalf("stage %s skipped %q; want every stage but square skipped", s.Name, s.Skipped)
		}
	}
	if sq := res.Stages[3]; sq.Attacked == 0 || sq.Forward == 0 || res.Models[0].AdvAccuracy != sq.RobustAccuracy {
		t.Fatalf("square stage %+v, result accuracy %v", sq, res.Models[0].AdvAccuracy)
	}
}
