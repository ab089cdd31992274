package gallery

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
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

// redactURL is target without its password, for messages and logs.
func redactURL(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return "a postgres:// URL" // unparsable: it may hold a password anywhere
	}
	return u.Redacted()
}

// openPostgres connects to the database target names (it must exist) and brings
// its schema up to date.
func openPostgres(ctx context.Context, target string, migrations fs.FS) (*Store, error) {
	where := redactURL(target)
	cfg, err := pgx.ParseConfig(target)
	if err != nil {
		return nil, fmt.Errorf("open gallery %s: %w", where, err) // pgx leaves the password out
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgMaxConns)
	db.SetMaxIdleConns(pgMaxConns) // a new connection costs PostgreSQL a process
	db.SetConnMaxIdleTime(pgConnIdle)
	s := &Store{location: where, d: postgresDialect, w: db, r: db, now: time.Now, newSlug: newSlug}
	var encoding string
	if err := db.QueryRowContext(ctx, "SHOW server_encoding").Scan(&encoding); err != nil {
		db.Close()
		return nil, fmt.Errorf("open gallery %s: %w", where, err)
	}
	if encoding != "UTF8" {
		db.Close()
		return nil, fmt.Errorf("open gallery %s: the database's encoding is %s; the gallery needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')", where, encoding)
	}
	if err := s.migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("open gallery %s: %w", where, err)
	}
	return s, nil
}
