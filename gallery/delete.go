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
	err := s.writeTx(ctx, func(tx conn) error {
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

// remove deletes e, counts its facets down and deletes the images no other
// entry uses. Its locks come in the order insert takes them: images, then
// facets in sorted order.
func remove(ctx context.Context, tx conn, e *Entry) error {
	if err := lockImages(ctx, tx, tx.d.dropImage, e.OriginalSHA, e.AdversarialSHA); err != nil {
		return err
	}
	// steps and entry_models go with it (ON DELETE CASCADE). A concurrent delete
	// may have removed it since it was read (PostgreSQL): then it is not found.
	var id int64
	err := tx.QueryRowContext(ctx, "DELETE FROM entries WHERE slug = ? RETURNING id", e.Slug).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	for _, f := range facetsOf(e) { // the last one out removes the value; others count down
		var n int
		err := tx.QueryRowContext(ctx, "SELECT count FROM facets WHERE facet = ? AND value = ?"+tx.d.lockRow, f[0], f[1]).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		q := "UPDATE facets SET count = count - 1 WHERE facet = ? AND value = ?"
		if n <= 1 {
			q = "DELETE FROM facets WHERE facet = ? AND value = ?"
		}
		if _, err := tx.ExecContext(ctx, q, f[0], f[1]); err != nil {
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
