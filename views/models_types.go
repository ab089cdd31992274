package views

// RobustnessRow is a classifier's accuracy on MNIST's test digits, clean and under
// attack, as `gibbon eval` measured it: a cell per column (clean, PGD-40, AutoAttack).
type RobustnessRow struct {
	Model  string
	Robust bool
	Cells  []RobustnessCell
}

// RobustnessCell is one column's figures, most digits first; with none, Command
// is the one that measures it (the page says "not measured", never a number).
type RobustnessCell struct {
	Key     string // clean, pgd40, autoattack
	Column  string // clean, PGD-40, AutoAttack
	Values  []Measure
	Command string
}

// Measure is one figure with how many digits it was measured on and its ε.
type Measure struct {
	Value string // "95.46 %"
	N     string // "all 10,000 test digits"
	Eps   string // "ε 0.3 (76.5/255)"; empty for clean accuracy
}

// DefenceNote is a transform defence as the models page lists it; Caveat is the
// sentence, with its reference, for one that holds mostly against attacks ignoring it.
type DefenceNote struct {
	ID, Label, Note, Caveat string
}

// shownMeasures is what a robustness cell shows: every figure, or in the summary
// only the headline (the most digits).
func shownMeasures(values []Measure, summary bool) []Measure {
	if summary && len(values) > 1 {
		return values[:1]
	}
	return values
}
