package gallery_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

func BenchmarkGallery(b *testing.B) {
	ctx := context.Background()
	s, n := gallerytest.BenchStore(b)
	b.Logf("gallery of %d entries", n)

	b.Run("Save", func(b *testing.B) {
		var l gallerytest.Latencies
		i := 0
		for b.Loop() {
			e := gallerytest.Mixed(n + i) // prepared outside the timed part
			e.CreatedAt = time.Time{}
			i++
			l.Time(func() {
				if _, err := s.Save(ctx, e); err != nil {
					b.Fatal(err)
				}
			})
		}
		l.Report(b)
	})

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
