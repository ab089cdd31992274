package gallery_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

func TestExportImportRoundTrip(t *testing.T) { eachBackend(t, testExportImportRoundTrip) }

func testExportImportRoundTrip(t *testing.T, be backend) {
	ctx := context.Background()
	src, _ := openStore(t, be)
	var receipts []gallery.Receipt
	for i := range 6 {
		e := gallerytest.Run(uint64(i), gallerytest.Options{Title: "<script>alert(" + string(rune('0'+i)) + ")</script>"})
		if i > 0 {
			e.Original = gallerytest.Run(0, gallerytest.Options{}).Original // shared image
		}
		receipts = append(receipts, mustSave(t, src, e))
	}
	sweep := &gallery.Entry{Kind: gallery.KindSweep, GibbonVersion: "t", Attack: "fgsm", Eps: 0.1, EpsUnit: gallery.Unit1,
		Models: []gallery.ModelRef{{Name: "m", SHA256: strings.Repeat("1", 64)}}, Payload: json.RawMessage(`{"points":[1,2]}`)}
	receipts = append(receipts, mustSave(t, src, sweep))

	dir := filepath.Join(t.TempDir(), "backup")
	var calls int
	st, err := src.Export(ctx, dir, func(done, total int) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 7 || st.Images != 7 || calls != 7 { // 1 shared original + 6 adversarials
		t.Fatalf("export stats %+v, %d progress calls", st, calls)
	}
	if _, err := src.Export(ctx, dir, nil); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("export into a used directory: %v", err)
	}

	dst, _ := openStore(t, be)
	st, err = dst.Import(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 7 || st.Skipped != 0 {
		t.Fatalf("import stats %+v", st)
	}
	for _, r := range receipts {
		a, err := src.Get(ctx, r.Slug)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dst.Get(ctx, r.Slug)
		if err != nil {
			t.Fatal(err)
		}
		if a.Imported || !b.Imported {
			t.Fatalf("entry %s: imported mark %v in the source, %v after import (want false, true)", r.Slug, a.Imported, b.Imported)
		}
		b.Imported = false
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("entry %s differs after export and import:\n%+v\n%+v", r.Slug, a, b)
		}
		ao, aa, _ := src.Images(ctx, a)
		bo, ba, _ := dst.Images(ctx, b)
		if string(ao) != string(bo) || string(aa) != string(ba) {
			t.Fatalf("entry %s images differ", r.Slug)
		}
	}
	// The saver's delete link still works on the new machine.
	if err := dst.Delete(ctx, receipts[2].Slug, receipts[2].DeleteToken); err != nil {
		t.Fatal(err)
	}
	// Importing again adds nothing (the deleted one comes back: it is in the backup).
	st, err = dst.Import(ctx, dir, nil)
	if err != nil || st.Entries != 1 || st.Skipped != 6 {
		t.Fatalf("second import %+v, %v", st, err)
	}
	mustCheck(t, dst)
}

func TestImportRejectsDamagedExports(t *testing.T) { eachBackend(t, testImportRejectsDamagedExports) }

func testImportRejectsDamagedExports(t *testing.T, be backend) {
	ctx := context.Background()
	src, _ := openStore(t, be)
	rec := mustSave(t, src, gallerytest.Run(1, gallerytest.Options{}))
	e, _ := src.Get(ctx, rec.Slug)

	cases := []struct {
		name   string
		damage func(dir string) error
		want   string
	}{
		{"no manifest", func(dir string) error { return os.Remove(filepath.Join(dir, "gallery.json")) }, "not a whole gallery export"},
		{"foreign manifest", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "gallery.json"), []byte(`{"format":"zip","version":1}`), 0o644)
		}, "not a Gibbon gallery export"},
		{"newer format", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "gallery.json"), []byte(`{"format":"gibbon-gallery","version":9}`), 0o644)
		}, "newer"},
		{"directory as entry", func(dir string) error {
			return os.Mkdir(filepath.Join(dir, "entries", "0000000000aa.json"), 0o755)
		}, "not an entry file"},
		{"bad entry name", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "entries", "notaslug.json"), []byte("{}"), 0o644)
		}, "not an entry file"},
		{"tampered image", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "images", e.AdversarialSHA+".png"), gallerytest.PNG(28, 28, 9), 0o644)
		}, "do not match"},
		{"missing image", func(dir string) error { return os.Remove(filepath.Join(dir, "images", e.OriginalSHA+".png")) }, "no such file"},
		{"image path escape", func(dir string) error {
			return editEntry(dir, rec.Slug, func(m map[string]any) { m["original_sha256"] = "../../../../etc/passwd" })
		}, "not a SHA-256"},
		{"symlink out", func(dir string) error {
			p := filepath.Join(dir, "images", e.OriginalSHA+".png")
			os.Remove(p)
			return os.Symlink("/etc/hostname", p)
		}, "escapes"},
		{"hostile field", func(dir string) error {
			return editEntry(dir, rec.Slug, func(m map[string]any) { m["title"] = "a\u0000b" })
		}, "control"},
		{"unknown field", func(dir string) error {
			return editEntry(dir, rec.Slug, func(m map[string]any) { m["evil"] = true })
		}, "unknown field"},
		{"slug mismatch", func(dir string) error {
			return editEntry(dir, rec.Slug, func(m map[string]any) { m["slug"] = "0000000000aa" })
		}, "file name"},
		{"bad delete hash", func(dir string) error {
			return editEntry(dir, rec.Slug, func(m map[string]any) { m["delete_hash"] = "zz" })
		}, "delete_hash"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "x")
			if _, err := src.Export(ctx, dir, nil); err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			dst, path := openStore(t, be)
			_, err := dst.Import(ctx, dir, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("import: %v, want an error mentioning %q", err, tc.want)
			}
			if n := countRows(t, path, "entries"); n != 0 {
				t.Fatalf("%d entries imported from a damaged export", n)
			}
		})
	}
	if _, err := src.Import(ctx, filepath.Join(t.TempDir(), "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("import of a missing directory: %v", err)
	}
}

func editEntry(dir, slug string, edit func(map[string]any)) error {
	p := filepath.Join(dir, "entries", slug+".json")
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	edit(m)
	data, err = json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}
