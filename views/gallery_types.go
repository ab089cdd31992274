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

// GalleryDeletePage confirms, then reports, the deletion of an entry.
type GalleryDeletePage struct {
	Page
	Slug, Title string
	Thumb       string
	Token       string
	Done        bool
	Error       string
}
