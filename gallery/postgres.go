package gallery

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL connections: a web node's requests share one pool. A connection
// that cannot be made in pgConnectTimeout (unless the URL's connect_timeout
// says otherwise) fails, so a wrong host stops `gibbon serve` at once instead
// of hanging it.
const (
	pgConnectTimeout = 10 * time.Second
	pgMaxConns       = 16
	pgConnIdle       = 5 * time.Minute
)

func isPostgresURL(target string) bool {
	return strings.HasPrefix(target, "postgres://") || strings.HasPrefix(target, "postgresql://")
}

// redactURL is target with its passwords masked (the user's, and the
// password and sslpassword parameters), for messages and logs.
func redactURL(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return "a postgres:// URL" // unparsable: it may hold a password anywhere
	}
	q := u.Query()
	for k := range q {
		if strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword") {
			q[k] = []string{"xxxxx"}
			u.RawQuery = q.Encode()
		}
	}
	return u.Redacted()
}

// pgConfig parses a postgres:// URL (libpq's parameters: host, sslmode,
// search_path, …), bounding the connect time where the URL does not.
func pgConfig(target string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(target)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	return cfg, nil
}

// openPostgres connects to the database target names (it must exist) and brings
// its schema up to date.
func openPostgres(ctx context.Context, target string, migrations fs.FS) (*Store, error) {
	where := redactURL(target)
	cfg, err := pgConfig(target)
	if err != nil {
		return nil, fmt.Errorf("open gallery %s: %w", where, err) // pgx leaves the password out
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgMaxConns)
	db.SetMaxIdleConns(pgMaxConns) // a new connection costs PostgreSQL a process
	db.SetConnMaxIdleTime(pgConnIdle)
	s := &Store{location: where, d: postgresDialect, w: db, r: db, now: time.Now, newSlug: newSlug}
	var encoding string
	if err := db.QueryRowContext(ctx, "SHOW server_encoding").Scan(&encoding); err != nil {
		db.Close()
		return nil, fmt.Errorf("open gallery %s: %w", where, oneLine(err))
	}
	if encoding != "UTF8" {
		db.Close()
		return nil, fmt.Errorf("open gallery %s: the database's encoding is %s; the gallery needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')", where, encoding)
	}
	if err := s.migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("open gallery %s: %w", where, oneLine(err))
	}
	return s, nil
}

// oneLine joins the lines of pgx's connect errors (one per address and TLS
// attempt), dropping repeats, so that a failed start says why in one line.
func oneLine(err error) error {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		return err
	}
	var parts []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(parts, l) {
			parts = append(parts, l)
		}
	}
	if len(parts) == 0 {
		return err
	}
	return &lineError{strings.TrimSpace(parts[0] + " " + strings.Join(parts[1:], "; ")), err}
}

type lineError struct {
	msg string
	err error
}

func (e *lineError) Error() string { return e.msg }
func (e *lineError) Unwrap() error { return e.err }
