package gallery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

func TestListPagesNewestFirstWithFilters(t *testing.T) {
	eachBackend(t, testListPagesNewestFirstWithFilters)
}

func testListPagesNewestFirstWithFilters(t *testing.T, be backend) {
	ctx := context.Background()
	s, _ := openStore(t, be)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type saved struct {
		slug, attack, eps string
		models            []string
		kind              gallery.Kind
		at                time.Time
	}
	var all []saved
	for i := range 45 {
		attack := []string{"fgsm", "pgd", "attack-net"}[i%3]
		eps := []float64{4, 8}[i%2]
		models := []string{"mnist-cnn", "mnist-mlp"}
		if i%5 == 0 {
			models = []string{"robust-cnn"}
		}
		e := gallerytest.Run(uint64(i), gallerytest.Options{Attack: attack, Eps: eps, Models: models})
		// Groups of three share a millisecond: the id breaks ties.
		e.CreatedAt = base.Add(time.Duration(i/3) * time.Second)
		if i%9 == 4 {
			e.Kind = gallery.KindMatrix
			e.Payload = json.RawMessage(`{"rows": []}`)
		}
		rec := mustSave(t, s, e)
		all = append(all, saved{rec.Slug, attack, gallery.FormatEps(eps, gallery.Unit255), models, e.Kind, e.CreatedAt})
	}
	// Newest first means reverse save order (ids grow with saves).
	want := func(keep func(saved) bool) []string {
		var out []string
		for i := len(all) - 1; i >= 0; i-- {
			if keep(all[i]) {
				out = append(out, all[i].slug)
			}
		}
		return out
	}
	has := func(list []string, x string) bool {
		for _, v := range list {
			if v == x {
				return true
			}
		}
		return false
	}
	cases := []struct {
		name string
		f    gallery.Filter
		keep func(saved) bool
	}{
		{"all", gallery.Filter{}, func(saved) bool { return true }},
		{"attack", gallery.Filter{Attack: "pgd"}, func(x saved) bool { return x.attack == "pgd" }},
		{"eps", gallery.Filter{Eps: "8/255"}, func(x saved) bool { return x.eps == "8/255" }},
		{"attack+eps", gallery.Filter{Attack: "fgsm", Eps: "4/255"}, func(x saved) bool { return x.attack == "fgsm" && x.eps == "4/255" }},
		{"model (defence too)", gallery.Filter{Model: "mnist-mlp"}, func(x saved) bool { return has(x.models, "mnist-mlp") }},
		{"model+attack+eps", gallery.Filter{Model: "mnist-cnn", Attack: "attack-net", Eps: "8/255"}, func(x saved) bool {
			return has(x.models, "mnist-cnn") && x.attack == "attack-net" && x.eps == "8/255"
		}},
		{"kind", gallery.Filter{Kind: gallery.KindMatrix}, func(x saved) bool { return x.kind == gallery.KindMatrix }},
		{"kind+attack", gallery.Filter{Kind: gallery.KindRun, Attack: "pgd"}, func(x saved) bool { return x.kind == gallery.KindRun && x.attack == "pgd" }},
		{"nothing", gallery.Filter{Model: "nope"}, func(saved) bool { return false }},
	}
	for _, tc := range cases {
		for _, limit := range []int{1, 4, 7, 200} {
			t.Run(fmt.Sprintf("%s/limit%d", tc.name, limit), func(t *testing.T) {
				var got []string
				cursor := ""
				for pages := 0; ; pages++ {
					if pages > 100 {
						t.Fatal("pagination does not end")
					}
					p, err := s.List(ctx, gallery.ListOptions{Filter: tc.f, Cursor: cursor, Limit: limit})
					if err != nil {
						t.Fatal(err)
					}
					if len(p.Entries) > limit {
						t.Fatalf("page of %d, limit %d", len(p.Entries), limit)
					}
					if p.Next != "" && len(p.Entries) != limit {
						t.Fatalf("short page (%d of %d) with a next cursor", len(p.Entries), limit)
					}
					for _, e := range p.Entries {
						got = append(got, e.Slug)
					}
					if p.Next == "" {
						break
					}
					cursor = p.Next
				}
				w := want(tc.keep)
				if strings.Join(got, ",") != strings.Join(w, ",") {
					t.Fatalf("got %d entries %v\nwant %d %v", len(got), got, len(w), w)
				}
			})
		}
	}

	p, err := s.List(ctx, gallery.ListOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	sm := p.Entries[0]
	last := all[len(all)-1]
	if sm.Slug != last.slug || sm.Model != "mnist-cnn" || sm.Attack != last.attack || sm.OriginalLabel != "7" ||
		sm.AdversarialLabel != "3" || !sm.CreatedAt.Equal(last.at) || !gallery.ValidSHA(sm.AdversarialSHA) {
		t.Fatalf("summary %+v does not describe the newest entry %+v", sm, last)
	}

	f, err := s.Facets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.Eps) != "[{4/255 23} {8/255 22}]" || fmt.Sprint(f.Attacks) != "[{attack-net 15} {fgsm 15} {pgd 15}]" ||
		fmt.Sprint(f.Models) != "[{mnist-cnn 36} {mnist-mlp 36} {robust-cnn 9}]" {
		t.Fatalf("facets %+v", f)
	}
}

func TestListRejectsBadQueries(t *testing.T) { eachBackend(t, testListRejectsBadQueries) }

func testListRejectsBadQueries(t *testing.T, be backend) {
	ctx := context.Background()
	s, _ := openStore(t, be)
	mustSave(t, s, gallerytest.Run(1, gallerytest.Options{}))
	bad := []gallery.ListOptions{
		{Cursor: "<script>"},
		{Cursor: "zzzzzzzzzzzzzzzzzzzz-1"},
		{Cursor: "1-0"},
		{Limit: -1},
		{Limit: gallery.MaxPageSize + 1},
		{Filter: gallery.Filter{Eps: "8"}},
		{Filter: gallery.Filter{Eps: "8/256"}},
		{Filter: gallery.Filter{Eps: "NaN/255"}},
		{Filter: gallery.Filter{Eps: "-1/1"}},
		{Filter: gallery.Filter{Kind: "drop table"}},
	}
	for _, o := range bad {
		if _, err := s.List(ctx, o); !errors.Is(err, gallery.ErrInvalid) {
			t.Errorf("List(%+v): %v, want ErrInvalid", o, err)
		}
	}
	// Filter values are data, never SQL.
	p, err := s.List(ctx, gallery.ListOptions{Filter: gallery.Filter{Attack: "' OR 1=1 --", Model: `"; DROP TABLE entries; --`}})
	if err != nil || len(p.Entries) != 0 {
		t.Fatalf("hostile filter: %d entries, %v", len(p.Entries), err)
	}
	mustCheck(t, s)
}
