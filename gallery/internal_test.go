package gallery

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func TestMigrationAppliesNewOnesAndRefusesNewerFiles(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	init, err := fs.ReadFile(migrationFiles, "migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	later := fstest.MapFS{
		"migrations/0001_init.sql": {Data: init},
		"migrations/0002_note.sql": {Data: []byte("ALTER TABLE entries ADD COLUMN note TEXT NOT NULL DEFAULT '';\nCREATE INDEX entries_note ON entries (note);")},
	}
	s, err = open(ctx, path, later)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.SchemaVersion(ctx); err != nil || v != 2 {
		t.Fatalf("schema %d (%v) after the second migration, want 2", v, err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM pragma_table_info('entries') WHERE name = 'note'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration 2 not applied: %d, %v", n, err)
	}
	s.Close()

	// This Gibbon only knows schema 1: it must refuse, not write into a newer file.
	_, err = Open(ctx, path)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("open of a newer file: %v", err)
	}

	bad := fstest.MapFS{"migrations/0001_init.sql": {Data: init}, "migrations/0003_gap.sql": {Data: []byte("SELECT 1")}}
	if _, err := open(ctx, filepath.Join(t.TempDir(), "g.db"), bad); err == nil {
		t.Fatal("a gap in migration numbers was accepted")
	}
	broken := fstest.MapFS{"migrations/0001_init.sql": {Data: init}, "migrations/0002_bad.sql": {Data: []byte("CREATE TABLE images (x);")}}
	p2 := filepath.Join(t.TempDir(), "g.db")
	if _, err := open(ctx, p2, broken); err == nil {
		t.Fatal("a failing migration was accepted")
	}
	// The failed migration rolled back: the file is still a good schema-1 gallery.
	s, err = Open(ctx, p2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.SchemaVersion(ctx); v != 1 {
		t.Fatalf("schema %d after a failed migration, want 1", v)
	}
}

// Every filter combination must walk an index in (created_at, id) order: no
// sort of all matching rows, which is what would make page 1 slow at 100k entries.
func TestListQueriesWalkAnIndex(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.w.ExecContext(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	for _, model := range []string{"", "m"} {
		for _, attack := range []string{"", "pgd"} {
			for _, eps := range []string{"", "8/255"} {
				for _, kind := range []Kind{"", KindRun} {
					for _, cursor := range []string{"", encodeCursor(1700000000000, 42)} {
						f := Filter{Model: model, Attack: attack, Eps: eps, Kind: kind}
						q, args, err := sqliteDialect.listQuery(f, cursor, 25)
						if err != nil {
							t.Fatal(err)
						}
						rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
						if err != nil {
							t.Fatal(err)
						}
						var plan []string
						for rows.Next() {
							var id, parent, notused int
							var detail string
							if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
								t.Fatal(err)
							}
							plan = append(plan, detail)
						}
						rows.Close()
						p := strings.Join(plan, " | ")
						if strings.Contains(p, "TEMP B-TREE") || !strings.Contains(p, "INDEX") {
							t.Errorf("filter %+v cursor %q: plan %q sorts or scans without an index", f, cursor, p)
						}
						// The index must cover every equality, not just one of them.
						for _, c := range []struct {
							on   bool
							want string
						}{
							{model != "", "name=?"}, {attack != "", "attack=?"}, {eps != "", "eps=?"},
							{kind != "" && model == "" && attack == "" && eps == "", "kind=?"},
						} {
							if c.on && !strings.Contains(p, c.want) {
								t.Errorf("filter %+v: plan %q does not seek on %s", f, p, c.want)
							}
						}
					}
				}
			}
		}
	}
}

func TestSlugsAndTokens(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s := newSlug()
		if !ValidSlug(s) || seen[s] {
			t.Fatalf("slug %q invalid or repeated", s)
		}
		seen[s] = true
	}
	for _, bad := range []string{"", "abc", "../../etc/pa", "ABCDEFGHJKMN", "0123456789ab/", "0123456789ai", "0123456789a%"} {
		if ValidSlug(bad) {
			t.Errorf("ValidSlug(%q) = true", bad)
		}
	}
	tok, hash := newToken()
	if !tokenMatches(tok, hash) || tokenMatches(tok+"x", hash) || tokenMatches("", hash) {
		t.Fatal("token check is wrong")
	}
	for _, c := range []string{"", "x", "1-", "-1", "zz-0", "1-1-1", strings.Repeat("9", 50) + "-1", "-5-1"} {
		if _, _, err := decodeCursor(c); err == nil {
			t.Errorf("cursor %q accepted", c)
		}
	}
	if c, id, err := decodeCursor(encodeCursor(1700000000123, 77)); err != nil || c != 1700000000123 || id != 77 {
		t.Fatalf("cursor round trip: %d %d %v", c, id, err)
	}
}
