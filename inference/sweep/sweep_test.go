package sweep_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"gibbon/inference/attack"
	"gibbon/inference/sweep"
)

// PGD's success rate must not fall as ε grows. It is not guaranteed image by image:
// each ε has its own random start and step (2.5ε/steps), and PGD is a local search,
// so an image near the boundary can be fooled at ε and missed at a larger ε. The
// tolerance is therefore measured, not guessed: at each ε the sweep runs with three
// seeds, and the spread between seeds (the random start's own noise) bounds how far
// the seed-1 rate may dip between neighbouring budgets, plus one image for rounding.
// A real regression (a sign flip, a wrong ball) moves the curve by far more.
func TestPGDSuccessDoesNotFallAsEpsGrows(t *testing.T) {
	x, labels := testImages(t, 200)
	grid, err := sweep.ParseGrid("0:0.4:0.025")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"lin-a", "mlp"} {
		m := model(t, name)
		defs := []sweep.Defence{defenceOf(t, m, "", 0), defenceOf(t, m, "bits", 1)}
		var runs []*sweep.DatasetResult
		for _, seed := range []int64{1, 2, 3} {
			res, err := sweep.RunDataset(context.Background(), sweep.DatasetSpec{Attack: pgd(10, m), Eps: grid, Range: [2]float32{0, 1},
				Defences: defs, Images: x, Labels: labels, Seed: seed}, nil)
			if err != nil {
				t.Fatal(err)
			}
			runs = append(runs, res)
		}
		for d := range defs {
			succ := func(r *sweep.DatasetResult, k int) int { return r.N - r.Defences[d].Correct[k] }
			spread := make([]int, len(grid))
			for k := range grid {
				lo, hi := math.MaxInt, 0
				for _, r := range runs {
					lo, hi = min(lo, succ(r, k)), max(hi, succ(r, k))
				}
				spread[k] = hi - lo
			}
			curve := make([]int, len(grid))
			for k := range grid {
				curve[k] = succ(runs[0], k)
			}
			for k := 1; k < len(grid); k++ {
				tol := max(spread[k-1], spread[k]) + 1
				if curve[k] < curve[k-1]-tol {
					t.Errorf("%s, %s: success fell from %d to %d of 200 between ε %g and %g (tolerance %d images from the seeds' spread)",
						name, defs[d].Name, curve[k-1], curve[k], grid[k-1], grid[k], tol)
				}
			}
			if curve[0] > 40 || curve[len(curve)-1] < curve[0]+50 {
				t.Errorf("%s, %s: success %v does not rise from the clean error", name, defs[d].Name, curve)
			}
			t.Logf("%s, %s: successes %v (seed spread %v)", name, defs[d].Name, curve, spread)
		}
		// White box, the attacked model itself: every image falls by ε 0.3.
		if c := runs[0].Defences[0].Correct; c[12] != 0 {
			t.Errorf("%s still classifies %d images correctly under PGD-10 at ε 0.3", name, c[12])
		}
	}
}

// A sweep's numbers do not depend on how images are batched (every image is seeded
// by its index), and they are the counts of the kept predictions.
func TestDatasetSweepDoesNotDependOnBatching(t *testing.T) {
	x, labels := testImages(t, 30)
	m, o := model(t, "lin-a"), model(t, "lin-b")
	defs := []sweep.Defence{defenceOf(t, m, "", 0), defenceOf(t, o, "", 0), defenceOf(t, o, "median", 2)}
	grid := []float32{0, 0.05, 0.1, 0.2}
	spec := sweep.DatasetSpec{Dataset: "mnist-test", Attack: pgd(5, m), Eps: grid, Range: [2]float32{0, 1}, Defences: defs,
		Images: x, Labels: labels, Seed: 9, KeepPredictions: true}
	var partial []int
	whole, err := sweep.RunDataset(context.Background(), spec, func(r *sweep.DatasetResult) error {
		partial = append(partial, r.N)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(partial, []int{30}) || whole.Batch != sweep.MaxRows/4 {
		t.Errorf("one batch expected, progress %v, batch %d", partial, whole.Batch)
	}
	spec.Batch = 7
	partial = nil
	split, err := sweep.RunDataset(context.Background(), spec, func(r *sweep.DatasetResult) error {
		partial = append(partial, r.N)
		if r.Total != 30 {
			t.Errorf("partial total %d", r.Total)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(partial, []int{7, 14, 21, 28, 30}) {
		t.Errorf("progress %v", partial)
	}
	for d := range defs {
		for k := range grid {
			if !slices.Equal(whole.Defences[d].Predictions[k], split.Defences[d].Predictions[k]) {
				t.Errorf("%s at ε %g: batches of 7 answer differently from one batch", defs[d].Name, grid[k])
			}
			correct := 0
			for i, p := range split.Defences[d].Predictions[k] {
				if p == labels[i] {
					correct++
				}
			}
			if split.Defences[d].Correct[k] != correct || split.Defences[d].Accuracy[k] != math.Round(float64(correct)/30*1e6)/1e6 {
				t.Errorf("%s at ε %g: %d correct, accuracy %g; the predictions say %d", defs[d].Name, grid[k],
					split.Defences[d].Correct[k], split.Defences[d].Accuracy[k], correct)
			}
		}
	}
	// ε 0 is the clean accuracy.
	pred, err := m.Net.Predict(context.Background(), x)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if best := argmax(pred.Data[i*10 : (i+1)*10]); best != split.Defences[0].Predictions[0][i] {
			t.Fatalf("image %d: clean answer %d, the sweep's ε 0 says %d", i, best, split.Defences[0].Predictions[0][i])
		}
	}
}

func argmax(v []float32) int {
	b := 0
	for i, x := range v {
		if x > v[b] {
			b = i
		}
	}
	return b
}

// One image: points arrive in ε order, carry each defence's true-class and
// strongest-wrong-class probabilities, and the flip mark is the first ε whose top
// class is not the label. Chunking changes nothing.
func TestImageSweepStreamsPointsAndMarksFlips(t *testing.T) {
	x, labels := testImages(t, 1)
	m, o := model(t, "mlp"), model(t, "lin-b")
	defs := []sweep.Defence{defenceOf(t, m, "", 0), defenceOf(t, o, "", 0), defenceOf(t, m, "jpeg", 50)}
	grid, _ := sweep.ParseGrid("0:0.4:0.025")
	names := []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
	spec := sweep.ImageSpec{Attack: pgd(10, m), Eps: grid, Range: [2]float32{0, 1}, Defences: defs, Image: x, Label: -1, Labels: names, Seed: 5}
	var seen []int
	res, err := sweep.RunImage(context.Background(), spec, func(p sweep.Point) error {
		seen = append(seen, p.Index)
		if p.Adv == nil || len(p.Adv.Data) != 784 {
			t.Errorf("point %d has no image", p.Index)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != len(grid) || !slices.IsSorted(seen) {
		t.Fatalf("points arrived as %v", seen)
	}
	if res.Label != labels[0] || res.LabelName != names[labels[0]] {
		t.Errorf("label %d (%s), the image is a %d", res.Label, res.LabelName, labels[0])
	}
	for d, def := range res.Defences {
		first := -1
		for k, p := range res.Points {
			dp := p.Defences[d]
			if dp.Flipped != (dp.Top1 != res.Label) || dp.WrongClass == res.Label || dp.TrueProb+dp.WrongProb > 1+1e-5 {
				t.Errorf("%s at ε %g: inconsistent point %+v", def.Name, p.Eps, dp)
			}
			if dp.Flipped != (dp.WrongProb > dp.TrueProb) && dp.WrongProb != dp.TrueProb {
				t.Errorf("%s at ε %g: flipped %v but true %g, wrong %g", def.Name, p.Eps, dp.Flipped, dp.TrueProb, dp.WrongProb)
			}
			if dp.Flipped && first < 0 {
				first = k
			}
			if p.Linf255 > p.Eps255+1e-3 {
				t.Errorf("ε %g (%g/255): the image moved %g/255", p.Eps, p.Eps255, p.Linf255)
			}
		}
		if def.FlipIndex != first || (first >= 0) != (def.FlipEps != nil) || (first >= 0 && *def.FlipEps != res.Eps[first]) {
			t.Errorf("%s: flip marked at %d (%v), the points first flip at %d", def.Name, def.FlipIndex, def.FlipEps, first)
		}
	}
	if res.Defences[0].FlipIndex <= 0 || res.Defences[0].FlipIndex > 12 {
		t.Errorf("the attacked model flips at point %d (want between ε 0.025 and 0.3)", res.Defences[0].FlipIndex)
	}
	spec.Chunk = 5
	again, err := sweep.RunImage(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k := range res.Points {
		if !slices.Equal(res.Points[k].Adv.Data, again.Points[k].Adv.Data) {
			t.Errorf("ε %g: chunks of 5 give another image than one at a time", res.Eps[k])
		}
	}
}

// The competition's scores are sums of raw outcomes: recomputed here from every
// defence's answer on every attack's images.
func TestCompeteScoresFromRawOutcomes(t *testing.T) {
	x, labels := testImages(t, 60)
	la, lb, mlp := model(t, "lin-a"), model(t, "lin-b"), model(t, "mlp")
	attacks := []*sweep.Attack{
		{Name: "fgsm", Config: attack.Config{Method: attack.FGSM}, Surrogates: []attack.Model{la}},
		{Name: "pgd", Config: attack.Config{Method: attack.PGD, Steps: 5}, Surrogates: []attack.Model{la, lb}},
		{Name: "noise", Config: attack.Config{Method: attack.Noise}, Surrogates: []attack.Model{la}},
		{Name: "pushnet", Network: pushNet(t)},
	}
	makeDefs := func() []sweep.Defence {
		return []sweep.Defence{defenceOf(t, la, "", 0), defenceOf(t, mlp, "", 0), defenceOf(t, mlp, "bits", 1), defenceOf(t, lb, "resize-pad", 90)}
	}
	defs := makeDefs()
	epsSet := []float32{0.1, 0.2, 0.3}
	spec := sweep.CompeteSpec{Dataset: "mnist-test", Attacks: attacks, Defences: defs, Images: x, Labels: labels, Range: [2]float32{0, 1},
		EpsSet: epsSet, Batch: 20, Seed: 11, KeepPredictions: true}
	var progress []int
	m, err := sweep.Compete(context.Background(), spec, func(p *sweep.Matrix) error {
		progress = append(progress, p.N)
		if p.Predictions != nil {
			t.Error("a partial matrix carries raw outcomes")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(progress, []int{20, 40, 60}) || len(m.BatchEps) != 3 {
		t.Fatalf("progress %v, batch budgets %v", progress, m.BatchEps)
	}
	for _, e := range m.BatchEps {
		if !slices.Contains(m.EpsSet, e) {
			t.Errorf("batch budget %g is not in the set %v", e, m.EpsSet)
		}
	}
	if len(m.Predictions) != 4 || len(m.Labels) != 60 || len(m.CleanPredictions) != 4 {
		t.Fatalf("raw outcomes missing: %d attacks, %d labels", len(m.Predictions), len(m.Labels))
	}
	attackScore := make([]int, len(attacks))
	defenceScore := make([]int, len(defs))
	for a := range attacks {
		for d := range defs {
			mis := 0
			for i, p := range m.Predictions[a][d] {
				if p != m.Labels[i] {
					mis++
				} else {
					defenceScore[d]++
				}
			}
			if m.Misclassified[a][d] != mis {
				t.Errorf("%s vs %s: matrix says %d misclassified, the outcomes %d", attacks[a].Name, defs[d].Name, m.Misclassified[a][d], mis)
			}
			attackScore[a] += mis
		}
	}
	checkRanks := func(what string, es []sweep.Entrant, scores []int, most int) {
		for i, e := range es {
			if e.Score != scores[i] {
				t.Errorf("%s %s: score %d, recomputed %d", what, e.Name, e.Score, scores[i])
			}
			want := 1
			for _, s := range scores {
				if s > scores[i] {
					want++
				}
			}
			if e.Rank != want {
				t.Errorf("%s %s: rank %d, recomputed %d (scores %v)", what, e.Name, e.Rank, want, scores)
			}
			if math.Abs(e.Rate-float64(scores[i])/float64(most)) > 1e-6 {
				t.Errorf("%s %s: rate %g", what, e.Name, e.Rate)
			}
		}
	}
	checkRanks("attack", m.Attacks, attackScore, 60*len(defs))
	checkRanks("defence", m.Defences, defenceScore, 60*len(attacks))
	for d, e := range m.Defences {
		c := 0
		for i, p := range m.CleanPredictions[d] {
			if p == m.Labels[i] {
				c++
			}
		}
		if e.CleanCorrect != c || c < 45 {
			t.Errorf("defence %s: clean correct %d, recomputed %d", e.Name, e.CleanCorrect, c)
		}
	}
	// White-box PGD beats random noise of the same budget on the model it attacks.
	if m.Misclassified[1][0] <= m.Misclassified[2][0] {
		t.Errorf("PGD misclassified %d on lin-a, noise %d", m.Misclassified[1][0], m.Misclassified[2][0])
	}
	// The same seed draws the same budgets and gives the same matrix (random
	// defences start their draws afresh).
	spec.Defences = makeDefs()
	again, err := sweep.Compete(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.BatchEps, m.BatchEps) || fmt.Sprint(again.Misclassified) != fmt.Sprint(m.Misclassified) {
		t.Errorf("rerun: budgets %v vs %v, matrix %v vs %v", again.BatchEps, m.BatchEps, again.Misclassified, m.Misclassified)
	}
}

// Transfer: rates are fooled images over the images each target got right, from the
// raw outcomes; the white-box diagonal is the highest of its column.
func TestTransferMatrixFromRawOutcomes(t *testing.T) {
	x, labels := testImages(t, 60)
	ms := []attack.Model{model(t, "lin-a"), model(t, "lin-b"), model(t, "mlp")}
	var sources []*sweep.Attack
	var targets []sweep.Defence
	for _, m := range ms {
		sources = append(sources, &sweep.Attack{Name: m.Name, Config: attack.Config{Method: attack.PGD, Steps: 10}, Surrogates: []attack.Model{m}})
		targets = append(targets, defenceOf(t, m, "", 0))
	}
	tm, err := sweep.Transfer(context.Background(), sweep.TransferSpec{Dataset: "mnist-test", Sources: sources, Targets: targets, Images: x,
		Labels: labels, Range: [2]float32{0, 1}, Eps: 0.1, Batch: 25, Seed: 3, KeepPredictions: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for s := range sources {
		for d := range targets {
			fooled, wrong, clean := 0, 0, 0
			for i, p := range tm.Predictions[s][d] {
				ok := tm.CleanPredictions[d][i] == tm.Labels[i]
				if ok {
					clean++
				}
				if p != tm.Labels[i] {
					wrong++
					if ok {
						fooled++
					}
				}
			}
			if tm.Fooled[s][d] != fooled || tm.Wrong[s][d] != wrong || tm.Targets[d].CleanCorrect != clean ||
				math.Abs(tm.Rate[s][d]-float64(fooled)/float64(clean)) > 1e-6 {
				t.Errorf("%s → %s: fooled %d wrong %d clean %d rate %g; recomputed %d %d %d", sources[s].Name, targets[d].Name,
					tm.Fooled[s][d], tm.Wrong[s][d], tm.Targets[d].CleanCorrect, tm.Rate[s][d], fooled, wrong, clean)
			}
		}
	}
	for d := range targets {
		for s := range sources {
			if s != d && tm.Rate[s][d] > tm.Rate[d][d] {
				t.Errorf("%s's own attack fools it less (%g) than %s's (%g)", targets[d].Name, tm.Rate[d][d], sources[s].Name, tm.Rate[s][d])
			}
		}
	}
	t.Logf("transfer at ε 0.1: %v", tm.Rate)
}

func TestParseGridAndDefence(t *testing.T) {
	g, err := sweep.ParseGrid("0:0.4:0.025")
	if err != nil || len(g) != 17 || g[0] != 0 || g[16] != 0.4 || g[3] != 0.075 {
		t.Errorf("0:0.4:0.025 → %v, %v", g, err)
	}
	g, err = sweep.ParseGrid("8/255, 4/255,4/255,16/255")
	if err != nil || len(g) != 3 || g[0] != float32(4.0/255) {
		t.Errorf("list → %v, %v", g, err)
	}
	if g, err := sweep.ParseGrid("0,0.1"); err != nil || !slices.Equal(g, []float32{0, 0.1}) {
		t.Errorf("0,0.1 → %v, %v", g, err)
	}
	for _, bad := range []string{"", "0:0.4", "0.4:0:0.1", "0:1:0", "0:1:-1", "a,b", "-0.1", "0:100:0.001", "1:2:x"} {
		if _, err := sweep.ParseGrid(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if err := sweep.CheckGrid([]float32{0, 0.5}, [2]float32{0, 1}); err != nil {
		t.Error(err)
	}
	if err := sweep.CheckGrid([]float32{2}, [2]float32{0, 1}); err == nil {
		t.Error("ε 2 on [0,1] accepted")
	}
	for in, want := range map[string][3]any{
		"mnist-cnn":            {"mnist-cnn", "", 0},
		" mnist-cnn + jpeg:75": {"mnist-cnn", "jpeg", 75},
		"m+bits":               {"m", "bits", 3},
		"m+RESIZE-PAD:80":      {"m", "resize-pad", 80},
	} {
		m, k, p, err := sweep.ParseDefence(in)
		if err != nil || m != want[0] || k != want[1] || p != want[2] {
			t.Errorf("%q → %q %q %d %v", in, m, k, p, err)
		}
	}
	for _, bad := range []string{"", "+jpeg", "m+blur", "m+jpeg:0", "m+jpeg:x", "m+bits:9", "m+jpeg:7.5"} {
		if _, _, _, err := sweep.ParseDefence(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestSweepsRefuseBadInputAndStopWhenCancelled(t *testing.T) {
	x, labels := testImages(t, 4)
	m := model(t, "lin-a")
	defs := []sweep.Defence{defenceOf(t, m, "", 0)}
	ok := sweep.DatasetSpec{Attack: pgd(3, m), Eps: []float32{0, 0.1}, Range: [2]float32{0, 1}, Defences: defs, Images: x, Labels: labels}
	bad := map[string]func(*sweep.DatasetSpec){
		"labels":         func(s *sweep.DatasetSpec) { s.Labels = labels[:3] },
		"no defence":     func(s *sweep.DatasetSpec) { s.Defences = nil },
		"twice":          func(s *sweep.DatasetSpec) { s.Defences = append(defs, defs[0]) },
		"eps over range": func(s *sweep.DatasetSpec) { s.Eps = []float32{1.5} },
		"no eps":         func(s *sweep.DatasetSpec) { s.Eps = nil },
		"pixels":         func(s *sweep.DatasetSpec) { y := x.Clone(); y.Data[0] = 2; s.Images = y },
		"no attack":      func(s *sweep.DatasetSpec) { s.Attack = nil },
		"batch":          func(s *sweep.DatasetSpec) { s.Batch = -1 },
	}
	for name, edit := range bad {
		s := ok
		edit(&s)
		if _, err := sweep.RunDataset(context.Background(), s, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := errors.New("stop")
	s := ok
	s.Batch = 1
	calls := 0
	_, err := sweep.RunDataset(ctx, s, func(*sweep.DatasetResult) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("cancelled after the first batch: %v after %d batches", err, calls)
	}
	img := sweep.ImageSpec{Attack: pgd(3, m), Eps: []float32{0, 0.1}, Range: [2]float32{0, 1}, Defences: defs, Image: x, Label: 1}
	if _, err = sweep.RunImage(context.Background(), img, nil); err == nil {
		t.Error("an image sweep of 4 images accepted")
	}
	img.Image.Shape, img.Image.Data = []int64{1, 1, 28, 28}, x.Data[:784]
	if _, err = sweep.RunImage(context.Background(), img, func(sweep.Point) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("the callback's error is lost: %v", err)
	}
	_, err = sweep.Compete(context.Background(), sweep.CompeteSpec{Attacks: []*sweep.Attack{pgd(3, m)}, Defences: defs, Images: x, Labels: labels,
		Range: [2]float32{0, 1}, EpsSet: []float32{0, 0.1}}, nil)
	if err == nil {
		t.Error("a competition budget of 0 accepted")
	}
	_, err = sweep.Transfer(context.Background(), sweep.TransferSpec{Sources: []*sweep.Attack{pgd(3, m), pgd(3, m)}, Targets: defs, Images: x,
		Labels: labels, Range: [2]float32{0, 1}, Eps: 0.1}, nil)
	if err == nil {
		t.Error("two sources with one name accepted")
	}
}
