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

// Detail is the digits and the ε, as one phrase.
func (m Measure) Detail() string {
	if m.Eps == "" {
		return m.N
	}
	return m.N + ", " + m.Eps
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

// CatalogSection lists the models Gibbon can pull. With Allowed (gibbon serve
// --allow-pull) each one not served yet has a Pull button; without, the command.
type CatalogSection struct {
	Allowed bool
	Dir     string // where pulls register
	Command string // gibbon models pull NAME
	Entries []CatalogEntry
}

// CatalogEntry is one pullable model.
type CatalogEntry struct {
	Name, Architecture, Description string
	Purpose                         string // what it is for, in a phrase
	Size, License                   string
	Robust                          bool
	PinRequired                     bool   // no checksum pinned: imported by hand only
	Served                          bool   // already one of this server's models
	Pulling                         bool   // a pull is running
	Failed                          string // why the last pull failed
	Command                         string // gibbon models pull NAME
}

// PullPage is one pull's progress; while it runs the page reloads itself.
type PullPage struct {
	Page
	Name, State, Progress string
	Running               bool
	Done, Total           int64
	Error                 string
	ModelURL              string // the model on /models, once served
}
