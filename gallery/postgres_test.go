package gallery_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
	"gibbon/gallery/pgtest"
)

// Every filter combination must be answered by walking an index in
// (created_at, id) order, as on SQLite (TestListQueriesWalkAnIndex), and a
// model's entries joined by their primary key.
func TestPostgresListQueriesWalkAnIndex(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, pgtest.NewSchema(t))
	for i := range 50 {
		mustSave(t, s, gallerytest.Mixed(i))
	}
	if err := gallery.Analyze(ctx, s); err != nil {
		t.Fatal(err)
	}
	after := gallerytest.Mixed(20).CreatedAt.UnixMilli()
	for _, model := range []string{"", "mnist-cnn"} {
		for _, attack := range []string{"", "pgd"} {
			for _, eps := range []string{"", "8/255"} {
				for _, kind := range []gallery.Kind{"", gallery.KindRun} {
					for _, cursor := range []string{"", gallery.EncodeCursor(after, 20)} {
						f := gallery.Filter{Model: model, Attack: attack, Eps: eps, Kind: kind}
						plan, err := gallery.ListPlan(ctx, s, f, cursor)
						if err != nil {
							t.Fatal(err)
						}
						if strings.Contains(plan, "Sort") || !strings.Contains(plan, "Index") {
							t.Errorf("filter %+v cursor %q: plan sorts or scans without an index:\n%s", f, cursor, plan)
						}
						for _, c := range []struct {
							on   bool
							want string
						}{
							{model != "", "name ="}, {model != "", "entries_pkey"}, {attack != "", "attack ="}, {eps != "", "eps ="},
							{kind != "" && model == "" && attack == "" && eps == "", "entries_kind"},
						} {
							if c.on && !strings.Contains(plan, c.want) {
								t.Errorf("filter %+v: plan does not seek on %s:\n%s", f, c.want, plan)
							}
						}
					}
				}
			}
		}
	}
}

// Saves whose first slug is taken (by an earlier entry, or by a concurrent
// save on another node) try another; nothing is lost and nothing shares a slug.
func TestSlugCollisionIsRetried(t *testing.T) { eachBackend(t, testSlugCollisionIsRetried) }

func testSlugCollisionIsRetried(t *testing.T, be backend) {
	ctx := context.Background()
	const taken = "000000000000"
	target := be.newTarget(t)
	var nodes []*gallery.Store
	for range 3 {
		s := openAt(t, target)
		gallery.SetSlugSource(s, collidingSlugs(taken))
		nodes = append(nodes, s)
	}
	var wg sync.WaitGroup
	slugs := make(chan string, 12)
	for i := range 12 {
		wg.Go(func() {
			rec, err := nodes[i%3].Save(ctx, gallerytest.Run(uint64(i), gallerytest.Options{}))
			if err != nil {
				t.Error(err)
				return
			}
			slugs <- rec.Slug
		})
	}
	wg.Wait()
	close(slugs)
	seen := map[string]bool{}
	for slug := range slugs {
		if seen[slug] {
			t.Fatalf("slug %s given twice", slug)
		}
		seen[slug] = true
	}
	if len(seen) != 12 || !seen[taken] {
		t.Fatalf("%d distinct slugs (want 12), %s among them: %v", len(seen), taken, seen[taken])
	}
	mustCheck(t, nodes[0])
	// Five taken slugs in a row end the save with an error, not a loop.
	gallery.SetSlugSource(nodes[1], func() string { return taken })
	if _, err := nodes[1].Save(ctx, gallerytest.Run(99, gallerytest.Options{})); err == nil || !strings.Contains(err.Error(), "no free slug") {
		t.Fatalf("save with only taken slugs: %v", err)
	}
}

// collidingSlugs gives slug on every other call, random slugs between.
func collidingSlugs(slug string) func() string {
	var mu sync.Mutex
	calls := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls%2 == 1 {
			return slug
		}
		return gallery.NewSlug()
	}
}
