package views

import (
	"encoding/json"
	"strconv"
)

// AttackPage is the live attack explorer. attack.js drives it over a websocket.
type AttackPage struct {
	Page
	Limits   Limits
	Samples  []Sample
	Attacks  []AttackChoice
	Models   []AttackModel
	Defences []DefenceKind
	// MaxSteps caps steps per run; DefaultSteps and DefaultEps (/255) start the form.
	MaxSteps     int
	DefaultSteps int
	DefaultEps   int
	MaxEps       int
	MaxPaceMS    int
	// FirstPaceMS is the slow motion of a visit's first run (runs are over in a
	// blink on the small models; watching the first one step by step teaches).
	FirstPaceMS int
	MaxRestarts int
	MaxUpload   int64
	// Gallery is true when finished runs can be saved (POST /api/runs/:key/save).
	Gallery bool
	// Socket is the websocket's path.
	Socket string
	// Problems counts models that failed to load.
	Problems int
}

// AttackChoice is one entry of the attack menu.
type AttackChoice struct {
	ID, Label, Note string
	// Gradient attacks need differentiable models; the others use predictions only.
	Gradient bool
	// Heads are an attack network's budgets in /255 steps: the ε it can use.
	Heads []int
}

// AttackModel is a classifier the page offers to attack and to watch.
type AttackModel struct {
	Name, Architecture string
	Robust             bool
	// Input says what it takes; InputKey is equal for models taking the same tensor.
	Input, InputKey string
	// Channels is 1 (gray) or 3: a model watches attacks made for the same.
	Channels int
	Labels   []string
}

// DefenceKind is an input transformation the page can put in front of a classifier.
type DefenceKind struct {
	ID, Label, Param, Unit, Note string
	// Caveat says, with its reference, when the defence holds only against
	// attacks that ignore it ("" when it does not).
	Caveat            string
	Min, Max, Default int
	Random            bool
}

// jsonText is v as JSON, for data attributes.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return string(b)
}

func i64toa(n int64) string { return strconv.FormatInt(n, 10) }

func boolText(b bool) string { return strconv.FormatBool(b) }

// firstPlain is the model checked as attacked at first: the first one that is not
// adversarially trained (attacking the robust one first is the less telling demo).
func firstPlain(ms []AttackModel) int {
	for i, m := range ms {
		if !m.Robust {
			return i
		}
	}
	return 0
}
