package views

// GalleryIndexPage is /gallery: newest entries first, filters, one page.
type GalleryIndexPage struct {
	Page
	Models, Attacks, Eps, Kinds []FilterOption
	Filtered                    bool // any filter set
	Cards                       []GalleryCard
	// NextURL is the next (older) page; empty on the last. FirstURL goes back
	// to the newest entries, when this is not the first page.
	NextURL, FirstURL string
	// Error says why the query was refused (a bad filter or cursor).
	Error string
}

// FilterOption is one choice of a filter's select.
type FilterOption struct {
	Value, Label string
	Selected     bool
}

// GalleryCard is one entry in the index.
type GalleryCard struct {
	URL        string // the permalink
	Thumb      string // adversarial image URL; empty for entries without images
	Title      string // the saver's title, or a description made from the entry
	Kind       string
	Model      string
	Attack     string
	Eps        string // with its unit: "8/255"
	Change     string // "7 → 3": the first model's top-1, original → adversarial
	Fooled     bool
	Created    string // "2026-03-01 12:00 UTC"
	CreatedISO string
}

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

	// Image URLs; empty when the entry has none (sweeps, matrices).
	Original, Adversarial, Perturbation string
	// Gain is how much the perturbation image is amplified ("×16").
	Gain          string
	Width, Height int // pixels
	ShowWidth     int // CSS px the images are shown at (small images enlarged, unsmoothed)
	ShowHeight    int

	Attack       string
	Eps          string // "8/255" or "0.3/1"
	LInf         string // as the attack reported it, same unit
	LInfMeasured string // between the stored images, /255; empty without both
	Seed         string
	Models       []GalleryModel
	Params       []Fact
	Predictions  []GalleryPrediction
	Steps        []GalleryStep
	StepModels   []string // column order of GalleryStep.Top1
	// LossPoints is an SVG polyline over a 0..300 × 0..100 box; empty under 2 steps.
	LossPoints       string
	LossMin, LossMax string
	Timings          []Fact
	Payload          string // a sweep's or matrix's results, indented JSON

	RerunURL  string // the attack explorer with these settings
	Downloads []Link
}

// GalleryModel is one model of an entry.
type GalleryModel struct {
	Name, SHA256, Role string
}

// GalleryPrediction is one model's final top-k on both images.
type GalleryPrediction struct {
	Model       string
	Original    []Score
	Adversarial []Score
	// Fooled: the top-1 changed between the two images.
	Fooled bool
}

// GalleryStep is one row of the per-step table.
type GalleryStep struct {
	Step int
	Loss string
	Top1 []string // per StepModels: "3 (81.0 %)", or "" where not reported
}

// Link is a labelled href.
type Link struct {
	Label, Href, Download string
}

// GalleryDeletePage confirms, then reports, the deletion of an entry.
type GalleryDeletePage struct {
	Page
	Slug, Title string
	Thumb       string
	Token       string
	Done        bool
	Error       string
}
