package server

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gibbon/inference"
	"gibbon/inference/defense"
	"gibbon/inference/train"
	"gibbon/inference/zoo"
	"gibbon/views"
)

// A classifier's manifest records what `gibbon eval` measured on MNIST's test
// digits under keys that name the attack, its ε and how many digits were scored
// (train.CleanMetric, PGDMetric, AutoAttackMetric; read back by
// train.ParseAccuracyMetric). The page's columns are clean, `gibbon eval`'s
// default PGD (train.DefaultPGD) and AutoAttack.

// suggestedAutoAttackN is the number of digits the page suggests for an AutoAttack
// not measured yet: AutoAttack on all 10,000 takes hours on a laptop.
const suggestedAutoAttackN = 1000

// robustnessColumns are the table's columns, in order: key and heading.
var robustnessColumns = [3][2]string{{"clean", "clean"}, {"pgd40", "PGD-40"}, {"autoattack", "AutoAttack"}}

// robustness builds a classifier's robustness row from its metrics and returns
// the metrics left over; nil for a classifier `gibbon eval` cannot score (not a
// 28×28 grey input) that has no such metric either.
func robustness(m *zoo.Model, metrics map[string]float64) (*views.RobustnessRow, map[string]float64) {
	rest := map[string]float64{}
	type found struct {
		train.AccuracyMetric
		value float64
	}
	var cols [3][]found
	for k, v := range metrics {
		a, ok := train.ParseAccuracyMetric(k)
		switch {
		case !ok || a.Attack == "pgd" && a.Steps != train.DefaultPGD.Steps:
			rest[k] = v
		case a.Attack == "clean":
			cols[0] = append(cols[0], found{a, v})
		case a.Attack == "pgd":
			cols[1] = append(cols[1], found{a, v})
		default:
			cols[2] = append(cols[2], found{a, v})
		}
	}
	mnist := m.Input.Channels == 1 && m.Input.Height == 28 && m.Input.Width == 28
	if m.Task != inference.TaskClassifier || !mnist && len(cols[0])+len(cols[1])+len(cols[2]) == 0 {
		return nil, metrics
	}
	row := &views.RobustnessRow{Model: m.Name, Robust: m.Robust}
	for i, col := range cols {
		// Most digits first, then the smaller ε.
		slices.SortFunc(col, func(a, b found) int {
			return cmp.Or(cmp.Compare(b.N, a.N), cmp.Compare(a.Eps, b.Eps))
		})
		cell := views.RobustnessCell{Key: robustnessColumns[i][0], Column: robustnessColumns[i][1]}
		for _, f := range col {
			cell.Values = append(cell.Values, views.Measure{
				Value: fmt.Sprintf("%.2f %%", 100*f.value),
				N:     digitsText(f.N),
				Eps:   epsText(m, f.Eps),
			})
		}
		if len(col) > 0 {
			cell.Command = evalCommand(m, col[0].AccuracyMetric)
		} else {
			cell.Command = evalCommand(m, suggestedMeasurement(i))
		}
		row.Cells = append(row.Cells, cell)
	}
	return row, rest
}

// suggestedMeasurement is what the page asks for when a column has no figure.
func suggestedMeasurement(column int) train.AccuracyMetric {
	switch column {
	case 0:
		return train.AccuracyMetric{Attack: "clean", N: train.TestDigits}
	case 1:
		return train.AccuracyMetric{Attack: "pgd", Steps: train.DefaultPGD.Steps, Eps: train.DefaultPGD.Eps, N: train.TestDigits}
	}
	return train.AccuracyMetric{Attack: "autoattack", Eps: train.DefaultPGD.Eps, N: suggestedAutoAttackN}
}

// evalCommand is the command that measures a (a model of another folder needs --dir).
func evalCommand(m *zoo.Model, a train.AccuracyMetric) string {
	args := []string{"gibbon", "eval"}
	if m.Source != builtinSource {
		args = append(args, "--dir", shellQuote(m.Source))
	}
	if a.Attack == "autoattack" {
		args = append(args, "--attack", "autoattack")
	}
	if a.N != train.TestDigits || a.Attack == "autoattack" {
		args = append(args, "--n", strconv.Itoa(a.N))
	}
	if a.Attack == "autoattack" || a.Attack == "pgd" && a.Eps != train.DefaultPGD.Eps {
		args = append(args, "--eps", strconv.FormatFloat(a.Eps, 'g', -1, 64))
	}
	return strings.Join(append(args, m.Name), " ")
}

// builtinSource is the zoo's name for the models embedded in the binary.
const builtinSource = "built-in"

// shellQuote quotes a path for a shell when it needs it.
func shellQuote(s string) string {
	if s != "" && plainText(s, "/._-+:@") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func digitsText(n int) string {
	if n >= train.TestDigits {
		return "all 10,000 test digits"
	}
	return fmt.Sprintf("first %d test digits", n)
}

func epsText(m *zoo.Model, eps float64) string {
	if eps == 0 {
		return ""
	}
	r := m.Input.Range
	return "ε " + inference.EpsOn(float32(eps), [2]float32{float32(r[0]), float32(r[1])}).String()
}

// transformDefences lists the explorer's transform defences with what each does
// and, where its figure against attacks that ignore it overstates it, the caveat
// (one sentence with its reference, from defense.Kinds: the one place it is written).
func transformDefences() []views.DefenceNote {
	out := make([]views.DefenceNote, len(defense.Kinds))
	for i, k := range defense.Kinds {
		out[i] = views.DefenceNote{ID: k.ID, Label: k.Label, Note: k.Note, Caveat: k.Caveat}
	}
	return out
}
