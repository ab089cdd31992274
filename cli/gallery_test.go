package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
	"gibbon/gallery/pgtest"
)

func TestGalleryExportImportCommands(t *testing.T) {
	ctx := context.Background()
	from, to := t.TempDir(), t.TempDir()
	s, err := gallery.Open(ctx, filepath.Join(from, gallery.FileName))
	if err != nil {
		t.Fatal(err)
	}
	var slugs []string
	for i := range 3 {
		r, err := s.Save(ctx, gallerytest.Run(uint64(i), gallerytest.Options{}))
		if err != nil {
			t.Fatal(err)
		}
		slugs = append(slugs, r.Slug)
	}
	s.Close()

	backup := filepath.Join(t.TempDir(), "backup")
	var out, errw bytes.Buffer
	if err := run(ctx, []string{"gallery", "export", "--data", from, backup}, &out, &errw); err != nil {
		t.Fatal(err, errw.String())
	}
	if !strings.Contains(out.String(), "exported 3 entries and 6 images") {
		t.Fatalf("export said %q", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"gallery", "import", "--data", to, backup}, &out, &errw); err != nil {
		t.Fatal(err, errw.String())
	}
	if !strings.Contains(out.String(), "imported 3 entries (0 already present)") {
		t.Fatalf("import said %q", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"gallery", "check", "--data", to}, &out, &errw); err != nil || !strings.Contains(out.String(), ": ok") {
		t.Fatalf("check: %v %q", err, out.String())
	}
	s, err = gallery.Open(ctx, filepath.Join(to, gallery.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, slug := range slugs {
		if _, err := s.Get(ctx, slug); err != nil {
			t.Fatalf("imported gallery lacks %s: %v", slug, err)
		}
	}

	// Bad command lines are usage errors (exit 2); bad directories are plain errors.
	for _, args := range [][]string{
		{"gallery"},
		{"gallery", "frobnicate"},
		{"gallery", "export"},
		{"gallery", "import", "a", "b"},
		{"gallery", "check", "x"},
		{"gallery", "export", "--nope", "x"},
	} {
		err := run(ctx, args, &out, &errw)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%v: %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
	notExport := t.TempDir()
	os.WriteFile(filepath.Join(notExport, "x.txt"), []byte("x"), 0o644)
	if err := run(ctx, []string{"gallery", "import", "--data", to, notExport}, &out, &errw); err == nil || exitCode(err) != 1 {
		t.Fatalf("import of a random directory: %v", err)
	}
	if err := run(ctx, []string{"gallery", "export", "--data", from, notExport}, &out, &errw); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("export into a used directory: %v", err)
	}
}

// A gallery moves from SQLite to PostgreSQL and back with the gallery
// commands, and `gallery check` checks either.
func TestGalleryCommandsMoveAGalleryBetweenSQLiteAndPostgres(t *testing.T) {
	ctx := context.Background()
	from := t.TempDir()
	s, err := gallery.Open(ctx, filepath.Join(from, gallery.FileName))
	if err != nil {
		t.Fatal(err)
	}
	var slugs []string
	for i := range 3 {
		r, err := s.Save(ctx, gallerytest.Run(uint64(i), gallerytest.Options{}))
		if err != nil {
			t.Fatal(err)
		}
		slugs = append(slugs, r.Slug)
	}
	s.Close()
	pg := pgtest.NewSchema(t)
	back := filepath.Join(t.TempDir(), "back.db")
	steps := []struct {
		args []string
		says string
	}{
		{[]string{"export", "--data", from, "OUT1"}, "exported 3 entries and 6 images from " + filepath.Join(from, gallery.FileName)},
		{[]string{"import", "--db", pg, "OUT1"}, "imported 3 entries (0 already present) from"},
		{[]string{"check", "--db", pg}, ": ok"},
		{[]string{"export", "--db", pg, "OUT2"}, "exported 3 entries and 6 images from postgres://"},
		{[]string{"import", "--db", back, "OUT2"}, "imported 3 entries (0 already present)"},
		{[]string{"check", "--db", back}, back + ": ok"},
	}
	outs := map[string]string{"OUT1": filepath.Join(t.TempDir(), "out1"), "OUT2": filepath.Join(t.TempDir(), "out2")}
	for _, step := range steps {
		args := append([]string{"gallery"}, step.args...)
		if dir, ok := outs[args[len(args)-1]]; ok {
			args[len(args)-1] = dir
		}
		var out, errw bytes.Buffer
		if err := run(ctx, args, &out, &errw); err != nil {
			t.Fatalf("%v: %v %s", args, err, errw.String())
		}
		if !strings.Contains(out.String(), step.says) {
			t.Fatalf("%v said %q, want %q", args, out.String(), step.says)
		}
	}
	s, err = gallery.Open(ctx, back)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, slug := range slugs {
		if e, err := s.Get(ctx, slug); err != nil || !e.Imported {
			t.Fatalf("gallery after SQLite → PostgreSQL → SQLite lacks %s: %v", slug, err)
		}
	}
	var out, errw bytes.Buffer
	err = run(ctx, []string{"gallery", "check", "--db", "postgres://gibbon:secret@127.0.0.1:1/gallery"}, &out, &errw)
	if err == nil || exitCode(err) != 1 || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("check of an unreachable database: %v", err)
	}
}
