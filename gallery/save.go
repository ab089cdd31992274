package gallery

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Save checks e, stores it in one transaction and returns its slug and secret
// delete token. e is updated with what the store filled in: Slug, CreatedAt when
// zero, image checksums and LInfMeasured.
func (s *Store) Save(ctx context.Context, e *Entry) (Receipt, error) {
	p, err := prepare(e)
	if err != nil {
		return Receipt{}, err
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = s.now()
	}
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Millisecond)
	token, hash := newToken()
	err = s.writeTx(ctx, func(tx conn) error {
		for range 5 {
			e.Slug = s.newSlug()
			if fresh, err := insert(ctx, tx, e, p, hash); err != nil || fresh {
				return err
			}
		}
		return fmt.Errorf("no free slug after 5 tries")
	})
	if err != nil {
		e.Slug = ""
		return Receipt{}, fmt.Errorf("save gallery entry: %w", err)
	}
	return Receipt{Slug: e.Slug, DeleteToken: token}, nil
}

// writeTx runs fn in a write transaction. On SQLite it is immediate (the write
// lock is taken at BEGIN, so a busy file waits here rather than failing on the
// first write); on PostgreSQL writers run side by side, ordering their locks
// (images, then facets in sorted order) so they never deadlock.
func (s *Store) writeTx(ctx context.Context, fn func(conn) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(conn{tx, s.d}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.writes.Add(1)
	return nil
}

// readTx begins a read-only transaction that sees one snapshot throughout.
func (s *Store) readTx(ctx context.Context) (*sql.Tx, conn, error) {
	tx, err := s.r.BeginTx(ctx, s.d.readTx)
	if err != nil {
		return nil, conn{}, err
	}
	return tx, conn{tx, s.d}, nil
}

// insert writes a prepared entry under e.Slug: images first (once each), then the
// entry, its models, steps and facet counts. It reports false, having written
// nothing but images, when another entry has the slug already.
func insert(ctx context.Context, tx conn, e *Entry, p *prepared, deleteHash []byte) (bool, error) {
	var origSHA, advSHA any
	if p.orig != nil {
		origSHA = p.orig.sha
	}
	if p.adv != nil {
		advSHA = p.adv.sha
	}
	if err := lockImages(ctx, tx, tx.d.useImage, e.OriginalSHA, e.AdversarialSHA); err != nil {
		return false, err
	}
	for _, im := range []*imageInfo{p.orig, p.adv} {
		if im == nil {
			continue
		}
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO images (sha256, png, width, height, channels) VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
			im.sha, im.png, im.width, im.height, im.channels); err != nil {
			return false, fmt.Errorf("store image: %w", err)
		}
	}
	var linfMeasured any
	if p.linfMeasured != nil {
		linfMeasured = *p.linfMeasured
	}
	var id int64
	err := tx.QueryRowContext(ctx, `INSERT INTO entries (slug, delete_hash, kind, created_at, title, gibbon_version,
		model, attack, eps, eps_unit, linf, linf_measured, seed, original_label, adversarial_label,
		original_sha, adversarial_sha, step_count, model_count, record)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (slug) DO NOTHING RETURNING id`,
		e.Slug, deleteHash, string(e.Kind), e.CreatedAt.UnixMilli(), p.title, e.GibbonVersion,
		p.model, e.Attack, e.Eps, e.EpsUnit, e.LInf, linfMeasured, e.Seed, p.origLabel, p.advLabel,
		origSHA, advSHA, len(e.Steps), len(e.Models), string(p.record)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store entry: %w", err)
	}
	created := e.CreatedAt.UnixMilli()
	var models, steps, facets []any
	for i, m := range e.Models {
		models = append(models, id, i, m.Name, m.SHA256, m.Attacked, created, e.Attack, e.Eps, e.EpsUnit)
	}
	if err := insertRows(ctx, tx, "entry_models (entry_id, position, name, sha256, attacked, created_at, attack, eps, eps_unit)", 9, models, ""); err != nil {
		return false, fmt.Errorf("store models: %w", err)
	}
	for i, st := range e.Steps {
		steps = append(steps, id, st.Step, st.Loss, string(p.steps[i]))
	}
	if err := insertRows(ctx, tx, "steps (entry_id, step, loss, top1)", 4, steps, ""); err != nil {
		return false, fmt.Errorf("store steps: %w", err)
	}
	for _, f := range facetsOf(e) {
		facets = append(facets, f[0], f[1], 1)
	}
	if err := insertRows(ctx, tx, "facets (facet, value, count)", 3, facets,
		" ON CONFLICT (facet, value) DO UPDATE SET count = facets.count + 1"); err != nil {
		return false, fmt.Errorf("store facets: %w", err)
	}
	return true, nil
}

// maxRowsPerInsert bounds one INSERT's rows (and so its placeholders, which
// both databases limit).
const maxRowsPerInsert = 100

// insertRows inserts rows of width values each, flattened in args, with as few
// statements as maxRowsPerInsert allows: on PostgreSQL each statement is a
// round trip, so one per row made a save of 20 steps wait for 20. suffix ends
// each statement (an ON CONFLICT clause).
func insertRows(ctx context.Context, tx conn, into string, width int, args []any, suffix string) error {
	row := "(" + strings.Repeat("?, ", width-1) + "?)"
	for len(args) > 0 {
		n := min(len(args)/width, maxRowsPerInsert)
		q := "INSERT INTO " + into + " VALUES " + strings.Repeat(row+", ", n-1) + row + suffix
		if _, err := tx.ExecContext(ctx, q, args[:n*width]...); err != nil {
			return err
		}
		args = args[n*width:]
	}
	return nil
}

// lockImages runs lock (the dialect's useImage or dropImage; none if empty)
// for each image in SHA order, the one order every writer takes them in.
// Empty SHAs are skipped.
func lockImages(ctx context.Context, tx conn, lock string, shas ...string) error {
	if lock == "" {
		return nil
	}
	shas = slices.DeleteFunc(slices.Clone(shas), func(sha string) bool { return sha == "" })
	slices.Sort(shas)
	for _, sha := range slices.Compact(shas) {
		if _, err := tx.ExecContext(ctx, lock, imageLockKey(sha)); err != nil {
			return fmt.Errorf("lock image: %w", err)
		}
	}
	return nil
}

// facetsOf lists the filter values an entry counts towards, sorted: writers
// lock facet rows in this order.
func facetsOf(e *Entry) [][2]string {
	var out [][2]string
	for _, m := range e.Models {
		out = append(out, [2]string{"model", m.Name})
	}
	if e.Attack != "" {
		out = append(out, [2]string{"attack", e.Attack})
	}
	out = append(out, [2]string{"eps", FormatEps(e.Eps, e.EpsUnit)})
	slices.SortFunc(out, func(a, b [2]string) int {
		return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
	})
	return out
}

// FormatEps writes eps with its unit, e.g. "8/255" or "0.3/1"; ParseEps reads it.
func FormatEps(eps float64, unit string) string {
	return strconv.FormatFloat(eps, 'g', -1, 64) + unit
}
