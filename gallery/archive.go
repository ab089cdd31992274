package gallery

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"gibbon/internal/atomicfile"
)

// An export directory holds:
//
//	gallery.json            format, version, counts (written last: its presence marks a whole export)
//	entries/<slug>.json     each entry, with its delete token's hash so ownership survives
//	images/<sha256>.png     each image once
const (
	archiveFormat  = "gibbon-gallery"
	archiveVersion = 1
	manifestName   = "gallery.json"
)

type archiveManifest struct {
	Format     string    `json:"format"`
	Version    int       `json:"version"`
	Entries    int       `json:"entries"`
	Images     int       `json:"images"`
	ExportedAt time.Time `json:"exported_at"`
}

type archivedEntry struct {
	Entry
	// DeleteHash is the SHA-256 of the secret delete token (never the token).
	DeleteHash string `json:"delete_hash"`
}

// ArchiveStats counts what an export or import did.
type ArchiveStats struct {
	Entries int // written or imported
	Images  int // image files written or images read
	Skipped int // import: entries whose slug the gallery already has
}

// Progress is told how many entries are done out of total.
type Progress func(done, total int)

// Export writes every entry and image to dir, which must be new or empty. It
// reads one snapshot, so saves made meanwhile are either all in or all out.
func (s *Store) Export(ctx context.Context, dir string, progress Progress) (ArchiveStats, error) {
	var st ArchiveStats
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, fmt.Errorf("export: %w", err)
	}
	if names, err := os.ReadDir(dir); err != nil {
		return st, fmt.Errorf("export: %w", err)
	} else if len(names) > 0 {
		return st, fmt.Errorf("export: %s is not empty (export into a new directory)", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, fmt.Errorf("export: %w", err)
	}
	defer root.Close()
	for _, d := range []string{"entries", "images"} {
		if err := root.Mkdir(d, 0o755); err != nil {
			return st, fmt.Errorf("export: %w", err)
		}
	}

	rtx, tx, err := s.readTx(ctx)
	if err != nil {
		return st, fmt.Errorf("export: %w", err)
	}
	defer rtx.Rollback()
	var slugs []string
	rows, err := tx.QueryContext(ctx, "SELECT slug FROM entries ORDER BY id")
	if err != nil {
		return st, fmt.Errorf("export: %w", err)
	}
	for rows.Next() {
		var slug string
		if err := rows.Scan(&slug); err != nil {
			rows.Close()
			return st, fmt.Errorf("export: %w", err)
		}
		slugs = append(slugs, slug)
	}
	if err := closeRows(rows); err != nil {
		return st, fmt.Errorf("export: %w", err)
	}

	written := map[string]bool{}
	for i, slug := range slugs {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		e, hash, err := getEntry(ctx, tx, slug)
		if err != nil {
			return st, fmt.Errorf("export %s: %w", slug, err)
		}
		for _, sha := range []string{e.OriginalSHA, e.AdversarialSHA} {
			if sha == "" || written[sha] {
				continue
			}
			var data []byte
			if err := tx.QueryRowContext(ctx, "SELECT png FROM images WHERE sha256 = ?", sha).Scan(&data); err != nil {
				return st, fmt.Errorf("export %s: image %s: %w", slug, sha, err)
			}
			if err := atomicfile.WriteIn(root, "images/"+sha+".png", data); err != nil {
				return st, fmt.Errorf("export: %w", err)
			}
			written[sha] = true
			st.Images++
		}
		body, err := json.MarshalIndent(archivedEntry{Entry: *e, DeleteHash: hex.EncodeToString(hash)}, "", "  ")
		if err != nil {
			return st, fmt.Errorf("export %s: %w", slug, err)
		}
		if err := atomicfile.WriteIn(root, "entries/"+slug+".json", append(body, '\n')); err != nil {
			return st, fmt.Errorf("export: %w", err)
		}
		st.Entries++
		if progress != nil {
			progress(i+1, len(slugs))
		}
	}
	m, _ := json.MarshalIndent(archiveManifest{archiveFormat, archiveVersion, st.Entries, st.Images, s.now().UTC()}, "", "  ")
	if err := atomicfile.WriteIn(root, manifestName, append(m, '\n')); err != nil {
		return st, fmt.Errorf("export: %w", err)
	}
	return st, nil
}

// Import adds the entries of an export directory, keeping their slugs, times and
// delete-token hashes, and marks each as imported (an operator's restore, not
// computed by this server). Entries whose slug the gallery has already are skipped,
// so importing twice is harmless. Every entry and image is checked as a save
// checks it (and each image against its SHA-256 name); each entry is one
// transaction. Paths are resolved inside dir only.
func (s *Store) Import(ctx context.Context, dir string, progress Progress) (ArchiveStats, error) {
	var st ArchiveStats
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, fmt.Errorf("import: %w", err)
	}
	defer root.Close()
	var m archiveManifest
	if err := readJSON(root, manifestName, 1<<16, &m); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return st, fmt.Errorf("import: %s has no %s: not a whole gallery export", dir, manifestName)
		}
		return st, fmt.Errorf("import: %w", err)
	}
	if m.Format != archiveFormat || m.Version < 1 {
		return st, fmt.Errorf("import: %s/%s is not a Gibbon gallery export", dir, manifestName)
	}
	if m.Version > archiveVersion {
		return st, fmt.Errorf("import: export format %d is newer than this Gibbon reads (%d)", m.Version, archiveVersion)
	}
	entries, err := fs.ReadDir(root.FS(), "entries")
	if err != nil {
		return st, fmt.Errorf("import: %w", err)
	}
	var slugs []string
	for _, d := range entries {
		slug, ok := strings.CutSuffix(d.Name(), ".json")
		if !ok || !ValidSlug(slug) || !d.Type().IsRegular() {
			return st, fmt.Errorf("import: entries/%q is not an entry file", d.Name())
		}
		slugs = append(slugs, slug)
	}
	for i, slug := range slugs {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		imported, images, err := s.importOne(ctx, root, slug)
		if err != nil {
			return st, fmt.Errorf("import entries/%s.json: %w", slug, err)
		}
		if imported {
			st.Entries++
			st.Images += images
		} else {
			st.Skipped++
		}
		if progress != nil {
			progress(i+1, len(slugs))
		}
	}
	return st, nil
}

// importOne imports one entry file; it reports whether the entry was new and how
// many image files it read.
func (s *Store) importOne(ctx context.Context, root *os.Root, slug string) (bool, int, error) {
	var a archivedEntry
	if err := readJSON(root, "entries/"+slug+".json", MaxEntryBytes, &a); err != nil {
		return false, 0, err
	}
	e := &a.Entry
	if e.Slug != slug {
		return false, 0, fmt.Errorf("slug %q inside, %q in the file name", clip(e.Slug), slug)
	}
	if e.CreatedAt.IsZero() {
		return false, 0, errors.New("created_at: missing")
	}
	hash, err := hex.DecodeString(a.DeleteHash)
	if err != nil || len(hash) != 32 {
		return false, 0, errors.New("delete_hash: want 64 hex digits")
	}
	images := 0
	for _, im := range []struct {
		sha string
		dst *[]byte
	}{{e.OriginalSHA, &e.Original}, {e.AdversarialSHA, &e.Adversarial}} {
		if im.sha == "" {
			continue
		}
		if !ValidSHA(im.sha) {
			return false, 0, fmt.Errorf("image address %q is not a SHA-256", clip(im.sha))
		}
		data, err := readFile(root, "images/"+im.sha+".png", MaxImageBytes)
		if err != nil {
			return false, 0, err
		}
		if SHA256(data) != im.sha {
			return false, 0, fmt.Errorf("images/%s.png: contents do not match the name (damaged?)", im.sha)
		}
		*im.dst = data
		images++
	}
	// Whatever the file says, this server did not compute the entry.
	e.Imported = true
	p, err := prepare(e)
	if err != nil {
		return false, 0, err
	}
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Millisecond)
	err = s.writeTx(ctx, func(tx conn) error {
		fresh, err := insert(ctx, tx, e, p, hash)
		if err == nil && !fresh {
			return errSlugTaken // roll back the images written before the entry
		}
		return err
	})
	if errors.Is(err, errSlugTaken) {
		return false, images, nil
	}
	return err == nil, images, err
}

// errSlugTaken ends an import transaction whose entry the gallery has already.
var errSlugTaken = errors.New("slug taken")

func readFile(root *os.Root, name string, max int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, max)
	}
	return data, nil
}

func readJSON(root *os.Root, name string, max int64, v any) error {
	data, err := readFile(root, name, max)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
