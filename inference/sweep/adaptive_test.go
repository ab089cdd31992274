package sweep_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"slices"
	"strings"
	"testing"

	"gibbon/inference/attack"
	"gibbon/inference/defense"
	"gibbon/inference/sweep"
)

func twin(t testing.TB, d sweep.Defence, samples int) sweep.Defence {
	t.Helper()
	tw, err := d.Adaptive(samples)
	if err != nil {
		t.Fatal(err)
	}
	return tw
}

// checkLabels fails unless each of n defences (name, transform, label) that has a
// transform is labelled non-adaptive and its twin adaptive, with how the attacks got
// through; it returns the names and labels.
func checkLabels(t *testing.T, n int, defence func(int) (string, string, sweep.Scoring)) ([]string, []sweep.Scoring) {
	t.Helper()
	names, scorings := make([]string, n), make([]sweep.Scoring, n)
	for i := range n {
		name, transform, s := defence(i)
		names[i], scorings[i] = name, s
		switch {
		case transform == "":
			if s != (sweep.Scoring{}) {
				t.Errorf("%s is a model alone, labelled %+v", name, s)
			}
		case strings.HasSuffix(name, sweep.AdaptiveSuffix):
			if s.Mode != sweep.Adaptive || s.Through == "" {
				t.Errorf("twin %s labelled %+v", name, s)
			}
		default:
			if s.Mode != sweep.NonAdaptive || s.Through != "" {
				t.Errorf("%s labelled %+v", name, s)
			}
		}
	}
	return names, scorings
}

// The competition scores each transform defence both ways: the twin's column holds
// what every attack did through the transform, scored and ranked beside the
// competition without changing its scores.
func TestCompeteScoresTransformDefencesBothWays(t *testing.T) {
	x, labels := testImages(t, 40)
	mlp := model(t, "mlp")
	attacks := []*sweep.Attack{
		pgd(10, mlp),
		{Name: "noise", Config: attack.Config{Method: attack.Noise}, Surrogates: []attack.Model{mlp}},
		{Name: "pushnet", Network: pushNet(t)},
	}
	makeDefs := func() []sweep.Defence {
		median, resize := defenceOf(t, mlp, "median", 2), defenceOf(t, mlp, "resize-pad", 90)
		return []sweep.Defence{defenceOf(t, mlp, "", 0), median, twin(t, median, 1), resize, twin(t, resize, 4)}
	}
	spec := sweep.CompeteSpec{Dataset: "mnist-test", Attacks: attacks, Defences: makeDefs(), Images: x, Labels: labels,
		Range: [2]float32{0, 1}, EpsSet: []float32{0.05, 0.1}, Batch: 20, Seed: 3, KeepPredictions: true}
	m, err := sweep.Compete(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	names, scorings := checkLabels(t, len(m.Defences), func(d int) (string, string, sweep.Scoring) {
		return m.Defences[d].Name, m.Defences[d].Transform, m.Defences[d].Scoring
	})
	if names[2] != names[1]+sweep.AdaptiveSuffix || !strings.Contains(scorings[4].Through, "averaged over 4 draws") {
		t.Fatalf("defences %q, twin of resize-and-pad attacked by %q", names, scorings[4].Through)
	}
	if through := scorings[2].Through; !strings.HasPrefix(through, "gradients through the median 2×2's own derivative") ||
		!strings.Contains(through, "; black-box attacks query the model behind median 2×2") || !strings.Contains(through, "attack networks cannot") {
		t.Errorf("the median's twin says it was attacked by %q", through)
	}
	kind, _ := defense.KindByID("median")
	if scorings[1].Caveat != kind.Caveat || scorings[2].Caveat != kind.Caveat || kind.Caveat == "" {
		t.Errorf("the median filter's results carry the caveats %q and %q", scorings[1].Caveat, scorings[2].Caveat)
	}
	competing := []int{0, 1, 3}
	mis := func(a, d int) int {
		n := 0
		for i, p := range m.Predictions[a][d] {
			if p != m.Labels[i] {
				n++
			}
		}
		return n
	}
	for a, e := range m.Attacks {
		sum := 0
		for _, d := range competing {
			sum += mis(a, d)
		}
		if e.Score != sum {
			t.Errorf("attack %s scores %d; the competition's columns sum to %d", e.Name, e.Score, sum)
		}
	}
	for d, e := range m.Defences {
		score := 0
		for a := range attacks {
			score += 40 - mis(a, d)
		}
		want := 1
		for _, c := range competing {
			if m.Defences[c].Score > score && !(d == 2 && c == 1) && !(d == 4 && c == 3) {
				want++
			}
		}
		if e.Score != score || e.Rank != want {
			t.Errorf("defence %s: score %d rank %d, recomputed %d and %d", e.Name, e.Score, e.Rank, score, want)
		}
	}
	// Noise ignores the model and an attack network has none to see through: their
	// twin columns are their usual ones. PGD through the median does better than PGD
	// on the model alone.
	for _, a := range []int{1, 2} {
		for _, d := range []int{1, 3} {
			if !slices.Equal(m.Predictions[a][d], m.Predictions[a][d+1]) {
				t.Errorf("%s: the twin of %s answers differently on the same images", attacks[a].Name, names[d])
			}
		}
	}
	t.Logf("PGD-10 misclassified on 40 digits: median %d, through it %d; resize-and-pad %d, through it %d",
		m.Misclassified[0][1], m.Misclassified[0][2], m.Misclassified[0][3], m.Misclassified[0][4])
	if m.Misclassified[0][2] <= m.Misclassified[0][1] {
		t.Errorf("PGD through the median misclassified %d, on the model alone %d", m.Misclassified[0][2], m.Misclassified[0][1])
	}
	spec.Defences = makeDefs()
	again, err := sweep.Compete(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(again.Misclassified) != fmt.Sprint(m.Misclassified) {
		t.Errorf("the same seed gave %v, then %v", m.Misclassified, again.Misclassified)
	}
	var buf bytes.Buffer
	if err := m.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || !slices.Equal(rows[0], sweep.CompeteCSVHeader) || rows[3][len(rows[3])-1] != sweep.Adaptive || rows[2][len(rows[2])-1] != sweep.NonAdaptive {
		t.Errorf("CSV (%v): %v", err, rows[:4])
	}
}

// A data-set sweep draws each twin's curve from images made through its transform:
// at ε 0 it is the clean accuracy, above it no higher than PGD on the model alone.
func TestDatasetSweepScoresTransformDefencesBothWays(t *testing.T) {
	x, labels := testImages(t, 40)
	mlp := model(t, "mlp")
	median := defenceOf(t, mlp, "median", 2)
	defs := []sweep.Defence{defenceOf(t, mlp, "", 0), median, twin(t, median, 1)}
	res, err := sweep.RunDataset(context.Background(), sweep.DatasetSpec{Dataset: "mnist-test", Attack: pgd(10, mlp), Eps: []float32{0, 0.1, 0.2},
		Range: [2]float32{0, 1}, Defences: defs, Images: x, Labels: labels, Seed: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkLabels(t, len(res.Defences), func(d int) (string, string, sweep.Scoring) {
		return res.Defences[d].Name, res.Defences[d].Transform, res.Defences[d].Scoring
	})
	plain, through := res.Defences[1].Accuracy, res.Defences[2].Accuracy
	t.Logf("median 2×2 accuracy at ε 0, 0.1, 0.2: %v; through it %v", plain, through)
	if through[0] != plain[0] || through[2] > plain[2] || through[1] >= plain[1] {
		t.Errorf("median 2×2 accuracy %v, through it %v: want equal when clean, lower when attacked", plain, through)
	}
}

func TestPlanAddsAdaptiveTwins(t *testing.T) {
	ctx := context.Background()
	z := newZoo(t)
	s := sweep.Settings{Kind: "compete", Models: []string{"mlp"}, Defences: []string{"lin-a", "mlp+bits:1", "mlp+resize-pad:90"}, Adaptive: true, Seed: 3}
	p, err := s.Plan(ctx, z, sweep.CLILimits)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range p.Defences {
		names = append(names, d.Name)
	}
	want := []string{"lin-a", "mlp + 1-bit", "mlp + 1-bit (adaptive)", "mlp + random resize ≥90% + pad", "mlp + random resize ≥90% + pad (adaptive)"}
	if !slices.Equal(names, want) {
		t.Fatalf("defences %q, want %q", names, want)
	}
	if !strings.HasPrefix(p.Defences[2].Through, "BPDA") || !strings.Contains(p.Defences[4].Through, "averaged over 10 draws") {
		t.Errorf("attacked through %q and %q", p.Defences[2].Through, p.Defences[4].Through)
	}
	cmd := p.Settings.Command()
	if !strings.Contains(cmd, " --adaptive --eot-samples 10 ") || p.Settings.EOTSamples != 10 {
		t.Errorf("command %s", cmd)
	}
	again, err := p.Settings.Plan(ctx, z, sweep.CLILimits)
	if err != nil || len(again.Defences) != 5 || fmt.Sprint(again.Settings) != fmt.Sprint(p.Settings) {
		t.Errorf("re-planned: %v, %+v", err, again)
	}
	for _, c := range []struct {
		s    sweep.Settings
		want string
	}{
		{sweep.Settings{Kind: "compete", Defences: []string{"lin-a+resize-pad"}, Adaptive: true, EOTSamples: 101}, "EOT samples must be between 1 and 100, got 101"},
		{sweep.Settings{Kind: "compete", Defences: []string{"lin-a+resize-pad"}, Adaptive: true, EOTSamples: -1}, "EOT samples must be between 1 and 100"},
		{sweep.Settings{Kind: "compete", Defences: []string{"lin-a+resize-pad"}, EOTSamples: 5}, "ask for it too"},
		{sweep.Settings{Kind: "transfer", Defences: []string{"lin-a+bits"}, Adaptive: true}, "adaptive scoring is for sweeps and the competition"},
		{sweep.Settings{Kind: "dataset", N: 10, Defences: []string{"lin-a", "lin-b"}, Adaptive: true}, "no defence has one"},
	} {
		if _, err := c.s.Plan(ctx, z, sweep.CLILimits); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one about %q", c.s, err, c.want)
		}
	}
}

// A one-image sweep labels the twin; its answers come from the images made through
// the transform (its own row in the CSV).
func TestImageSweepLabelsTwins(t *testing.T) {
	x, labels := testImages(t, 1)
	mlp := model(t, "mlp")
	median := defenceOf(t, mlp, "median", 2)
	defs := []sweep.Defence{defenceOf(t, mlp, "", 0), median, twin(t, median, 1)}
	res, err := sweep.RunImage(context.Background(), sweep.ImageSpec{Attack: pgd(10, mlp), Eps: []float32{0, 0.1, 0.2, 0.3}, Range: [2]float32{0, 1},
		Defences: defs, Image: x, Label: labels[0], Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkLabels(t, len(res.Defences), func(d int) (string, string, sweep.Scoring) {
		return res.Defences[d].Name, res.Defences[d].Transform, res.Defences[d].Scoring
	})
	if res.Defences[2].FlipIndex < 0 || res.Defences[1].FlipIndex >= 0 && res.Defences[2].FlipIndex > res.Defences[1].FlipIndex {
		t.Errorf("median 2×2 flips at point %d, through it at %d", res.Defences[1].FlipIndex, res.Defences[2].FlipIndex)
	}
	var buf bytes.Buffer
	if err := res.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 1+4*3 || rows[3][len(rows[3])-1] != sweep.Adaptive {
		t.Errorf("CSV (%v): %v", err, rows)
	}
}
