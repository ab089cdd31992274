package server

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"gibbon/gallery/gallerytest"
)

// BenchmarkGalleryPages renders the gallery's pages from a gallery of 100,000
// entries (GIBBON_BENCH_ENTRIES overrides; the seeded file is built once and
// cached in the user cache directory), through the whole Echo stack in-process.
// Besides ns/op it reports p50 and p99 per request.
func BenchmarkGalleryPages(b *testing.B) {
	ctx := context.Background()
	store, n := gallerytest.BenchStore(b)
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

	slugs := gallerytest.RandomSlugs(b, store, 2000)
	cursors := gallerytest.PageCursors(b, store)
	b.Logf("gallery of %d entries, %d sample slugs, %d page cursors", n, len(slugs), len(cursors))
	rng := rand.New(rand.NewPCG(3, 4))

	run := func(b *testing.B, next func(i int) string) {
		var l gallerytest.Latencies
		i := 0
		for b.Loop() {
			p := next(i)
			i++
			l.Time(func() { get(b, p) })
		}
		l.Report(b)
	}
	b.Run("Permalink", func(b *testing.B) {
		run(b, func(i int) string { return "/g/" + slugs[i%len(slugs)] })
	})
	// The pictures a permalink draws from its stored images (not revalidated).
	b.Run("Card", func(b *testing.B) {
		run(b, func(i int) string { return "/g/" + slugs[i%len(slugs)] + "/card.png" })
	})
	b.Run("PerturbationMap", func(b *testing.B) {
		run(b, func(i int) string { return "/g/" + slugs[i%len(slugs)] + "/perturbation.png?gain=2" })
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
