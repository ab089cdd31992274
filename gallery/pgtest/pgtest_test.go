package pgtest

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestFindBinariesPicksTheNewestVersion(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9", "15", "13"} {
		dir := filepath.Join(root, v, "bin")
		os.MkdirAll(dir, 0o755)
		for _, name := range []string{"initdb", "postgres"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := findBinaries(filepath.Join(root, "*", "bin"))
	if err != nil || got != filepath.Join(root, "15", "bin") {
		t.Fatalf("findBinaries: %s, %v; want version 15's", got, err)
	}
}

func TestMissingServerNamesTheSetupCommand(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findBinaries(filepath.Join(t.TempDir(), "*", "bin"))
	if err == nil || !strings.Contains(err.Error(), SetupCommand) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("without a server: %v, want one line naming %s", err, SetupCommand)
	}
}

// Each URL's connections work in a new schema of their own.
func TestEachURLHasItsOwnSchema(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		db, err := sql.Open("pgx", NewSchema(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var schema string
		var tables int
		if err := db.QueryRow("SELECT current_schema(), (SELECT count(*) FROM pg_tables WHERE schemaname = current_schema())").Scan(&schema, &tables); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(schema, "t") || seen[schema] || tables != 0 {
			t.Fatalf("connection works in schema %q (%d tables), seen before: %v", schema, tables, seen[schema])
		}
		seen[schema] = true
	}
}
