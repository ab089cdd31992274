package gallery_test

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

// benchEntries is the gallery size the benchmarks run against
// (GIBBON_BENCH_ENTRIES overrides; the seeded file is cached between runs).
func benchEntries() int {
	if n, err := strconv.Atoi(os.Getenv("GIBBON_BENCH_ENTRIES")); err == nil && n > 0 {
		return n
	}
	return 100000
}

// benchStore opens a private copy of the cached seeded gallery.
func benchStore(b *testing.B) (*gallery.Store, int) {
	b.Helper()
	ctx := context.Background()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	n := benchEntries()
	src, err := gallerytest.SeededFile(ctx, filepath.Join(cache, "gibbon", "bench"), n, b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	dst := filepath.Join(b.TempDir(), gallery.FileName)
	if err := gallerytest.CopyFile(src, dst); err != nil {
		b.Fatal(err)
	}
	s, err := gallery.Open(ctx, dst)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, n
}

// latencies records one duration per operation and reports p50 and p99.
type latencies []time.Duration

func (l *latencies) time(f func()) {
	t := time.Now()
	f()
	*l = append(*l, time.Since(t))
}

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	q := func(p float64) float64 { return float64(s[int(p*float64(len(s)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

func slugsOf(b *testing.B, s *gallery.Store, k int) []string {
	db, err := sql.Open("sqlite", s.Path()+"?_query_only=1")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT slug FROM entries ORDER BY random() LIMIT ?", k)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var slug string
		rows.Scan(&slug)
		out = append(out, slug)
	}
	return out
}

func BenchmarkGallery(b *testing.B) {
	ctx := context.Background()
	s, n := benchStore(b)
	b.Logf("gallery of %d entries", n)

	b.Run("Save", func(b *testing.B) {
		var l latencies
		i := 0
		for b.Loop() {
			e := gallerytest.Mixed(n + i) // prepared outside the timed part
			e.CreatedAt = time.Time{}
			i++
			l.time(func() {
				if _, err := s.Save(ctx, e); err != nil {
					b.Fatal(err)
				}
			})
		}
		l.report(b)
	})

	slugs := slugsOf(b, s, 1000)
	b.Run("Get", func(b *testing.B) {
		var l latencies
		i := 0
		for b.Loop() {
			slug := slugs[i%len(slugs)]
			i++
			l.time(func() {
				if _, err := s.Get(ctx, slug); err != nil {
					b.Fatal(err)
				}
			})
		}
		l.report(b)
	})

	// Cursors spread through the whole gallery, so deep pages are measured too.
	var cursors []string
	cursor := ""
	for {
		p, err := s.List(ctx, gallery.ListOptions{Cursor: cursor, Limit: gallery.MaxPageSize})
		if err != nil {
			b.Fatal(err)
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
		cursors = append(cursors, cursor)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, bc := range []struct {
		name string
		f    gallery.Filter
	}{
		{"List", gallery.Filter{}},
		{"ListByModel", gallery.Filter{Model: "mnist-robust"}},
		{"ListByAttack", gallery.Filter{Attack: "pgd"}},
		{"ListByAttackEps", gallery.Filter{Attack: "attack-net", Eps: "16/255"}},
		{"ListByModelAttackEps", gallery.Filter{Model: "cifar-vgg", Attack: "fgsm", Eps: "4/255"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var l latencies
			for b.Loop() {
				c := ""
				if k := rng.IntN(len(cursors) + 1); k < len(cursors) {
					c = cursors[k]
				}
				l.time(func() {
					if _, err := s.List(ctx, gallery.ListOptions{Filter: bc.f, Cursor: c}); err != nil {
						b.Fatal(err)
					}
				})
			}
			l.report(b)
		})
	}
	b.Run("Facets", func(b *testing.B) {
		var l latencies
		for b.Loop() {
			l.time(func() {
				if _, err := s.Facets(ctx); err != nil {
					b.Fatal(err)
				}
			})
		}
		l.report(b)
	})
}
