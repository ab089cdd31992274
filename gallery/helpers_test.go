package gallery_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/gallery"
	"gibbon/gallery/pgtest"
)

// TestMain removes the PostgreSQL test cluster, if a test started one.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// backend is a kind of store: the Store API's tests run against each.
type backend struct {
	name string
	// newTarget returns where a new, empty gallery is: a file path or a URL.
	newTarget func(tb testing.TB) string
}

var backends = []backend{
	{"sqlite", func(tb testing.TB) string { return filepath.Join(tb.TempDir(), gallery.FileName) }},
	{"postgres", pgtest.NewSchema},
}

// eachBackend runs test once per backend, as subtests named after them.
func eachBackend(t *testing.T, test func(t *testing.T, be backend)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { test(t, be) })
	}
}

// openStore opens a new gallery on be, closed when t ends, and returns it with
// its target.
func openStore(t *testing.T, be backend) (*gallery.Store, string) {
	t.Helper()
	target := be.newTarget(t)
	return openAt(t, target), target
}

// openAt opens the gallery at target, closed when t ends.
func openAt(t *testing.T, target string) *gallery.Store {
	t.Helper()
	s, err := gallery.Open(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// countRows reads a table's row count straight from the database.
func countRows(t *testing.T, target, table string) int {
	t.Helper()
	var db *sql.DB
	var err error
	if strings.HasPrefix(target, "postgres://") {
		db, err = sql.Open("pgx", target)
	} else {
		db, err = sql.Open("sqlite", target+"?_query_only=1&_busy_timeout=5000")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
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
