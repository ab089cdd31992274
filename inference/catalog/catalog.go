// Package catalog is Gibbon's curated list of public ImageNet classifiers and the
// machinery that brings one onto a user's machine: download (with resume), SHA-256
// verification, graph preparation (opset upgrade, batch-dynamic input, terminal
// Softmax detection, checked against the model as published by running both in ONNX
// Runtime) and registration in a models directory's manifest.json. Nothing is
// registered unless its bytes match a pinned or user-given checksum.
package catalog

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"gibbon/inference"
)

// Entry is one downloadable classifier.
type Entry struct {
	Name         string `json:"name"`
	Architecture string `json:"architecture"`
	Description  string `json:"description"`
	// URLs are mirrors of the same bytes, tried in order (optional when Hub is set).
	URLs []string `json:"urls,omitempty"`
	// Hub names the file in a hub repository. Pull then resolves the revision to a
	// commit, takes the file's SHA-256 and size from the hub's LFS metadata for that
	// commit (or checks them against SHA256 when it is stored), downloads from that
	// commit and records the pin in the manifest.
	Hub *HubFile `json:"hub,omitempty"`
	// SHA256 pins the file; empty means no checksum is stored: a Hub entry is then
	// pinned by the hub at pull time, any other entry is only importable with
	// `pull --from FILE --sha256 HASH`.
	SHA256 string `json:"sha256,omitempty"`
	// Size in bytes; 0 when only the checksum is known.
	Size  int64 `json:"size,omitempty"`
	Opset int   `json:"opset,omitempty"`
	// PinSource says where the checksum (or the lack of one) comes from.
	PinSource string `json:"pin_source"`
	License   string `json:"license,omitempty"`
	// Robust marks adversarially trained models.
	Robust bool `json:"robust,omitempty"`
	// Role is inference.RoleDefence or inference.RoleSurrogate for the models of the
	// NIPS'17 competition's setting (gibbon compete: surrogates attacked, defences scored).
	Role  string                  `json:"role,omitempty"`
	Input inference.InputContract `json:"input"`
	// OutputsLogits is what the publisher documents; the graph is checked on pull.
	OutputsLogits bool `json:"outputs_logits"`
	Classes       int  `json:"classes"`
}

// HubFile is a file in a hub repository at a revision.
type HubFile struct {
	// Repo is "owner/name".
	Repo string `json:"repo"`
	// Path is the file's path in the repository.
	Path string `json:"path"`
	// Revision is a branch, tag or commit id; empty means "main".
	Revision string `json:"revision,omitempty"`
}

// PinRequired reports whether the entry has no checksum and no hub to attest one.
func (e *Entry) PinRequired() bool { return e.SHA256 == "" && e.Hub == nil }

// HubPinned reports whether the entry's checksum comes from the hub at pull time.
func (e *Entry) HubPinned() bool { return e.SHA256 == "" && e.Hub != nil }

// where names the entry's first source for messages.
func (e *Entry) where() string {
	if len(e.URLs) > 0 {
		return e.URLs[0]
	}
	if e.Hub != nil {
		return "the hub repository " + e.Hub.Repo + " (file " + e.Hub.Path + ")"
	}
	return "its publisher"
}

// ErrPinRequired marks a pull refused for want of a checksum.
var ErrPinRequired = errors.New("pin required")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports whether s can name a model (and its file).
func ValidName(s string) bool { return nameRE.MatchString(s) && !strings.Contains(s, "..") }

// NormalizeSHA256 lower-cases a hex SHA-256 and checks its form.
func NormalizeSHA256(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
		return "", fmt.Errorf("%q is not a SHA-256 (64 hex digits)", s)
	}
	return s, nil
}

// Validate checks an entry's fields, so a bad custom catalog fails before any download.
func (e *Entry) Validate() error {
	if !ValidName(e.Name) {
		return fmt.Errorf("catalog: %q is not a usable model name (letters, digits, '.', '_', '-')", e.Name)
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("catalog entry %s: %s", e.Name, fmt.Sprintf(format, a...))
	}
	if len(e.URLs) == 0 && e.Hub == nil {
		return fail("no URLs and no hub file")
	}
	if e.Hub != nil {
		if err := e.Hub.validate(); err != nil {
			return fail("%v", err)
		}
	}
	switch e.Role {
	case "", inference.RoleDefence, inference.RoleSurrogate:
	default:
		return fail("role %q is neither %q nor %q", e.Role, inference.RoleDefence, inference.RoleSurrogate)
	}
	for _, u := range e.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return fail("%q is not an http(s) URL", u)
		}
	}
	if e.SHA256 != "" {
		s, err := NormalizeSHA256(e.SHA256)
		if err != nil {
			return fail("%v", err)
		}
		e.SHA256 = s
	}
	if e.Size < 0 {
		return fail("negative size")
	}
	if e.Classes <= 0 {
		return fail("classes must be positive")
	}
	return ValidateContract(e.Input)
}

// ValidateContract checks an input contract is one the preprocessing follows, and
// that a centre crop says how much it keeps.
func ValidateContract(c inference.InputContract) error {
	if err := c.Check(); err != nil {
		return err
	}
	if strings.EqualFold(c.Resize, inference.ResizeCrop) && c.CropPct <= 0 {
		return fmt.Errorf("%w: resize crop needs crop_pct in (0, 1]", inference.ErrBadContract)
	}
	return nil
}

// Catalog is an ordered list of entries with unique names.
type Catalog []Entry

// Lookup finds an entry by name (case-sensitive).
func (c Catalog) Lookup(name string) (*Entry, bool) {
	for i := range c {
		if c[i].Name == name {
			return &c[i], true
		}
	}
	return nil, false
}

// Pick returns the entries of names, in order; an unknown name is an
// inference.ErrInvalid that lists the catalog.
func (c Catalog) Pick(names []string) ([]*Entry, error) {
	out := make([]*Entry, len(names))
	for i, n := range names {
		e, ok := c.Lookup(n)
		if !ok {
			return nil, inference.Invalidf("unknown model %q: `gibbon models list --available` shows the catalog (%s)", n, strings.Join(c.Names(), ", "))
		}
		out[i] = e
	}
	return out, nil
}

// WithRole lists the names of the entries of a role (inference.RoleDefence or
// inference.RoleSurrogate), in order.
func (c Catalog) WithRole(role string) []string {
	var out []string
	for _, e := range c {
		if e.Role == role {
			out = append(out, e.Name)
		}
	}
	return out
}

// Names lists the entry names in order.
func (c Catalog) Names() []string {
	out := make([]string, len(c))
	for i, e := range c {
		out[i] = e.Name
	}
	return out
}

// Validate checks every entry and that names are unique.
func (c Catalog) Validate() error {
	seen := map[string]bool{}
	for i := range c {
		if err := c[i].Validate(); err != nil {
			return err
		}
		if seen[c[i].Name] {
			return fmt.Errorf("catalog: %q appears twice", c[i].Name)
		}
		seen[c[i].Name] = true
	}
	return nil
}

// LoadFile reads a catalog from JSON ({"models": [...]}, the entries in Entry's
// format): a mirror or an organisation's own list in place of the built-in one.
func LoadFile(path string) (Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var doc struct {
		Models Catalog `json:"models"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	if len(doc.Models) == 0 {
		return nil, fmt.Errorf("catalog %s: no models", path)
	}
	if err := doc.Models.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return doc.Models, nil
}
