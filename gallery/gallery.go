// Package gallery stores saved attack runs: entries with their provenance,
// content-addressed images (each stored once), per-step summaries, short
// unguessable slugs for permalinks and hashed secret delete tokens. It keeps
// them in one SQLite file (the embedded default) or in a PostgreSQL database
// that several web nodes share; callers see the same Store either way.
//
// It knows nothing of HTTP: server/ adapts it. Every save is one transaction, so a
// crash mid-save leaves either the whole entry or nothing.
package gallery

import (
	"errors"
	"fmt"
)

// FileName is the gallery's file inside Gibbon's data directory.
const FileName = "gallery.db"

// Errors callers map to user-facing answers (404, 403, 400, 413).
var (
	ErrNotFound  = errors.New("no such gallery entry")
	ErrForbidden = errors.New("wrong delete token")
	ErrInvalid   = errors.New("invalid gallery entry")
	ErrTooLarge  = errors.New("gallery entry too large")
)

// Limits per entry. They bound what one save may add to the file and what one
// permalink page has to show.
const (
	MaxImageBytes    = 8 << 20  // one PNG
	MaxImageSide     = 4096     // pixels, width or height
	MaxImagePixels   = 16 << 20 // width × height
	MaxPayloadBytes  = 4 << 20  // sweep/matrix JSON payload
	MaxParamsBytes   = 64 << 10 // attack parameters JSON
	MaxEntryBytes    = 24 << 20 // everything together
	MaxTitleRunes    = 200
	MaxNameRunes     = 128 // model, attack and label names
	MaxModels        = 16
	MaxDefences      = 32 // models alone or behind a transform
	MaxSteps         = 10000
	MaxTopK          = 20
	MaxTimings       = 32
	MaxVersionRunes  = 64
	maxEntryJSONSize = MaxEntryBytes
)

// ValidationError says which field of an entry is wrong and why.
type ValidationError struct {
	Field string
	Msg   string
	large bool
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Unwrap lets callers test errors.Is(err, ErrInvalid) or ErrTooLarge.
func (e *ValidationError) Unwrap() error {
	if e.large {
		return ErrTooLarge
	}
	return ErrInvalid
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

func tooLarge(field, format string, args ...any) error {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...), large: true}
}
