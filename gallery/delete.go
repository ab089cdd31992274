package gallery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Delete removes the entry if token is its delete token, then every image no
// other entry uses, in one transaction.
func (s *Store) Delete(ctx context.Context, slug, token string) error {
	if !ValidSlug(slug) {
		return ErrNotFound
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		e, hash, err := getEntry(ctx, tx, slug)
		if err != nil {
			return err
		}
		if !tokenMatches(token, hash) {
			return ErrForbidden
		}
		return remove(ctx, tx, e)
	})
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrForbidden) {
		return fmt.Errorf("delete gallery entry: %w", err)
	}
	return err
}

func remove(ctx context.Context, tx *sql.Tx, e *Entry) error {
	// steps and entry_models go with it (ON DELETE CASCADE).
	if _, err := tx.ExecContext(ctx, "DELETE FROM entries WHERE slug = ?", e.Slug); err != nil {
		return err
	}
	for _, f := range facetsOf(e) { // the last one out removes the value; others count down
		if _, err := tx.ExecContext(ctx, "DELETE FROM facets WHERE facet = ? AND value = ? AND count = 1", f[0], f[1]); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE facets SET count = count - 1 WHERE facet = ? AND value = ? AND count > 1", f[0], f[1]); err != nil {
			return err
		}
	}
	for _, sha := range []string{e.OriginalSHA, e.AdversarialSHA} {
		if sha == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM images WHERE sha256 = ?
			AND NOT EXISTS (SELECT 1 FROM entries WHERE original_sha = ?)
			AND NOT EXISTS (SELECT 1 FROM entries WHERE adversarial_sha = ?)`, sha, sha, sha); err != nil {
			return err
		}
	}
	return nil
}
