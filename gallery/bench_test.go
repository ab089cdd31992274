package gallery_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
	"gibbon/gallery/pgtest"
)

func BenchmarkGallery(b *testing.B) {
	s, n := gallerytest.BenchStore(b)
	benchStore(b, s, n)
}

// BenchmarkGalleryPostgres runs the same operations on PostgreSQL as it ships
// (fsync and synchronous commits on), seeded with BenchEntries entries; then
// saves again with synchronous_commit off, which like SQLite's WAL with
// synchronous=NORMAL keeps the database consistent on a crash but may lose the
// last commits.
func BenchmarkGalleryPostgres(b *testing.B) {
	ctx := context.Background()
	target := pgtest.NewSchema(b)
	s := openBench(b, target)
	n := gallerytest.BenchEntries()
	if err := gallerytest.Fill(ctx, s, n, 4, b.Logf); err != nil {
		b.Fatal(err)
	}
	if err := gallery.Analyze(ctx, s); err != nil {
		b.Fatal(err)
	}
	pgtest.Durable(b)
	benchStore(b, s, n)

	async := openBench(b, target+"&synchronous_commit=off")
	b.Run("SaveAsyncCommit", func(b *testing.B) { benchSave(b, async, 2*n) })
}

func openBench(b *testing.B, target string) *gallery.Store {
	s, err := gallery.Open(context.Background(), target)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// benchSave saves Mixed(from), Mixed(from+1), … with fresh times.
func benchSave(b *testing.B, s *gallery.Store, from int) {
	ctx := context.Background()
	var l gallerytest.Latencies
	i := 0
	for b.Loop() {
		e := gallerytest.Mixed(from + i) // prepared outside the timed part
		e.CreatedAt = time.Time{}
		i++
		l.Time(func() {
			if _, err := s.Save(ctx, e); err != nil {
				b.Fatal(err)
			}
		})
	}
	l.Report(b)
}

// benchStore measures saves, permalink reads, index pages and facets on a
// gallery of n entries.
func benchStore(b *testing.B, s *gallery.Store, n int) {
	ctx := context.Background()
	b.Logf("%s gallery of %d entries", s.Backend(), n)

	b.Run("Save", func(b *testing.B) { benchSave(b, s, n) })

	slugs := gallerytest.RandomSlugs(b, s, 1000)
	b.Run("Get", func(b *testing.B) {
		var l gallerytest.Latencies
		i := 0
		for b.Loop() {
			slug := slugs[i%len(slugs)]
			i++
			l.Time(func() {
				if _, err := s.Get(ctx, slug); err != nil {
					b.Fatal(err)
				}
			})
		}
		l.Report(b)
	})

	// Cursors spread through the whole gallery, so deep pages are measured too.
	cursors := gallerytest.PageCursors(b, s)
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
			var l gallerytest.Latencies
			for b.Loop() {
				c := ""
				if k := rng.IntN(len(cursors) + 1); k < len(cursors) {
					c = cursors[k]
				}
				l.Time(func() {
					if _, err := s.List(ctx, gallery.ListOptions{Filter: bc.f, Cursor: c}); err != nil {
						b.Fatal(err)
					}
				})
			}
			l.Report(b)
		})
	}
	b.Run("Facets", func(b *testing.B) {
		var l gallerytest.Latencies
		for b.Loop() {
			l.Time(func() {
				if _, err := s.Facets(ctx); err != nil {
					b.Fatal(err)
				}
			})
		}
		l.Report(b)
	})
}
