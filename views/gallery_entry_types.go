package views

import "strconv"

// GalleryEntryPage is a permalink, rendered from the stored record alone.
type GalleryEntryPage struct {
	Page
	Slug    string
	Title   string // the saver's title, or a description made from the entry
	Kind    string
	Created string
	// CreatedISO is for <time datetime>.
	CreatedISO string
	Version    string
	// Imported marks an entry an operator restored: this server did not compute it.
	Imported bool
	// Flip is the attacked model's change, "7 → 3, mnist-cnn-small"; empty when
	// the entry has no such verdict.
	Flip string

	// Image URLs; empty when the entry has none (sweeps, matrices without images).
	Original, Adversarial string
	// Perturbation is the blue–white–red map at Gain: full colour from ±ε/gain,
	// FullAt (in /255 steps), with ε EpsLevels /255 steps.
	Perturbation  string
	Gain          string // the map's gain as a query value ("2")
	Gains         []GainChoice
	FullAt        string
	EpsLevels     int
	Width, Height int // pixels
	ShowWidth     int // CSS px the images are shown at (small images enlarged, unsmoothed)
	ShowHeight    int

	Attack string // "PGD"
	Eps    string // "8/255"
	// Distances are the L∞ and L2 norms, as recorded and as measured between the
	// stored images.
	Distances []ParamRow
	Params    []ParamRow
	Models    []GalleryModel
	Defences  []DefenceCard
	// LossChart is nil under two recorded losses; ConfCharts are one per defence.
	LossChart  *LineChart
	ConfCharts []LineChart
	Steps      []GalleryStep
	StepModels []string // column order of GalleryStep.Top1
	Timings    []Fact
	Payload    string // a sweep's or matrix's results, indented JSON

	RerunURL string // the explorer (or sweep page) with these settings
	// VerifyURL is where the Verify button posts; empty for entries that cannot
	// be replayed here (sweeps, or a server without the explorer).
	VerifyURL string
	// ProviderNote says when a recorded pass ran on a provider that does not
	// promise identical results (non-CPU).
	ProviderNote string
	Downloads    []Link
}

// GainChoice is one setting of the perturbation map's gain control.
type GainChoice struct {
	Value, Label string
	Selected     bool
}

// ParamRow is one row of a permalink's tables: a value with its unit, and a note
// that explains it ("0.031 of the input range [0, 1]").
type ParamRow struct {
	Key, Label, Value, Note string
	Code                    bool
}

// GalleryModel is one model of an entry.
type GalleryModel struct {
	Name   string
	SHA256 string
	Short  string // the checksum's first 12 hex digits
	Role   string // "attacked" or "defence"
}

// DefenceCard is one defence's verdicts on the clean and the adversarial image.
type DefenceCard struct {
	Name      string // "mnist-mlp + JPEG q75"
	Model     string
	Transform string // "JPEG q75"; empty for the classifier alone
	Attacked  bool   // its classifier made the perturbation
	Clean     []Score
	Adv       []Score
	// Flipped: the top class changed; Change is "7 → 3".
	Flipped bool
	Change  string
}

// GalleryStep is one row of the per-step table.
type GalleryStep struct {
	Step int
	Loss string
	Top1 []string // per StepModels: "3 (81.0 %)", or "" where not reported
}

// LineChart is a server-drawn SVG line chart: Width×Height, the plot inside the
// box Left..Right × Top..Bottom, lines as polyline points in those coordinates.
type LineChart struct {
	Key, Title, Label        string // Key is its data-testid suffix; Label its accessible name
	XLabel, YLabel           string
	Width, Height            int
	Left, Top, Right, Bottom int
	XTicks, YTicks           []ChartTick
	Lines                    []ChartLine
}

// ChartTick is an axis tick at Pos (in SVG coordinates).
type ChartTick struct {
	Pos  float64
	Text string
}

// ChartLine is one series: Points for <polyline>, Class picks its colour and dash.
type ChartLine struct {
	Label, Class, Points string
}

// Link is a labelled href.
type Link struct {
	Label, Href, Download string
}

// ftoa1 writes an SVG coordinate with one decimal.
func ftoa1(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
