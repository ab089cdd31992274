package attack_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
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

// An imported graph Gibbon cannot differentiate (here the MLP with Atan on its
// logits: the same predictions, an op autodiff has no rule for) gets AutoAttack's
// black-box part too, with the reason; a plain gradient attack on it is an error
// that names the op.
func TestAutoAttackOnAGraphWithoutGradients(t *testing.T) {
	mlp := builtin(t, "mnist-mlp")
	g := proto.Clone(mlp.Proto()).(*onnx.ModelProto)
	out := g.Graph.Output[0]
	raw := out.GetName() + "_raw"
	for _, n := range g.Graph.Node {
		for i, o := range n.Output {
			if o == out.GetName() {
				n.Output[i] = raw
			}
		}
	}
	g.Graph.Node = append(g.Graph.Node, &onnx.NodeProto{OpType: proto.String("Atan"), Input: []string{raw}, Output: []string{out.GetName()}})
	m, err := attack.NewONNXModel(context.Background(), testrt.Open(t), g, attack.ModelOptions{Name: "mlp-atan"})
	if err != nil {
		t.Fatal(err)
	}
	x, labels := digits(t, 4)
	req := attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{{Name: "mlp-atan", Net: m}}}
	res, err := attack.Run(context.Background(), attack.Config{Method: attack.AutoAttack, Eps: 0.1, Queries: 100, Seed: 1}, req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Backward != 0 || !strings.Contains(res.Note, "black-box part only") || !strings.Contains(res.Note, "cannot differentiate") || !strings.Contains(res.Note, "Atan") {
		t.Fatalf("%d backward passes, note %q", res.Backward, res.Note)
	}
	if res.Models[0].CleanAccuracy != 1 || res.Stages[3].Attacked == 0 {
		t.Fatalf("clean accuracy %v (Atan keeps the MLP's answers), square attacked %d", res.Models[0].CleanAccuracy, res.Stages[3].Attacked)
	}
	_, err = attack.Run(context.Background(), attack.Config{Method: attack.APGDCE, Eps: 0.1, Steps: 5}, req, nil)
	if !errors.Is(err, autodiff.ErrUnsupported) || !strings.Contains(err.Error(), "Atan") {
		t.Fatalf("APGD-CE on the graph: %v", err)
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

// Evaluate attacks a data set in batches and adds their stages up: per batch the
// same as Run with seed + batch index, in total the shares of all images.
func TestEvaluateAddsBatches(t *testing.T) {
	m := builtin(t, "mnist-mlp")
	x, labels := digits(t, 6)
	cfg := attack.Config{Method: attack.AutoAttack, Eps: 0.05, Steps: 10, TargetClasses: 2, Queries: 100, Seed: 5}
	model := attack.Model{Name: m.Name(), Net: m}
	var seen []int
	ev, err := attack.Evaluate(context.Background(), cfg, model, x, labels, 4, 1, func(done, robust int) { seen = append(seen, done) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []int{4, 6}) || ev.N != 6 || ev.Batch != 4 || ev.Config.TargetClasses != 2 {
		t.Fatalf("progress %v, evaluation %+v", seen, ev)
	}
	var robust, clean, attacked int
	var fwd int64
	for b, rows := range [][]int{{0, 1, 2, 3}, {4, 5}} {
		c := cfg
		c.Seed += int64(b)
		xs := inference.NewTensor(int64(len(rows)), 1, 28, 28)
		copy(xs.Data, x.Data[rows[0]*784:(rows[len(rows)-1]+1)*784])
		res, err := attack.Run(context.Background(), c, attack.Request{Images: xs, Labels: labels[rows[0] : rows[len(rows)-1]+1], Surrogates: []attack.Model{model}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		robust += int(math.Round(res.Models[0].AdvAccuracy * float64(len(rows))))
		clean += int(math.Round(res.Models[0].CleanAccuracy * float64(len(rows))))
		attacked += res.Stages[0].Attacked
		fwd += res.Forward
	}
	if ev.Robust != float64(robust)/6 || ev.Clean != float64(clean)/6 || ev.Stages[0].Attacked != attacked || ev.Forward != fwd {
		t.Fatalf("evaluation robust %v clean %v attacked %d fwd %d; batch by batch %d/6, %d/6, %d, %d", ev.Robust, ev.Clean, ev.Stages[0].Attacked, ev.Forward, robust, clean, attacked, fwd)
	}
	if last := ev.Stages[len(ev.Stages)-1]; math.Abs(last.RobustAccuracy-ev.Robust) > 1e-12 {
		t.Fatalf("last stage leaves %v, the evaluation %v", last.RobustAccuracy, ev.Robust)
	}
	// Batches attacked at once give the same verdict, stage by stage.
	var seen2 []int
	ev2, err := attack.Evaluate(context.Background(), cfg, model, x, labels, 2, 3, func(done, robust int) { seen2 = append(seen2, done) })
	if err != nil {
		t.Fatal(err)
	}
	ev1, err := attack.Evaluate(context.Background(), cfg, model, x, labels, 2, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSorted(seen2) || len(seen2) != 3 || seen2[2] != 6 || ev2.Workers != 3 {
		t.Fatalf("3 workers: progress %v, workers %d", seen2, ev2.Workers)
	}
	for i := range ev1.Stages {
		s1, s2 := ev1.Stages[i], ev2.Stages[i]
		s1.Wall, s2.Wall = 0, 0
		if s1 != s2 {
			t.Fatalf("stage %d: 1 worker %+v, 3 workers %+v", i, s1, s2)
		}
	}
	if ev1.Robust != ev2.Robust || ev1.Clean != ev2.Clean || ev1.Forward != ev2.Forward || ev1.Backward != ev2.Backward {
		t.Fatalf("1 worker %+v, 3 workers %+v", ev1, ev2)
	}
	if _, err := attack.Evaluate(context.Background(), cfg, model, x, labels, 2, 0, nil); err == nil {
		t.Fatal("0 workers accepted")
	}
	for _, bad := range []struct {
		cfg   attack.Config
		batch int
	}{{cfg, 0}, {attack.Config{Method: attack.PGD, Eps: 0.1}, 4}} {
		if _, err := attack.Evaluate(context.Background(), bad.cfg, model, x, labels, bad.batch, 1, nil); err == nil {
			t.Fatalf("%s with batch %d was accepted", bad.cfg.Method, bad.batch)
		}
	}
}

// Bad settings of the new methods are one-line errors before any pass.
func TestAPGDFABAutoAttackRejectBadConfigs(t *testing.T) {
	for name, c := range map[string]attack.Config{
		"apgd-ce with dlr":      {Method: attack.APGDCE, Eps: 0.1, Loss: attack.LossDLR},
		"apgd-dlr with margin":  {Method: attack.APGDDLR, Eps: 0.1, Loss: attack.LossMargin},
		"apgd-t with a target":  {Method: attack.APGDT, Eps: 0.1, Target: attack.TargetClass, TargetClass: 2},
		"fab-t with a step":     {Method: attack.FABT, Eps: 0.1, Alpha: 0.01},
		"dlr on pgd":            {Method: attack.PGD, Eps: 0.1, Loss: attack.LossDLR},
		"autoattack with loss":  {Method: attack.AutoAttack, Eps: 0.1, Loss: attack.LossMargin},
		"negative targets":      {Method: attack.APGDT, Eps: 0.1, TargetClasses: -1},
		"autoattack queries":    {Method: attack.AutoAttack, Eps: 0.1, Queries: -5},
		"autoattack square p":   {Method: attack.AutoAttack, Eps: 0.1, SquareP: 2},
		"apgd too many steps":   {Method: attack.APGDCE, Eps: 0.1, Steps: 200000},
		"fab-t least likely":    {Method: attack.FABT, Eps: 0.1, Target: attack.LeastLikely},
		"autoattack no epsilon": {Method: attack.AutoAttack},
	} {
		err := c.Defaults().Validate()
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error spans lines: %q", name, err)
		}
	}
	for _, m := range []attack.Method{attack.APGDCE, attack.APGDDLR, attack.APGDT, attack.FABT, attack.AutoAttack} {
		if got, err := attack.ParseMethod(strings.ToUpper(string(m))); err != nil || got != m {
			t.Errorf("ParseMethod(%q) = %q, %v", strings.ToUpper(string(m)), got, err)
		}
	}
	// More target classes than the model has wrong classes is caught once the class
	// count is known.
	f := newFixture(t, 2)
	_, err := attack.Run(context.Background(), attack.Config{Method: attack.APGDT, Eps: 0.1, TargetClasses: 10, Seed: 1}, f.request(), nil)
	if err == nil || !strings.Contains(err.Error(), "at most 9") {
		t.Fatalf("apgd-t with 10 target classes on 10 classes: %v", err)
	}
}
