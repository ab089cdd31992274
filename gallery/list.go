package gallery

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Filter narrows the index. Empty fields match everything.
type Filter struct {
	Model  string // any model of the entry, attacked or defence
	Attack string
	Kind   Kind
	// Eps with its unit, as FormatEps writes it ("8/255"); empty for any.
	Eps string
}

// ListOptions asks for one page of the index, newest first.
type ListOptions struct {
	Filter
	// Cursor is the Next of the previous page; empty for the first page.
	Cursor string
	Limit  int // 1..MaxPageSize; 0 means DefaultPageSize
}

// Page sizes.
const (
	DefaultPageSize = 24
	MaxPageSize     = 200
)

// Page is one page of summaries; Next is empty on the last page.
type Page struct {
	Entries []Summary
	Next    string
}

// List returns a page of entries, newest first. Pages are keyset-paginated on
// (created_at, id) through an index for each filter, so a page costs the same at
// entry 100,000 as at entry 10.
func (s *Store) List(ctx context.Context, opt ListOptions) (Page, error) {
	limit := opt.Limit
	if limit == 0 {
		limit = DefaultPageSize
	}
	if limit < 0 || limit > MaxPageSize {
		return Page{}, invalid("limit", "want 1 to %d", MaxPageSize)
	}
	query, args, err := s.d.listQuery(opt.Filter, opt.Cursor, limit+1)
	if err != nil {
		return Page{}, err
	}
	rows, err := conn{s.r, s.d}.QueryContext(ctx, query, args...)
	if err != nil {
		return Page{}, fmt.Errorf("list gallery: %w", err)
	}
	var (
		page Page
		ids  []int64
	)
	for rows.Next() {
		var (
			sm             Summary
			id, created    int64
			kind           string
			origSHA, adSHA *string
		)
		if err := rows.Scan(&id, &sm.Slug, &kind, &created, &sm.Title, &sm.Model, &sm.Attack, &sm.Eps, &sm.EpsUnit,
			&sm.LInf, &sm.OriginalLabel, &sm.AdversarialLabel, &origSHA, &adSHA); err != nil {
			rows.Close()
			return Page{}, fmt.Errorf("list gallery: %w", err)
		}
		sm.Kind = Kind(kind)
		sm.CreatedAt = time.UnixMilli(created).UTC()
		if origSHA != nil {
			sm.OriginalSHA = *origSHA
		}
		if adSHA != nil {
			sm.AdversarialSHA = *adSHA
		}
		page.Entries = append(page.Entries, sm)
		ids = append(ids, id)
	}
	if err := closeRows(rows); err != nil {
		return Page{}, fmt.Errorf("list gallery: %w", err)
	}
	if len(page.Entries) > limit {
		page.Entries = page.Entries[:limit]
		last := page.Entries[limit-1]
		page.Next = encodeCursor(last.CreatedAt.UnixMilli(), ids[limit-1])
	}
	return page, nil
}

const summaryColumns = `e.id, e.slug, e.kind, e.created_at, e.title, e.model, e.attack, e.eps, e.eps_unit,
	e.linf, e.original_label, e.adversarial_label, e.original_sha, e.adversarial_sha`

// listQuery builds the page query. It walks the index whose equality columns
// are the filters', followed by (created_at, id): entry_models' with a model
// filter, else entries'. Only a kind filter combined with others is checked row
// by row (kinds other than run are rare; runs are most of the gallery).
func (d *dialect) listQuery(f Filter, cursor string, limit int) (string, []any, error) {
	var (
		where []string
		args  []any
	)
	if f.Kind != "" {
		switch f.Kind {
		case KindRun, KindSweep, KindMatrix:
		default:
			return "", nil, invalid("kind", "%q is not run, sweep or matrix", clip(string(f.Kind)))
		}
	}
	var eps float64
	var unit string
	if f.Eps != "" {
		var err error
		if eps, unit, err = ParseEps(f.Eps); err != nil {
			return "", nil, err
		}
	}
	var after struct {
		created, id int64
		ok          bool
	}
	if cursor != "" {
		c, id, err := decodeCursor(cursor)
		if err != nil {
			return "", nil, err
		}
		after.created, after.id, after.ok = c, id, true
	}
	if f.Model != "" {
		where = append(where, "m.name = ?")
		args = append(args, f.Model)
	}
	// With a model filter, attack and eps are matched on entry_models' copies.
	t := "e."
	if f.Model != "" {
		t = "m."
	}
	if f.Attack != "" {
		where = append(where, t+"attack = ?")
		args = append(args, f.Attack)
	}
	if f.Eps != "" {
		where = append(where, t+"eps = ?", t+"eps_unit = ?")
		args = append(args, eps, unit)
	}
	if f.Kind != "" {
		// Kind has three values: walk its index only when nothing narrower is asked
		// (unindexed keeps the planner from choosing entries_kind over the model,
		// attack or eps index).
		if f.Model != "" || f.Attack != "" || f.Eps != "" {
			where = append(where, fmt.Sprintf(d.unindexed, "e.kind")+" = ?")
		} else {
			where = append(where, "e.kind = ?")
		}
		args = append(args, string(f.Kind))
	}
	var q string
	if f.Model != "" {
		if after.ok {
			where = append(where, "(m.created_at, m.entry_id) < (?, ?)")
			args = append(args, after.created, after.id)
		}
		q = "SELECT " + summaryColumns + " FROM entry_models m JOIN entries e ON e.id = m.entry_id WHERE " +
			strings.Join(where, " AND ") + " ORDER BY m.created_at DESC, m.entry_id DESC LIMIT ?"
	} else {
		if after.ok {
			where = append(where, "(e.created_at, e.id) < (?, ?)")
			args = append(args, after.created, after.id)
		}
		q = "SELECT " + summaryColumns + " FROM entries e"
		if len(where) > 0 {
			q += " WHERE " + strings.Join(where, " AND ")
		}
		q += " ORDER BY e.created_at DESC, e.id DESC LIMIT ?"
	}
	return q, append(args, limit), nil
}

// Cursors are "<created ms>-<id>" in base 36: opaque to users, checked on the way in.
func encodeCursor(created, id int64) string {
	return strconv.FormatInt(created, 36) + "-" + strconv.FormatInt(id, 36)
}

func decodeCursor(s string) (int64, int64, error) {
	bad := invalid("cursor", "not a page cursor from this gallery")
	if len(s) > 40 {
		return 0, 0, bad
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, bad
	}
	created, err1 := strconv.ParseInt(a, 36, 64)
	id, err2 := strconv.ParseInt(b, 36, 64)
	if err1 != nil || err2 != nil || created < 0 || id < 1 {
		return 0, 0, bad
	}
	return created, id, nil
}

// ParseEps reads "8/255" or "0.3/1" (FormatEps's form).
func ParseEps(s string) (float64, string, error) {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return 0, "", invalid("eps", "want a value with its unit, like 8/255 or 0.3/1")
	}
	v, err := strconv.ParseFloat(s[:i], 64)
	unit := s[i:]
	if err != nil || !finite(v) || v < 0 || (unit != Unit255 && unit != Unit1) {
		return 0, "", invalid("eps", "want a value with its unit, like 8/255 or 0.3/1")
	}
	return v, unit, nil
}

// FacetValue is one filter choice and how many entries have it.
type FacetValue struct {
	Value string
	Count int
}

// Facets are the index's filter choices.
type Facets struct {
	Models, Attacks, Eps []FacetValue
}

// Facets lists every model, attack and eps in the gallery with entry counts,
// from a small table kept by save and delete (no scan of the entries).
func (s *Store) Facets(ctx context.Context) (Facets, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT facet, value, count FROM facets")
	if err != nil {
		return Facets{}, fmt.Errorf("gallery facets: %w", err)
	}
	var f Facets
	for rows.Next() {
		var name string
		var v FacetValue
		if err := rows.Scan(&name, &v.Value, &v.Count); err != nil {
			rows.Close()
			return Facets{}, err
		}
		switch name {
		case "model":
			f.Models = append(f.Models, v)
		case "attack":
			f.Attacks = append(f.Attacks, v)
		case "eps":
			f.Eps = append(f.Eps, v)
		}
	}
	if err := closeRows(rows); err != nil {
		return Facets{}, err
	}
	// Names in byte order (as SQLite sorts; PostgreSQL's order depends on the
	// database's collation), eps in numeric order within each unit ("4/255"
	// before "12/255").
	byValue := func(a, b FacetValue) int { return strings.Compare(a.Value, b.Value) }
	slices.SortFunc(f.Models, byValue)
	slices.SortFunc(f.Attacks, byValue)
	slices.SortFunc(f.Eps, func(a, b FacetValue) int {
		av, au, _ := ParseEps(a.Value)
		bv, bu, _ := ParseEps(b.Value)
		return cmp.Or(strings.Compare(au, bu), cmp.Compare(av, bv), byValue(a, b))
	})
	return f, nil
}
