package gallery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

func TestSaveLoadRoundTrip(t *testing.T) { eachBackend(t, testSaveLoadRoundTrip) }

func testSaveLoadRoundTrip(t *testing.T, be backend) {
	ctx := context.Background()
	s, _ := openStore(t, be)
	in := gallerytest.Run(1, gallerytest.Options{Title: "  a seven becomes a three  "})
	in.Models = append(in.Models, gallery.ModelRef{Name: "resnet", SHA256: strings.Repeat("AB", 32)})
	in.Params = json.RawMessage(`{ "steps": 10,
		"step_size": 2 }`)
	orig, adv := in.Original, in.Adversarial
	rec := mustSave(t, s, in)

	if !gallery.ValidSlug(rec.Slug) || rec.Slug != in.Slug {
		t.Fatalf("slug %q (entry says %q) is not a valid slug", rec.Slug, in.Slug)
	}
	if len(rec.DeleteToken) < 40 {
		t.Fatalf("delete token %q is too short to be secret", rec.DeleteToken)
	}
	got, err := s.Get(ctx, rec.Slug)
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "a seven becomes a three" {
		t.Errorf("title %q: want it trimmed", got.Title)
	}
	if got.Models[2].SHA256 != strings.Repeat("ab", 32) {
		t.Errorf("model checksum %q: want lower case", got.Models[2].SHA256)
	}
	if string(got.Params) != `{"steps":10,"step_size":2}` {
		t.Errorf("params %s: want compact JSON", got.Params)
	}
	if got.LInfMeasured == nil || *got.LInfMeasured != 8 {
		t.Errorf("measured L-inf %v, want 8 (/255)", got.LInfMeasured)
	}
	if got.CreatedAt.IsZero() || time.Since(got.CreatedAt) > time.Minute {
		t.Errorf("created at %v", got.CreatedAt)
	}
	// Everything the saver gave comes back as given (after normalising).
	want := *in
	want.Original, want.Adversarial = nil, nil
	if !reflect.DeepEqual(got, &want) {
		gj, _ := json.MarshalIndent(got, "", " ")
		wj, _ := json.MarshalIndent(&want, "", " ")
		t.Fatalf("round trip differs:\ngot  %s\nwant %s", gj, wj)
	}
	o, a, err := s.Images(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o, orig) || !bytes.Equal(a, adv) {
		t.Fatal("stored PNG bytes differ from the saved ones")
	}
	if got.OriginalSHA != gallery.SHA256(orig) || got.AdversarialSHA != gallery.SHA256(adv) {
		t.Fatal("image addresses are not the SHA-256 of their bytes")
	}
	mustCheck(t, s)
}

func TestSweepKindRoundTrip(t *testing.T) { eachBackend(t, testSweepKindRoundTrip) }

func testSweepKindRoundTrip(t *testing.T, be backend) {
	ctx := context.Background()
	s, _ := openStore(t, be)
	e := &gallery.Entry{
		Kind:          gallery.KindSweep,
		GibbonVersion: "test",
		Attack:        "fgsm",
		Models:        []gallery.ModelRef{{Name: "mnist-cnn", SHA256: strings.Repeat("0", 64), Attacked: true}},
		Eps:           0.3,
		EpsUnit:       gallery.Unit1,
		Payload:       json.RawMessage(`[{"eps": 0.1, "accuracy": 0.9}, {"eps": 0.3, "accuracy": 0.1}]`),
	}
	rec := mustSave(t, s, e)
	got, err := s.Get(ctx, rec.Slug)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != gallery.KindSweep || string(got.Payload) != `[{"eps":0.1,"accuracy":0.9},{"eps":0.3,"accuracy":0.1}]` {
		t.Fatalf("sweep came back as %s %s", got.Kind, got.Payload)
	}
	if got.OriginalSHA != "" || got.LInfMeasured != nil {
		t.Fatal("a sweep without images has no image addresses")
	}
	mustCheck(t, s)
}

func TestImagesStoredOnce(t *testing.T) { eachBackend(t, testImagesStoredOnce) }

func testImagesStoredOnce(t *testing.T, be backend) {
	s, path := openStore(t, be)
	a := gallerytest.Run(1, gallerytest.Options{})
	b := gallerytest.Run(2, gallerytest.Options{})
	b.Original = a.Original // the same picture attacked twice
	mustSave(t, s, a)
	mustSave(t, s, b)
	c := gallerytest.Run(1, gallerytest.Options{}) // an exact repeat of a
	mustSave(t, s, c)
	if n := countRows(t, path, "images"); n != 3 {
		t.Fatalf("%d images stored, want 3 (one original shared by all, two adversarials)", n)
	}
	if n := countRows(t, path, "entries"); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	mustCheck(t, s)
}

func TestDelete(t *testing.T) { eachBackend(t, testDelete) }

func testDelete(t *testing.T, be backend) {
	ctx := context.Background()
	s, path := openStore(t, be)
	a := gallerytest.Run(1, gallerytest.Options{Attack: "fgsm"})
	b := gallerytest.Run(2, gallerytest.Options{})
	b.Original = a.Original
	ra := mustSave(t, s, a)
	rb := mustSave(t, s, b)

	if err := s.Delete(ctx, ra.Slug, rb.DeleteToken); !errors.Is(err, gallery.ErrForbidden) {
		t.Fatalf("delete with another entry's token: %v, want ErrForbidden", err)
	}
	if err := s.Delete(ctx, ra.Slug, ""); !errors.Is(err, gallery.ErrForbidden) {
		t.Fatalf("delete with no token: %v, want ErrForbidden", err)
	}
	if _, err := s.Get(ctx, ra.Slug); err != nil {
		t.Fatalf("entry gone after refused deletes: %v", err)
	}
	if err := s.Delete(ctx, ra.Slug, ra.DeleteToken); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, ra.Slug); !errors.Is(err, gallery.ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, ra.Slug, ra.DeleteToken); !errors.Is(err, gallery.ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	// a's adversarial image went with it; the shared original stays for b.
	if _, err := s.Image(ctx, a.AdversarialSHA); !errors.Is(err, gallery.ErrNotFound) {
		t.Fatalf("unshared image after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Image(ctx, a.OriginalSHA); err != nil {
		t.Fatalf("image still used by another entry was removed: %v", err)
	}
	if n := countRows(t, path, "steps"); n != len(b.Steps) {
		t.Fatalf("%d step rows left, want %d (b's)", n, len(b.Steps))
	}
	f, err := s.Facets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Attacks) != 1 || f.Attacks[0] != (gallery.FacetValue{Value: "pgd", Count: 1}) {
		t.Fatalf("attack facets after delete: %+v, want only pgd×1", f.Attacks)
	}
	mustCheck(t, s)

	if err := s.Delete(ctx, rb.Slug, rb.DeleteToken); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"images", "entries", "steps", "entry_models", "facets"} {
		if n := countRows(t, path, table); n != 0 {
			t.Errorf("%d rows left in %s after deleting every entry", n, table)
		}
	}
	if err := s.Delete(ctx, "../../etc/passwd", "x"); !errors.Is(err, gallery.ErrNotFound) {
		t.Fatalf("delete of a bad slug: %v, want ErrNotFound", err)
	}
}

func TestConcurrentSavesFromTwoHandles(t *testing.T) {
	eachBackend(t, testConcurrentSavesFromTwoHandles)
}

func testConcurrentSavesFromTwoHandles(t *testing.T, be backend) {
	ctx := context.Background()
	s1, path := openStore(t, be)
	s2, err := gallery.Open(ctx, path) // as a second process would
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			s := s1
			if i%2 == 1 {
				s = s2
			}
			_, err := s.Save(ctx, gallerytest.Run(uint64(i), gallerytest.Options{}))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countRows(t, path, "entries"); n != 40 {
		t.Fatalf("%d entries, want 40", n)
	}
	mustCheck(t, s1)
}

func TestMigrationsOnReopen(t *testing.T) { eachBackend(t, testMigrationsOnReopen) }

func testMigrationsOnReopen(t *testing.T, be backend) {
	ctx := context.Background()
	s, path := openStore(t, be)
	rec := mustSave(t, s, gallerytest.Run(1, gallerytest.Options{}))
	v1, err := s.SchemaVersion(ctx)
	if err != nil || v1 < 1 {
		t.Fatalf("schema version %d, %v", v1, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // reopening applies nothing and keeps every entry
		s2, err := gallery.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		v, err := s2.SchemaVersion(ctx)
		if err != nil || v != v1 {
			t.Fatalf("reopened at schema %d (%v), want %d", v, err, v1)
		}
		if _, err := s2.Get(ctx, rec.Slug); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, s2)
		s2.Close()
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := gallery.Open(ctx, dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("open of a directory: %v", err)
	}
	if _, err := gallery.Open(ctx, dir+"/what?.db"); err == nil {
		t.Fatal("open of a path with '?' succeeded")
	}
	notDB := dir + "/not.db"
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not a database "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := gallery.Open(ctx, notDB); err == nil || !strings.Contains(err.Error(), "not a database") {
		t.Fatalf("open of a text file: %v", err)
	}
}
