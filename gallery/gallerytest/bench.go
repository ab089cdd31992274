package gallerytest

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"gibbon/gallery"
)

// BenchEntries is the gallery size the benchmarks run against: 100,000 entries, or
// GIBBON_BENCH_ENTRIES.
func BenchEntries() int {
	if n, err := strconv.Atoi(os.Getenv("GIBBON_BENCH_ENTRIES")); err == nil && n > 0 {
		return n
	}
	return 100000
}

// BenchStore opens a private copy of the seeded gallery of BenchEntries entries
// (built once and cached in the user cache directory), closed when tb ends.
func BenchStore(tb testing.TB) (*gallery.Store, int) {
	tb.Helper()
	ctx := context.Background()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	n := BenchEntries()
	src, err := SeededFile(ctx, filepath.Join(cache, "gibbon", "bench"), n, tb.Logf)
	if err != nil {
		tb.Fatal(err)
	}
	dst := filepath.Join(tb.TempDir(), gallery.FileName)
	if err := CopyFile(src, dst); err != nil {
		tb.Fatal(err)
	}
	s, err := gallery.Open(ctx, dst)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, n
}

// RandomSlugs returns k of s's slugs (all, if it holds fewer) in a random
// order that is the same on every run.
func RandomSlugs(tb testing.TB, s *gallery.Store, k int) []string {
	tb.Helper()
	var all []string
	for c := ""; ; {
		p, err := s.List(context.Background(), gallery.ListOptions{Cursor: c, Limit: gallery.MaxPageSize})
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range p.Entries {
			all = append(all, e.Slug)
		}
		if c = p.Next; c == "" {
			break
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all[:min(k, len(all))]
}

// PageCursors returns the cursor of every page after the first of the unfiltered
// listing, in order, so that benchmarks measure deep pages too.
func PageCursors(tb testing.TB, s *gallery.Store) []string {
	tb.Helper()
	var cursors []string
	for c := ""; ; {
		p, err := s.List(context.Background(), gallery.ListOptions{Cursor: c, Limit: gallery.MaxPageSize})
		if err != nil {
			tb.Fatal(err)
		}
		if p.Next == "" {
			return cursors
		}
		c = p.Next
		cursors = append(cursors, c)
	}
}

// Latencies records one duration per operation and reports p50 and p99.
type Latencies []time.Duration

// Time runs f and records how long it took.
func (l *Latencies) Time(f func()) {
	t := time.Now()
	f()
	*l = append(*l, time.Since(t))
}

// Report adds the p50 and p99 metrics (µs) to b.
func (l Latencies) Report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	q := func(p float64) float64 { return float64(s[int(p*float64(len(s)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}
