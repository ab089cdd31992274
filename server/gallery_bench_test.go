package server

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

// BenchmarkGalleryPages renders the gallery's pages from a gallery of 100,000
// entries (GIBBON_BENCH_ENTRIES overrides; the seeded file is built once and
// cached in the user cache directory), through the whole Echo stack in-process.
// Besides ns/op it reports p50 and p99 per request.
func BenchmarkGalleryPages(b *testing.B) {
	ctx := context.Background()
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("GIBBON_BENCH_ENTRIES")); err == nil && v > 0 {
		n = v
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	src, err := gallerytest.SeededFile(ctx, filepath.Join(cache, "gibbon", "bench"), n, b.Logf)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), gallery.FileName)
	if err := gallerytest.CopyFile(src, path); err != nil {
		b.Fatal(err)
	}
	store, err := gallery.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	dir := modelDir(b)
	srv, err := New(Deps{Config: DefaultConfig(), Log: slog.New(slog.DiscardHandler), Models: loadModels(b, dir),
		Samples: []fs.FS{os.DirFS(filepath.Join(dir, "samples"))}, Gallery: store})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	get := func(b *testing.B, path string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: status %d", path, rec.Code)
		}
	}

	db, err := sql.Open("sqlite", path+"?_query_only=1")
	if err != nil {
		b.Fatal(err)
	}
	var slugs []string
	rows, err := db.Query("SELECT slug FROM entries ORDER BY random() LIMIT 2000")
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		slugs = append(slugs, s)
	}
	rows.Close()
	db.Close()
	var cursors []string
	for c := ""; ; {
		p, err := store.List(ctx, gallery.ListOptions{Cursor: c, Limit: gallery.MaxPageSize})
		if err != nil {
			b.Fatal(err)
		}
		if p.Next == "" {
			break
		}
		c = p.Next
		cursors = append(cursors, c)
	}
	b.Logf("gallery of %d entries, %d sample slugs, %d page cursors", n, len(slugs), len(cursors))
	rng := rand.New(rand.NewPCG(3, 4))

	run := func(b *testing.B, next func(i int) string) {
		var lat []time.Duration
		i := 0
		for b.Loop() {
			p := next(i)
			i++
			t := time.Now()
			get(b, p)
			lat = append(lat, time.Since(t))
		}
		slices.Sort(lat)
		q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
		b.ReportMetric(q(0.5), "p50-µs")
		b.ReportMetric(q(0.99), "p99-µs")
	}
	b.Run("Permalink", func(b *testing.B) {
		run(b, func(i int) string { return "/g/" + slugs[i%len(slugs)] })
	})
	b.Run("IndexFirstPage", func(b *testing.B) {
		run(b, func(int) string { return "/gallery" })
	})
	b.Run("IndexAnyPage", func(b *testing.B) {
		run(b, func(int) string { return "/gallery?after=" + cursors[rng.IntN(len(cursors))] })
	})
	b.Run("IndexFiltered", func(b *testing.B) {
		run(b, func(int) string {
			return "/gallery?" + url.Values{"model": {"mnist-robust"}, "attack": {"pgd"}, "eps": {"8/255"},
				"after": {cursors[rng.IntN(len(cursors))]}}.Encode()
		})
	})
	b.Run("Image", func(b *testing.B) {
		var shas []string
		for _, s := range slugs[:100] {
			e, err := store.Get(ctx, s)
			if err != nil {
				b.Fatal(err)
			}
			shas = append(shas, e.AdversarialSHA)
		}
		run(b, func(i int) string { return fmt.Sprintf("/gallery/img/%s.png", shas[i%len(shas)]) })
	})
}
