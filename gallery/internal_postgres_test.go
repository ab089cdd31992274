package gallery

import (
	"context"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"gibbon/gallery/pgtest"
)

func TestPostgresMigrationAppliesNewOnesAndRefusesNewerSchemas(t *testing.T) {
	ctx := context.Background()
	init, err := fs.ReadFile(migrationFiles, "migrations/postgres/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	target := pgtest.NewSchema(t)
	s, err := Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	later := fstest.MapFS{
		"migrations/postgres/0001_init.sql": {Data: init},
		"migrations/postgres/0002_note.sql": {Data: []byte("ALTER TABLE entries ADD COLUMN note TEXT NOT NULL DEFAULT '';\nCREATE INDEX entries_note ON entries (note);")},
	}
	s, err = open(ctx, target, later)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersion(ctx); err != nil || v != 2 {
		t.Fatalf("schema %d (%v) after the second migration, want 2", v, err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'entries' AND column_name = 'note'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration 2 not applied: %d, %v", n, err)
	}
	s.Close()

	// This Gibbon only knows schema 1: it must refuse, not write into a newer gallery.
	if _, err := Open(ctx, target); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("open of a newer schema: %v", err)
	}

	broken := fstest.MapFS{"migrations/postgres/0001_init.sql": {Data: init}, "migrations/postgres/0002_bad.sql": {Data: []byte("CREATE TABLE images (x int);")}}
	fresh := pgtest.NewSchema(t)
	if _, err := open(ctx, fresh, broken); err == nil {
		t.Fatal("a failing migration was accepted")
	}
	// The failed migration rolled back: the schema is still a good schema-1 gallery.
	s, err = Open(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(ctx); v != 1 {
		t.Fatalf("schema %d after a failed migration, want 1", v)
	}
}

// Web nodes starting together on a new database apply the schema once.
func TestPostgresNodesStartingTogetherMigrateOnce(t *testing.T) {
	ctx := context.Background()
	target := pgtest.NewSchema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(ctx, target)
			if err == nil {
				s.Close()
			}
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
	s, err := Open(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var rows int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM gallery_schema_version").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d version rows (%v), want 1", rows, err)
	}
}

func TestBindNumbersPlaceholders(t *testing.T) {
	q := "SELECT a FROM t WHERE b = ? AND (c, d) < (?, ?) LIMIT ?"
	if got := postgresDialect.bind(q); got != "SELECT a FROM t WHERE b = $1 AND (c, d) < ($2, $3) LIMIT $4" {
		t.Fatalf("postgres: %s", got)
	}
	if got := sqliteDialect.bind(q); got != q {
		t.Fatalf("sqlite: %s", got)
	}
}

// A URL without connect_timeout still gets a bounded connect.
func TestPostgresConnectTimeout(t *testing.T) {
	for target, want := range map[string]time.Duration{
		"postgres://db.example/gallery":                   pgConnectTimeout,
		"postgres://db.example/gallery?connect_timeout=3": 3 * time.Second,
	} {
		cfg, err := pgConfig(target)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ConnectTimeout != want {
			t.Errorf("%s: connect timeout %s, want %s", target, cfg.ConnectTimeout, want)
		}
	}
	if _, err := pgConfig("postgres://db.example/gallery?connect_timeout=soon"); err == nil {
		t.Fatal("a connect_timeout that is not a number was accepted")
	}
}

func TestImageLockKey(t *testing.T) {
	for sha, want := range map[string]int32{
		strings.Repeat("0", 64):              0,
		"7fffffff" + strings.Repeat("a", 56): 0x7fffffff,
		"ffffffff" + strings.Repeat("a", 56): -1,
	} {
		if got := imageLockKey(sha); got != want {
			t.Errorf("imageLockKey(%s…) = %d, want %d", sha[:8], got, want)
		}
	}
}
