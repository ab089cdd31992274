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

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Store is an open gallery file. It is safe for concurrent use.
type Store struct {
	path string
	w    *sql.DB // one connection: writes queue here instead of fighting for the lock
	r    *sql.DB // readers; WAL lets them run beside the writer
	ck   *sql.DB // checkpoints, off the save path
	now  func() time.Time

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

// Open opens (creating if needed) the gallery at path and brings its schema up to
// date. Several processes may open the same file; SQLite's locks and the busy
// timeout serialise their writes.
func Open(ctx context.Context, path string) (*Store, error) {
	return open(ctx, path, migrationFiles)
}

func open(ctx context.Context, path string, migrations fs.FS) (*Store, error) {
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
	s := &Store{path: abs, w: w, now: time.Now}
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

// Path is the gallery file's absolute path.
func (s *Store) Path() string { return s.path }

// Close stops the checkpointer and closes the file; in-flight calls finish
// first. The last connection to close checkpoints and removes the WAL.
func (s *Store) Close() error {
	s.stopCk()
	s.checkpoint.Wait()
	return errors.Join(s.ck.Close(), s.r.Close(), s.w.Close())
}

// SchemaVersion is the schema the file is at (PRAGMA user_version).
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}

// migrate applies the numbered migrations newer than the file's user_version,
// each in its own transaction together with the version bump.
func (s *Store) migrate(ctx context.Context, migrations fs.FS) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
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

// migrateOne applies the next migration, if any, under the write lock so two
// processes opening a new file cannot both apply it.
func (s *Store) migrateOne(ctx context.Context, migrations fs.FS, latest int, next func(int) (string, int)) (bool, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
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
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version)); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
