// Package views renders Gibbon's pages with templ. Components take the plain
// structs below, never an HTTP context; server/ fills them in.
//
// Every element tests look for carries a data-testid. Pages contain no inline
// script or style: the Content-Security-Policy forbids both.
package views

// Page is what the shared layout needs.
type Page struct {
	Title string
	Nav   []NavItem
	// CSS, JS and Icon are the content-hashed asset URLs.
	CSS, JS, Icon string
	// Scripts are extra page scripts (hashed URLs), loaded after JS.
	Scripts []string
	// CSRF is the token forms send back as _csrf (and scripts as X-CSRF-Token).
	CSRF string
	// Styles are extra page stylesheets (hashed URLs), loaded after CSS.
	Styles []string
	// Meta are extra <meta> tags, e.g. Open Graph for permalinks.
	Meta []Meta
}

// Meta is one <meta property=… content=…> tag (Open Graph), or with Name set
// one <meta name=… content=…> tag (Twitter's cards read name=).
type Meta struct {
	Property, Name, Content string
}

// NavItem is one link of the site menu.
type NavItem struct {
	Label, Href string
	Current     bool
}

// HomePage is the classify page: inputs, and results when there are some.
type HomePage struct {
	Page
	Limits      Limits
	Samples     []Sample
	Classifiers int
	// Problems counts models that failed to load (shown as a notice linking /models).
	Problems int
	Result   *Result
	// Error is a message about the last input, shown above the form.
	Error string
}

// Limits are the upload limits, as people read them.
type Limits struct {
	MaxUpload string // "10.0 MB"
	MaxPixels string // "40.0 MP"
	Formats   string // "PNG, JPEG, GIF and WebP"
	Accept    string // for <input accept>
}

// Sample is one sample digit.
type Sample struct {
	Name  string // file name, sent back as the sample field
	Label string
	URL   string
}

// Result is one input classified by every model. It is also the JSON the
// classify API returns, which the page's script renders the same way.
type Result struct {
	Source   string        `json:"source"`   // "upload “seven.png”", "your drawing", "sample 3"
	Detail   string        `json:"detail"`   // "PNG, 640×480 px"
	Original string        `json:"original"` // data: URL of a thumbnail of the input
	Models   []ModelResult `json:"models"`
	// Kind is upload, drawing or sample; Sample the sample's name (the explorer
	// takes it from there: "Attack this image").
	Kind   string `json:"kind"`
	Sample string `json:"sample,omitempty"`
	// MNIST says how far the input lies from MNIST's digits, when a model that
	// was trained on them is among the models (nil otherwise).
	MNIST *MNISTHint `json:"mnist,omitempty"`
}

// MNISTHint is how far an input lies from the digits the MNIST models know, and
// what that means for their answers.
type MNISTHint struct {
	Distance float64 `json:"distance"`
	Border   float64 `json:"border"`
	Tones    float64 `json:"tones"`
	Unlike   bool    `json:"unlike"`
	// Verdict says it in a sentence or two; Explain says what the distance is.
	Verdict string `json:"verdict"`
	Explain string `json:"explain"`
}

// ModelResult is one model's answer.
type ModelResult struct {
	Name         string `json:"name"`
	Architecture string `json:"architecture,omitempty"`
	Robust       bool   `json:"robust,omitempty"`
	// Input is a data: URL (PNG) of exactly what the model saw, at its resolution.
	Input       string `json:"input,omitempty"`
	InputWidth  int    `json:"input_width"`
	InputHeight int    `json:"input_height"`
	// Zoom is the integer factor the input is shown enlarged by (no smoothing).
	Zoom         int      `json:"zoom"`
	Steps        []string `json:"steps,omitempty"`
	Top          []Score  `json:"top,omitempty"`
	PreprocessMS float64  `json:"preprocess_ms"`
	InferenceMS  float64  `json:"inference_ms"`
	Error        string   `json:"error,omitempty"`
}

// Score is one class with its probability in [0,1].
type Score struct {
	Label string  `json:"label"`
	Index int     `json:"index"`
	Prob  float64 `json:"probability"`
}

// ModelsPage lists every model and every model that failed to load.
type ModelsPage struct {
	Page
	Models   []ModelInfo
	Problems []string
	// Robustness sums up every classifier's robustness row, in zoo order.
	Robustness []RobustnessRow
	// Defences are the transform defences any classifier can sit behind.
	Defences []DefenceNote
	// Catalog lists the models that can be pulled; nil: none.
	Catalog *CatalogSection
}

// ModelInfo describes one model for people.
type ModelInfo struct {
	Name         string
	Task         string
	Source       string
	Description  string
	Architecture string
	Robust       bool
	Input        []Fact
	Output       []Fact
	Metrics      []Fact
	Training     []Fact
	File         []Fact
	// Runs says which execution provider each of its sessions runs on.
	Runs []Fact
	// NetTables are an attack network's measured success per classifier and ε.
	NetTables []NetTable
	// Robustness is a classifier's clean, PGD-40 and AutoAttack accuracy (nil when
	// gibbon eval cannot measure it).
	Robustness *RobustnessRow
}

// NetTable is an attack network's success against every classifier (rows) at
// every ε head (columns); each cell lists the network beside its baselines
// (Methods, in order).
type NetTable struct {
	Caption string
	Eps     []string
	Methods []string
	Rows    []NetRow
}

// NetRow is one classifier: its role for the network and a cell per ε.
type NetRow struct {
	Model, Role string
	Cells       [][]string
}

// Fact is one labelled value; Code values are shown in monospace.
type Fact struct {
	Label, Value string
	Code         bool
}

// ErrorPage is a whole-page error.
type ErrorPage struct {
	Page
	Status  int
	Heading string
	Message string
}
