package gallery

import (
	"context"
	"strings"
)

// Hooks for the external tests (package gallery_test), which can use gallerytest.

// SetSlugSource makes s draw its slugs from f.
func SetSlugSource(s *Store, f func() string) { s.newSlug = f }

// NewSlug is a random slug.
func NewSlug() string { return newSlug() }

// Analyze updates the planner's statistics of the gallery's tables.
func Analyze(ctx context.Context, s *Store) error {
	_, err := s.w.ExecContext(ctx, "ANALYZE entries, entry_models")
	return err
}

// ListPlan is PostgreSQL's plan for List(f, cursor) with sequential scans and
// sorts priced out: a plan that still sorts has no index giving the order.
func ListPlan(ctx context.Context, s *Store, f Filter, cursor string) (string, error) {
	q, args, err := s.d.listQuery(f, cursor, 25)
	if err != nil {
		return "", err
	}
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	for _, set := range []string{"SET LOCAL enable_seqscan = off", "SET LOCAL enable_sort = off", "SET LOCAL enable_incremental_sort = off"} {
		if _, err := tx.ExecContext(ctx, set); err != nil {
			return "", err
		}
	}
	rows, err := conn{tx, s.d}.QueryContext(ctx, "EXPLAIN "+q, args...)
	if err != nil {
		return "", err
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return "", err
		}
		plan = append(plan, line)
	}
	return strings.Join(plan, "\n"), closeRows(rows)
}

// EncodeCursor is the page cursor after the entry (created, id).
func EncodeCursor(created, id int64) string { return encodeCursor(created, id) }
