package gallery

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql migrations/postgres/*.sql
var migrationFiles embed.FS

// Store is an open gallery: a SQLite file or a PostgreSQL database. It is safe
// for concurrent use, and several processes may open the same gallery.
type Store struct {
	location string // the file's absolute path, or the URL without its password
	d        *dialect
	w        *sql.DB // SQLite: one connection, so writes queue here instead of fighting for the lock; PostgreSQL: the pool
	r        *sql.DB // readers (SQLite's WAL lets them run beside the writer); PostgreSQL: the same pool as w
	ck       *sql.DB // SQLite's checkpoints, off the save path; nil on PostgreSQL
	now      func() time.Time
	newSlug  func() string

	writes     atomic.Int64 // commits since the last checkpoint
	stopCk     context.CancelFunc
	checkpoint sync.WaitGroup
}

// Checkpointing: SQLite's automatic checkpoint runs inside whichever commit
// crosses the threshold, which made one save in ~70 wait tens of milliseconds
// (copying the WAL and syncing). Instead a goroutine checkpoints shortly after
// writes (PASSIVE: it never blocks a save), and the automatic one stays as a
// backstop at a much larger WAL.
const (
	checkpointEvery    = 200 * time.Millisecond
	autoCheckpointPage = 16000    // pages (64 MB) before a commit checkpoints itself
	walSizeLimit       = 64 << 20 // bytes the WAL file is cut back to once checkpointed
)

// Open opens the gallery at target and brings its schema up to date. target is
// a file path (SQLite, created if needed) or a postgres:// (or postgresql://)
// URL naming an existing database. Several processes may open the same
// gallery: SQLite's locks and busy timeout serialise their writes to a file;
// on PostgreSQL they write side by side.
func Open(ctx context.Context, target string) (*Store, error) {
	return open(ctx, target, migrationFiles)
}

func open(ctx context.Context, target string, migrations fs.FS) (*Store, error) {
	if isPostgresURL(target) {
		return openPostgres(ctx, target, migrations)
	}
	if scheme, _, ok := strings.Cut(target, "://"); ok && !strings.ContainsAny(scheme, `/\.`) {
		return nil, fmt.Errorf("open gallery %s: %s:// is not a gallery (give a file path or a postgres:// URL)", redactURL(target), clip(scheme))
	}
	return openSQLite(ctx, target, migrations)
}

// openSQLite opens (creating if needed) the gallery file at path.
func openSQLite(ctx context.Context, path string, migrations fs.FS) (*Store, error) {
	if path == "" {
		return nil, errors.New("open gallery: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open gallery: %w", err)
	}
	// The driver reads everything after the first '?' as options.
	if strings.ContainsAny(abs, "?#") {
		return nil, fmt.Errorf("open gallery %s: the path may not contain '?' or '#'", abs)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("open gallery %s: is a directory (expected the %s file)", abs, FileName)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("open gallery: %w", err)
	}
	common := "_busy_timeout=10000&_foreign_keys=1&_journal_mode=WAL&_synchronous=NORMAL"
	w, err := sql.Open("sqlite", abs+"?"+common+"&_txlock=immediate"+
		fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)&_pragma=journal_size_limit(%d)", autoCheckpointPage, walSizeLimit))
	if err != nil {
		return nil, fmt.Errorf("open gallery %s: %w", abs, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	s := &Store{location: abs, d: sqliteDialect, w: w, now: time.Now, newSlug: newSlug}
	if err := s.migrate(ctx, migrations); err != nil {
		w.Close()
		return nil, fmt.Errorf("open gallery %s: %w", abs, err)
	}
	r, err := sql.Open("sqlite", abs+"?"+common+"&_query_only=1")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open gallery %s: %w", abs, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	s.r = r
	ck, err := sql.Open("sqlite", abs+"?"+common)
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("open gallery %s: %w", abs, err)
	}
	ck.SetMaxOpenConns(1)
	s.ck = ck
	ckCtx, stop := context.WithCancel(context.Background())
	s.stopCk = stop
	s.checkpoint.Go(func() { s.checkpointLoop(ckCtx) })
	return s, nil
}

func (s *Store) checkpointLoop(ctx context.Context) {
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.writes.Swap(0) == 0 {
			continue
		}
		// PASSIVE copies what it can without waiting for anyone. An error here
		// (e.g. the disk) also fails the next save, which reports it.
		_, _ = s.ck.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	}
}

// Location names the gallery for people: the SQLite file's absolute path, or
// the PostgreSQL URL without its password.
func (s *Store) Location() string { return s.location }

// Backend is "sqlite" or "postgres".
func (s *Store) Backend() string { return s.d.name }

// Close stops the checkpointer and closes the database; in-flight calls finish
// first. The last connection to a SQLite file checkpoints and removes the WAL.
func (s *Store) Close() error {
	if s.stopCk != nil {
		s.stopCk()
		s.checkpoint.Wait()
	}
	if s.r == s.w {
		return s.w.Close()
	}
	return errors.Join(s.ck.Close(), s.r.Close(), s.w.Close())
}

// SchemaVersion is the schema the gallery is at (SQLite: PRAGMA user_version).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.r.QueryRowContext(ctx, s.d.readVersion).Scan(&v)
	return v, err
}

// migrate applies the numbered migrations newer than the file's user_version,
// each in its own transaction together with the version bump.
func (s *Store) migrate(ctx context.Context, migrations fs.FS) error {
	names, err := fs.Glob(migrations, s.d.migrations)
	if err != nil {
		return err
	}
	type step struct {
		version int
		name    string
	}
	var steps []step
	for i, name := range names { // fs.Glob sorts
		var v int
		if _, err := fmt.Sscanf(filepath.Base(name), "%04d_", &v); err != nil || v != i+1 {
			return fmt.Errorf("migration %s: want number %04d", name, i+1)
		}
		steps = append(steps, step{v, name})
	}
	latest := len(steps)
	for {
		applied, err := s.migrateOne(ctx, migrations, latest, func(current int) (string, int) {
			if current >= latest {
				return "", current
			}
			return steps[current].name, current + 1
		})
		if err != nil || !applied {
			return err
		}
	}
}

// migrateOne applies the next migration, if any, under the write lock (SQLite)
// or the schema's advisory lock (PostgreSQL) so two processes opening a new
// gallery cannot both apply it.
func (s *Store) migrateOne(ctx context.Context, migrations fs.FS, latest int, next func(int) (string, int)) (bool, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	for _, q := range []string{s.d.lockSchema, s.d.prepareVersion} {
		if q == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return false, fmt.Errorf("lock schema: %w", err)
		}
	}
	var current int
	if err := tx.QueryRowContext(ctx, s.d.readVersion).Scan(&current); err != nil {
		return false, fmt.Errorf("read schema version: %w", err)
	}
	if current > latest {
		return false, fmt.Errorf("schema version %d is newer than this Gibbon knows (%d): use a newer Gibbon", current, latest)
	}
	name, version := next(current)
	if name == "" {
		return false, nil
	}
	body, err := fs.ReadFile(migrations, name)
	if err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return false, fmt.Errorf("migration %s: %w", filepath.Base(name), err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(s.d.writeVersion, version)); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
