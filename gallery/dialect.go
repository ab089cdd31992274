package gallery

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// dialect is what differs between the SQL of the two backends. Queries are
// written once, with ? placeholders, in the subset both databases speak; conn
// renumbers the placeholders ($1, $2, …) for PostgreSQL on the way to the driver.
type dialect struct {
	name string
	// migrations globs the dialect's numbered schema files in migrationFiles.
	migrations string
	// numbered placeholders: $1, $2, … instead of ?.
	numbered bool
	// readTx begins the transactions that read one snapshot (Get, Export).
	readTx *sql.TxOptions
	// unindexed formats a column whose index the planner must not pick (SQLite's
	// unary +; an expression on PostgreSQL).
	unindexed string
	// lockRow ends a SELECT of a row the transaction then changes, where writers
	// run side by side (PostgreSQL). SQLite has one writer at a time.
	lockRow string
	// useImage and dropImage, given an image's key (imageLockKey), lock it:
	// saves that use the image share the lock, a delete that may drop it takes
	// it alone, so it never removes an image a concurrent save is about to use.
	// Empty with one writer at a time.
	useImage, dropImage string
	// The schema version: lockSchema (if any) makes the migration transaction
	// exclusive, prepareVersion (if any) creates where the version is kept,
	// readVersion reads it and writeVersion (a format for the number) records it.
	lockSchema, prepareVersion, readVersion, writeVersion string
	// integrity lists the file's problems, one a row ("ok" when there are none),
	// and foreignKeys counts rows whose foreign keys point nowhere: SQLite's
	// checks. PostgreSQL enforces its foreign keys at every statement.
	integrity, foreignKeys string
}

var sqliteDialect = &dialect{
	name:         "sqlite",
	migrations:   "migrations/*.sql",
	readTx:       &sql.TxOptions{ReadOnly: true},
	unindexed:    "+%s",
	readVersion:  "PRAGMA user_version",
	writeVersion: "PRAGMA user_version = %d",
	integrity:    "PRAGMA integrity_check",
	foreignKeys:  "SELECT count(*) FROM pragma_foreign_key_check",
}

// Advisory lock spaces (the first key of pg_advisory_xact_lock(int, int)):
// "gibs" for the schema, "gibi" for images.
const (
	pgLockSchema = 0x67696273
	pgLockImage  = 0x67696269
)

var postgresDialect = &dialect{
	name:           "postgres",
	migrations:     "migrations/postgres/*.sql",
	numbered:       true,
	readTx:         &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	unindexed:      "(%s || '')",
	lockRow:        " FOR UPDATE",
	useImage:       fmt.Sprintf("SELECT pg_advisory_xact_lock_shared(%d, ?)", pgLockImage),
	dropImage:      fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, ?)", pgLockImage),
	lockSchema:     fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, 0)", pgLockSchema),
	prepareVersion: "CREATE TABLE IF NOT EXISTS gallery_schema_version (version integer NOT NULL)",
	readVersion:    "SELECT coalesce(max(version), 0) FROM gallery_schema_version",
	writeVersion:   "DELETE FROM gallery_schema_version; INSERT INTO gallery_schema_version (version) VALUES (%d)",
}

// imageLockKey is the advisory lock key of an image: its SHA-256's first 32 bits.
// Two images sharing them only wait for each other.
func imageLockKey(sha string) int32 {
	v, _ := strconv.ParseUint(sha[:8], 16, 32) // sha is checked hex
	return int32(uint32(v))
}

// bind writes q's ? placeholders as the dialect wants them. Queries hold no ?
// inside string literals.
func (d *dialect) bind(q string) string {
	if !d.numbered || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// runner is what conn wraps: a *sql.DB or a *sql.Tx.
type runner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// conn runs queries written with ? placeholders in its dialect.
type conn struct {
	r runner
	d *dialect
}

func (c conn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return c.r.ExecContext(ctx, c.d.bind(query), args...)
}

func (c conn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return c.r.QueryContext(ctx, c.d.bind(query), args...)
}

func (c conn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return c.r.QueryRowContext(ctx, c.d.bind(query), args...)
}

func (c conn) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return c.r.PrepareContext(ctx, c.d.bind(query))
}
