package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"

	"gibbon/inference"
	"gibbon/inference/defense"
	"gibbon/inference/train"
	"gibbon/inference/zoo"
)

// Every column's command measures that column: for a built-in model as the
// repository's README runs it, for another folder's with --dir.
func TestEvalCommand(t *testing.T) {
	builtin := &zoo.Model{ModelEntry: inference.ModelEntry{Name: "mnist-mlp"}, Source: builtinSource}
	mine := &zoo.Model{ModelEntry: inference.ModelEntry{Name: "mine"}, Source: "/home/me/my models"}
	for _, tc := range []struct {
		m    *zoo.Model
		a    train.AccuracyMetric
		want string
	}{
		{builtin, suggestedMeasurement(0), "gibbon eval mnist-mlp"},
		{builtin, suggestedMeasurement(1), "gibbon eval mnist-mlp"},
		{builtin, suggestedMeasurement(2), "gibbon eval --attack autoattack --n 1000 --eps 0.3 mnist-mlp"},
		{builtin, train.AccuracyMetric{Attack: "pgd", Steps: 40, Eps: 0.1, N: 500}, "gibbon eval --n 500 --eps 0.1 mnist-mlp"},
		{mine, suggestedMeasurement(2), "gibbon eval --dir '/home/me/my models' --attack autoattack --n 1000 --eps 0.3 mine"},
	} {
		if got := evalCommand(tc.m, tc.a); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.a, got, tc.want)
		}
	}
}

// /models shows each MNIST classifier's clean, PGD-40 and AutoAttack accuracy with
// its digits and ε, says "not measured" with the command where a figure is missing,
// sums them up at the top, and lists the transform defences with their caveats.
func TestModelsPageRobustness(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := http.Get(f.ts.URL + "/models")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	d := doc(t, resp)
	tm := d.Find(`[data-testid="model-info"][data-model="templates"] [data-testid="model-robustness"]`)
	if tm.Length() != 1 {
		t.Fatal("the templates classifier has no robustness table")
	}
	clean := tm.Find(`[data-testid="robust-clean"]`)
	measures := clean.Find(`[data-testid="measure"]`)
	if measures.Length() != 2 || !strings.Contains(measures.Eq(0).Text(), "42.00 %") || !strings.Contains(measures.Eq(0).Text(), "all 10,000 test digits") ||
		!strings.Contains(measures.Eq(1).Text(), "50.00 %") || !strings.Contains(measures.Eq(1).Text(), "first 500 test digits") {
		t.Errorf("clean cell %q", clean.Text())
	}
	if got := clean.Find(`[data-testid="robust-command"]`).Text(); got != "gibbon eval --dir "+shellQuote(f.reg.All()[0].Source)+" templates" {
		t.Errorf("clean command %q", got)
	}
	pgd := tm.Find(`[data-testid="robust-pgd40"]`).Text()
	for _, want := range []string{"10.00 %", "first 100 test digits", "ε 0.3 (76.5/255)", "--n 100 templates"} {
		if !strings.Contains(pgd, want) {
			t.Errorf("PGD-40 cell %q lacks %q", pgd, want)
		}
	}
	aa := tm.Find(`[data-testid="robust-autoattack"]`)
	if aa.Find(`[data-testid="not-measured"]`).Length() != 1 || aa.Find(`[data-testid="measure"]`).Length() != 0 ||
		!strings.Contains(aa.Find(`[data-testid="robust-command"]`).Text(), "--attack autoattack --n 1000 --eps 0.3 templates") {
		t.Errorf("AutoAttack cell %q", aa.Text())
	}
	// What the table shows is not repeated as a fact; what it does not show is.
	facts := d.Find(`[data-model="templates"] [data-testid="facts-metrics"]`).Text()
	if strings.Contains(facts, "clean accuracy") || !strings.Contains(facts, "pgd40 eps0.3 step0.02 accuracy") {
		t.Errorf("measured facts %q", facts)
	}
	// An RGB model gibbon eval cannot score, with no such figures, has no table.
	if d.Find(`[data-model="colours"] [data-testid="model-robustness"]`).Length() != 0 {
		t.Error("the colours model has a robustness table")
	}

	sum := d.Find(`[data-testid="robustness-summary"] [data-testid="robustness-row"]`)
	if sum.Length() != 1 || sum.AttrOr("data-model", "") != "templates" {
		t.Fatalf("summary rows: %d", sum.Length())
	}
	if got := sum.Find(`[data-testid="robust-clean"] [data-testid="measure"]`).Length(); got != 1 {
		t.Errorf("summary shows %d clean figures, want the headline only", got)
	}
	if sum.Find(`[data-testid="robust-autoattack"] [data-testid="not-measured"]`).Length() != 1 {
		t.Error("summary does not say AutoAttack is not measured")
	}

	// The transform defences, each caveat the one sentence defense.Kinds holds.
	for _, k := range defense.Kinds {
		li := d.Find(`[data-testid="defence-note-` + k.ID + `"]`)
		if li.Length() != 1 || !strings.Contains(li.Text(), k.Label) {
			t.Errorf("defence %s not listed", k.ID)
		}
		caveat := li.Find(`[data-testid="defence-caveat-` + k.ID + `"]`)
		if k.Caveat == "" && caveat.Length() != 0 || k.Caveat != "" && caveat.Text() != k.Caveat {
			t.Errorf("defence %s caveat %q, want %q", k.ID, caveat.Text(), k.Caveat)
		}
	}
	if c := d.Find(`[data-testid="defence-caveat-bits"]`).Text(); !strings.Contains(c, "Obfuscated Gradients") {
		t.Errorf("bit-depth caveat without its reference: %q", c)
	}
}

// The built-in models' page shows what their manifest holds, whatever it holds
// now: each classifier's clean accuracy on all the test digits, and AutoAttack
// either as measured or as "not measured" with the command; never another number.
func TestModelsPageBuiltinRobustness(t *testing.T) {
	f := newBuiltinFixture(t)
	resp, err := http.Get(f.ts.URL + "/models")
	if err != nil {
		t.Fatal(err)
	}
	d := doc(t, resp)
	for _, name := range builtinClassifiers {
		m, ok := f.reg.Classifier(name)
		if !ok {
			t.Fatalf("%s not loaded", name)
		}
		row := d.Find(`[data-testid="robustness-summary"] [data-testid="robustness-row"][data-model="` + name + `"]`)
		if row.Length() != 1 {
			t.Errorf("%s: no summary row", name)
			continue
		}
		clean, ok := m.Metrics[train.CleanMetric(0)]
		if got := row.Find(`[data-testid="robust-clean"] [data-testid="measure"] strong`).Text(); !ok || got != fmt.Sprintf("%.2f %%", 100*clean) {
			t.Errorf("%s: clean %q, manifest %v", name, got, clean)
		}
		var aa []string
		for k, v := range m.Metrics {
			if a, ok := train.ParseAccuracyMetric(k); ok && a.Attack == "autoattack" {
				aa = append(aa, fmt.Sprintf("%.2f %%", 100*v))
			}
		}
		cell := d.Find(`[data-model="` + name + `"] [data-testid="model-robustness"] [data-testid="robust-autoattack"]`)
		shown := cell.Find(`[data-testid="measure"] strong`)
		if shown.Length() != len(aa) || len(aa) == 0 && cell.Find(`[data-testid="not-measured"]`).Length() != 1 {
			t.Errorf("%s: AutoAttack cell %q, manifest figures %v", name, cell.Text(), aa)
		}
		shown.Each(func(_ int, s *goquery.Selection) {
			if !slices.Contains(aa, s.Text()) {
				t.Errorf("%s: AutoAttack %q is not in the manifest (%v)", name, s.Text(), aa)
			}
		})
		if !strings.Contains(cell.Find(`[data-testid="robust-command"]`).Text(), "gibbon eval --attack autoattack") {
			t.Errorf("%s: AutoAttack cell without its command: %q", name, cell.Text())
		}
	}
}
