package gallery

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Get loads the entry with this slug (without image bytes: see Image).
func (s *Store) Get(ctx context.Context, slug string) (*Entry, error) {
	if !ValidSlug(slug) {
		return nil, ErrNotFound
	}
	// One read transaction: the entry and its rows come from the same snapshot.
	tx, q, err := s.readTx(ctx)
	if err != nil {
		return nil, fmt.Errorf("load gallery entry: %w", err)
	}
	defer tx.Rollback()
	e, _, err := getEntry(ctx, q, slug)
	return e, err
}

// getEntry reads one entry and its delete hash.
func getEntry(ctx context.Context, q conn, slug string) (*Entry, []byte, error) {
	var (
		e              Entry
		kind, rec      string
		created        int64
		linfMeasured   sql.NullFloat64
		origSHA, adSHA sql.NullString
		hash           []byte
		id             int64
	)
	var width, height sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT e.id, e.slug, e.delete_hash, e.kind, e.created_at, e.title, e.gibbon_version,
		e.attack, e.eps, e.eps_unit, e.linf, e.linf_measured, e.seed, e.original_sha, e.adversarial_sha, e.record,
		i.width, i.height
		FROM entries e LEFT JOIN images i ON i.sha256 = coalesce(e.adversarial_sha, e.original_sha)
		WHERE e.slug = ?`, slug).Scan(&id, &e.Slug, &hash, &kind, &created, &e.Title, &e.GibbonVersion,
		&e.Attack, &e.Eps, &e.EpsUnit, &e.LInf, &linfMeasured, &e.Seed, &origSHA, &adSHA, &rec, &width, &height)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load gallery entry: %w", err)
	}
	e.Kind = Kind(kind)
	e.CreatedAt = time.UnixMilli(created).UTC()
	if linfMeasured.Valid {
		v := linfMeasured.Float64
		e.LInfMeasured = &v
	}
	e.OriginalSHA, e.AdversarialSHA = origSHA.String, adSHA.String
	e.Width, e.Height = int(width.Int64), int(height.Int64)
	var r record
	if err := json.Unmarshal([]byte(rec), &r); err != nil {
		return nil, nil, fmt.Errorf("load gallery entry %s: record: %w", slug, err)
	}
	e.Params, e.Predictions, e.Timings, e.Payload = r.Params, r.Predictions, r.Timings, r.Payload
	e.L2, e.Runtime, e.Provider, e.Imported = r.L2, r.Runtime, r.Provider, r.Imported
	if e.Predictions == nil {
		e.Predictions = []DefencePrediction{}
	}

	rows, err := q.QueryContext(ctx, "SELECT name, sha256, attacked FROM entry_models WHERE entry_id = ? ORDER BY position", id)
	if err != nil {
		return nil, nil, fmt.Errorf("load gallery entry %s: %w", slug, err)
	}
	for rows.Next() {
		var m ModelRef
		if err := rows.Scan(&m.Name, &m.SHA256, &m.Attacked); err != nil {
			rows.Close()
			return nil, nil, err
		}
		e.Models = append(e.Models, m)
	}
	if err := closeRows(rows); err != nil {
		return nil, nil, fmt.Errorf("load gallery entry %s: %w", slug, err)
	}

	rows, err = q.QueryContext(ctx, "SELECT step, loss, top1 FROM steps WHERE entry_id = ? ORDER BY step", id)
	if err != nil {
		return nil, nil, fmt.Errorf("load gallery entry %s: %w", slug, err)
	}
	e.Steps = []Step{}
	for rows.Next() {
		var st Step
		var top1 string
		if err := rows.Scan(&st.Step, &st.Loss, &top1); err != nil {
			rows.Close()
			return nil, nil, err
		}
		if err := json.Unmarshal([]byte(top1), &st.Top1); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("load gallery entry %s: step %d: %w", slug, st.Step, err)
		}
		e.Steps = append(e.Steps, st)
	}
	if err := closeRows(rows); err != nil {
		return nil, nil, fmt.Errorf("load gallery entry %s: %w", slug, err)
	}
	return &e, hash, nil
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

// Image returns a stored PNG by its SHA-256 (lower-case hex).
func (s *Store) Image(ctx context.Context, sha string) ([]byte, error) {
	if !ValidSHA(sha) {
		return nil, ErrNotFound
	}
	var data []byte
	err := conn{s.r, s.d}.QueryRowContext(ctx, "SELECT png FROM images WHERE sha256 = ?", sha).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	return data, nil
}

// Images returns the entry's two PNGs (nil where it has none).
func (s *Store) Images(ctx context.Context, e *Entry) (original, adversarial []byte, err error) {
	if e.OriginalSHA != "" {
		if original, err = s.Image(ctx, e.OriginalSHA); err != nil {
			return nil, nil, err
		}
	}
	if e.AdversarialSHA != "" {
		if adversarial, err = s.Image(ctx, e.AdversarialSHA); err != nil {
			return nil, nil, err
		}
	}
	return original, adversarial, nil
}
