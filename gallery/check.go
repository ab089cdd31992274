package gallery

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Check verifies the database and that every entry is whole: SQLite's integrity
// and foreign-key checks (PostgreSQL enforces foreign keys at every statement),
// each entry's steps and models all present, runs with both images, and facet
// counts matching the entries. It reads every row; use it in tests and `gibbon
// gallery check`, not per request.
func (s *Store) Check(ctx context.Context) error {
	var problems []string
	db := conn{s.r, s.d}
	if s.d.integrity != "" {
		rows, err := db.QueryContext(ctx, s.d.integrity)
		if err != nil {
			return fmt.Errorf("check gallery: %w", err)
		}
		for rows.Next() {
			var msg string
			if err := rows.Scan(&msg); err != nil {
				rows.Close()
				return err
			}
			if msg != "ok" {
				problems = append(problems, "integrity: "+msg)
			}
		}
		if err := closeRows(rows); err != nil {
			return fmt.Errorf("check gallery: %w", err)
		}
	}

	queries := []struct{ what, sql string }{
		{"foreign key", s.d.foreignKeys},
		{"entries missing steps", `SELECT count(*) FROM entries e
			WHERE e.step_count != (SELECT count(*) FROM steps s WHERE s.entry_id = e.id)`},
		{"entries missing models", `SELECT count(*) FROM entries e
			WHERE e.model_count < 1 OR e.model_count != (SELECT count(*) FROM entry_models m WHERE m.entry_id = e.id)`},
		{"model rows disagreeing with their entry", `SELECT count(*) FROM entry_models m JOIN entries e ON e.id = m.entry_id
			WHERE m.created_at != e.created_at OR m.attack != e.attack OR m.eps != e.eps OR m.eps_unit != e.eps_unit`},
		{"runs missing an image", `SELECT count(*) FROM entries e WHERE e.kind = 'run' AND (
			e.original_sha IS NULL OR e.adversarial_sha IS NULL
			OR NOT EXISTS (SELECT 1 FROM images i WHERE i.sha256 = e.original_sha)
			OR NOT EXISTS (SELECT 1 FROM images i WHERE i.sha256 = e.adversarial_sha))`},
		{"images no entry uses", `SELECT count(*) FROM images i
			WHERE NOT EXISTS (SELECT 1 FROM entries WHERE original_sha = i.sha256)
			AND NOT EXISTS (SELECT 1 FROM entries WHERE adversarial_sha = i.sha256)`},
		{"model facets off", `SELECT count(*) FROM (
			SELECT name AS v, count(*) AS n FROM entry_models GROUP BY name
			EXCEPT SELECT value, count FROM facets WHERE facet = 'model') AS d`},
		{"attack facets off", `SELECT count(*) FROM (
			SELECT attack AS v, count(*) AS n FROM entries WHERE attack != '' GROUP BY attack
			EXCEPT SELECT value, count FROM facets WHERE facet = 'attack') AS d`},
		{"model facet values without entries", `SELECT (SELECT count(*) FROM facets WHERE facet = 'model')
			- (SELECT count(DISTINCT name) FROM entry_models)`},
		{"attack facet values without entries", `SELECT (SELECT count(*) FROM facets WHERE facet = 'attack')
			- (SELECT count(DISTINCT attack) FROM entries WHERE attack != '')`},
		{"eps facet counts off", `SELECT (SELECT CAST(coalesce(sum(count), 0) AS BIGINT) FROM facets WHERE facet = 'eps')
			- (SELECT count(*) FROM entries)`},
	}
	for _, q := range queries {
		if q.sql == "" {
			continue // not a check this database needs
		}
		var n int
		if err := db.QueryRowContext(ctx, q.sql).Scan(&n); err != nil {
			return fmt.Errorf("check gallery (%s): %w", q.what, err)
		}
		if n != 0 {
			problems = append(problems, fmt.Sprintf("%s: %d", q.what, n))
		}
	}
	if len(problems) > 0 {
		return errors.New("gallery check failed: " + strings.Join(problems, "; "))
	}
	return nil
}
