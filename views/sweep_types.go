package views

import "strings"

// SweepPage is the ε sweep page: one image, or robust accuracy on a data set.
// sweep.js runs it over a websocket and draws the chart (chart.js).
type SweepPage struct {
	Page
	Socket    string
	Limits    Limits
	MaxUpload int64
	Samples   []Sample
	Attacks   []AttackChoice
	Models    []AttackModel
	Defences  []DefenceKind
	Gallery   bool
	MaxImages int
	MaxSteps  int
	Problems  int
	Form      SweepForm
	// Saved is the gallery entry the page was opened from, or nil.
	Saved *SavedRun
}

// SweepForm is what the form starts with: the defaults, or a saved run's settings.
type SweepForm struct {
	Kind     string // "image" or "dataset"
	Attack   string
	Model    string
	Eps      string // FROM:TO:STEP or a list
	EpsHint  string // what the default budgets are in /255
	Steps    int
	N        int
	Seed     string
	Defences []string // checked defences: MODEL or MODEL+KIND:PARAM
	Sample   string
	Label    int
}

// SavedRun is a gallery entry a page re-runs.
type SavedRun struct {
	Slug, Title string
	// EntryURL is the entry's JSON (the page draws its stored results from it).
	EntryURL string
	// ImageURL is a saved image sweep's clean image, which a re-run attacks again.
	ImageURL string
	Command  string
	// Problem says why the entry's settings cannot be used here ("" when they can).
	Problem string
}

// MatrixPage is the competition page or the transfer page.
type MatrixPage struct {
	Page
	Mode      string // "compete" or "transfer"
	Socket    string
	Attacks   []AttackChoice
	Models    []AttackModel
	Defences  []DefenceKind
	Gallery   bool
	MaxImages int
	MaxSteps  int
	Problems  int
	Form      MatrixForm
	Saved     *SavedRun
}

// MatrixForm is the matrix form's starting values.
type MatrixForm struct {
	Attacks  []string // competition entrants (checked)
	Attack   string   // transfer: the method
	Models   []string // compete: attacked model; transfer: sources (checked)
	Defences []string // checked defences / targets
	Eps      string
	EpsHint  string
	Steps    int
	N        int
	Batch    int
	Seed     string
}

func checkedIn(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// transformChecked reports whether a list holds a transform of kind id and returns
// its model and parameter.
func transformChecked(list []string, id string) (model string, param string, ok bool) {
	for _, x := range list {
		m, rest, has := strings.Cut(x, "+")
		if !has {
			continue
		}
		k, p, _ := strings.Cut(rest, ":")
		if strings.EqualFold(strings.TrimSpace(k), id) {
			return strings.TrimSpace(m), strings.TrimSpace(p), true
		}
	}
	return "", "", false
}

func paramOr(p string, def int) string {
	if p != "" {
		return p
	}
	return itoa(def)
}
