package gallery_test

import (
	"context"
	"path/filepath"
	"testing"

	"gibbon/gallery"
)

func openStore(t *testing.T) (*gallery.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), gallery.FileName)
	s, err := gallery.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, path
}

func mustSave(t *testing.T, s *gallery.Store, e *gallery.Entry) gallery.Receipt {
	t.Helper()
	r, err := s.Save(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustCheck(t *testing.T, s *gallery.Store) {
	t.Helper()
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
}
