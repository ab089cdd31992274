package gallery_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
	"gibbon/gallery/pgtest"
)

// Two web nodes share one PostgreSQL gallery: what one saves, the other serves
// at once, and a delete on one is seen by the other.
func TestSaveOnOneNodeIsVisibleOnAnother(t *testing.T) {
	ctx := context.Background()
	target := pgtest.NewSchema(t)
	a, b := openAt(t, target), openAt(t, target)
	for i := range 5 {
		e := gallerytest.Run(uint64(i), gallerytest.Options{Attack: []string{"fgsm", "pgd"}[i%2]})
		rec := mustSave(t, a, e)
		got, err := b.Get(ctx, rec.Slug)
		if err != nil {
			t.Fatalf("save %d on node A, get on node B: %v", i, err)
		}
		if got.AdversarialSHA != e.AdversarialSHA {
			t.Fatalf("node B sees adversarial %s, A saved %s", got.AdversarialSHA, e.AdversarialSHA)
		}
		if _, err := b.Image(ctx, e.AdversarialSHA); err != nil {
			t.Fatalf("node B cannot serve the image A saved: %v", err)
		}
		p, err := b.List(ctx, gallery.ListOptions{Limit: 1})
		if err != nil || len(p.Entries) != 1 || p.Entries[0].Slug != rec.Slug {
			t.Fatalf("node B's newest entry is not the one A just saved: %+v, %v", p.Entries, err)
		}
		if i == 4 {
			if err := b.Delete(ctx, rec.Slug, rec.DeleteToken); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Get(ctx, rec.Slug); !errors.Is(err, gallery.ErrNotFound) {
				t.Fatalf("node A still serves an entry node B deleted: %v", err)
			}
		}
	}
	f, err := b.Facets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.Attacks) != "[{fgsm 2} {pgd 2}]" {
		t.Fatalf("node B's attack facets %v, want fgsm×2 pgd×2", f.Attacks)
	}
	mustCheck(t, a)
}

// Several nodes save and delete at once, entries sharing an image and every
// facet: no save fails, the shared image stays while any entry uses it, and
// facet counts match the entries.
func TestConcurrentSavesAndDeletesFromSeveralNodes(t *testing.T) {
	eachBackend(t, testConcurrentSavesAndDeletesFromSeveralNodes)
}

func testConcurrentSavesAndDeletesFromSeveralNodes(t *testing.T, be backend) {
	ctx := context.Background()
	target := be.newTarget(t)
	nodes := []*gallery.Store{openAt(t, target), openAt(t, target), openAt(t, target)}
	shared := gallerytest.Run(0, gallerytest.Options{}).Original
	const writers, perWriter = 6, 8
	var (
		mu   sync.Mutex
		kept []string
		errs = make(chan error, writers*perWriter)
		done sync.WaitGroup
	)
	for w := range writers {
		done.Go(func() {
			s := nodes[w%len(nodes)]
			for i := range perWriter {
				e := gallerytest.Run(uint64(w*100+i), gallerytest.Options{
					Models: []string{"mnist-cnn", "mnist-mlp", "robust"}[i%2:], Attack: []string{"fgsm", "pgd"}[w%2]})
				e.Original = shared
				rec, err := s.Save(ctx, e)
				if err != nil {
					errs <- err
					return
				}
				if i%2 == 1 { // every other entry is deleted again, by another node
					if err := nodes[(w+1)%len(nodes)].Delete(ctx, rec.Slug, rec.DeleteToken); err != nil {
						errs <- fmt.Errorf("delete: %w", err)
						return
					}
					continue
				}
				mu.Lock()
				kept = append(kept, rec.Slug)
				mu.Unlock()
			}
		})
	}
	done.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := countRows(t, target, "entries"); n != len(kept) || n != writers*perWriter/2 {
		t.Fatalf("%d entries stored, %d kept", n, len(kept))
	}
	// One shared original and one adversarial per kept entry.
	if n := countRows(t, target, "images"); n != len(kept)+1 {
		t.Fatalf("%d images stored, want %d", n, len(kept)+1)
	}
	f, err := nodes[0].Facets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := writers * perWriter / 2
	if fmt.Sprint(f.Eps) != fmt.Sprintf("[{8/255 %d}]", want) || fmt.Sprint(f.Attacks) != fmt.Sprintf("[{fgsm %d} {pgd %d}]", want/2, want/2) {
		t.Fatalf("facets %+v after %d saves and %d deletes", f, writers*perWriter, want)
	}
	mustCheck(t, nodes[1])
}

// A gallery moves between the backends both ways: every entry, image, slug,
// time and delete token survives.
func TestExportImportAcrossBackends(t *testing.T) {
	ctx := context.Background()
	sqlite := openAt(t, filepath.Join(t.TempDir(), gallery.FileName))
	var receipts []gallery.Receipt
	for i := range 8 {
		e := gallerytest.Mixed(i)
		if i == 2 || i == 3 {
			e.Original = gallerytest.Mixed(1).Original // shared by three entries
		}
		receipts = append(receipts, mustSave(t, sqlite, e))
	}
	pg := openAt(t, pgtest.NewSchema(t))
	back := openAt(t, filepath.Join(t.TempDir(), gallery.FileName))
	hops := []struct {
		name     string
		from, to *gallery.Store
	}{{"sqlite to postgres", sqlite, pg}, {"postgres to sqlite", pg, back}}
	for _, hop := range hops {
		dir := filepath.Join(t.TempDir(), "export")
		out, err := hop.from.Export(ctx, dir, nil)
		if err != nil {
			t.Fatalf("%s: export: %v", hop.name, err)
		}
		in, err := hop.to.Import(ctx, dir, nil)
		if err != nil {
			t.Fatalf("%s: import: %v", hop.name, err)
		}
		// 16 images, 2 of them repeats; import counts each entry's.
		if out.Entries != 8 || out.Images != 14 || in.Entries != 8 || in.Images != 16 {
			t.Fatalf("%s: exported %+v, imported %+v", hop.name, out, in)
		}
		mustCheck(t, hop.to)
	}
	for _, r := range receipts {
		a, err := sqlite.Get(ctx, r.Slug)
		if err != nil {
			t.Fatal(err)
		}
		ao, aa, _ := sqlite.Images(ctx, a)
		for _, s := range []*gallery.Store{pg, back} {
			b, err := s.Get(ctx, r.Slug)
			if err != nil {
				t.Fatalf("%s: %v", s.Backend(), err)
			}
			if !b.Imported {
				t.Fatalf("%s: entry %s not marked imported", s.Backend(), r.Slug)
			}
			b.Imported = false
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: entry %s differs:\n%+v\n%+v", s.Backend(), r.Slug, a, b)
			}
			bo, ba, err := s.Images(ctx, b)
			if err != nil || string(ao) != string(bo) || string(aa) != string(ba) {
				t.Fatalf("%s: entry %s images differ (%v)", s.Backend(), r.Slug, err)
			}
		}
	}
	for _, r := range receipts[:2] { // the saver's delete link works after both moves
		if err := back.Delete(ctx, r.Slug, r.DeleteToken); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"list", "facets"} {
		a, b := listing(t, name, pg), listing(t, name, sqlite)
		if a != b {
			t.Fatalf("%s differs between postgres and sqlite:\n%s\n%s", name, a, b)
		}
	}
}

// listing prints a store's first page or facets, to compare stores.
func listing(t *testing.T, what string, s *gallery.Store) string {
	t.Helper()
	ctx := context.Background()
	if what == "facets" {
		f, err := s.Facets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(f)
	}
	p, err := s.List(ctx, gallery.ListOptions{Limit: gallery.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(p)
}

// A wrong or unreachable PostgreSQL URL fails at once, in one line, without
// the password.
func TestOpenPostgresErrors(t *testing.T) {
	ctx := context.Background()
	good, err := url.Parse(pgtest.NewSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	noDB := *good
	noDB.Path = "/no_such_db"
	noRole := *good
	q := noRole.Query()
	q.Set("user", "nobody_here")
	noRole.RawQuery = q.Encode()
	closed := closedPort(t)
	silent := silentServer(t)
	cases := []struct {
		name, target, want string
	}{
		{"nothing listening", "postgres://gibbon:hunter2@" + closed + "/gallery", "refused"},
		{"password as a parameter", "postgres://gibbon@" + closed + "/gallery?password=hunter2&sslpassword=hunter2", "refused"},
		{"server never answers", "postgres://gibbon:hunter2@" + silent + "/gallery?connect_timeout=1", "timeout"},
		{"no such database", noDB.String(), `database "no_such_db" does not exist`},
		{"no such role", noRole.String(), `role "nobody_here" does not exist`},
		{"bad port", "postgres://gibbon:hunter2@localhost:99999999/gallery", "invalid port"},
		{"bad parameter", "postgres://localhost/gallery?sslmode=sometimes", "sslmode"},
		{"unknown scheme", "mysql://gibbon:hunter2@localhost/gallery", "not a gallery"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := gallery.Open(ctx, tc.target)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "hunter2") {
				t.Fatalf("error %q: want one line mentioning %q, without the password", msg, tc.want)
			}
		})
	}
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// silentServer accepts connections and never says a word.
func silentServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// Nodes saving and deleting entries that share one image, so that it comes
// and goes: a delete never removes the image under a concurrent save, and the
// last delete leaves nothing behind.
func TestSharedImageComesAndGoesUnderConcurrentSaves(t *testing.T) {
	eachBackend(t, testSharedImageComesAndGoes)
}

func testSharedImageComesAndGoes(t *testing.T, be backend) {
	ctx := context.Background()
	target := be.newTarget(t)
	nodes := []*gallery.Store{openAt(t, target), openAt(t, target)}
	shared := gallerytest.Run(0, gallerytest.Options{}).Original
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := range 15 {
				e := gallerytest.Run(uint64(w*1000+i), gallerytest.Options{})
				e.Original = shared
				rec, err := nodes[w%2].Save(ctx, e)
				if err == nil {
					err = nodes[(w+1)%2].Delete(ctx, rec.Slug, rec.DeleteToken)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, table := range []string{"entries", "images", "facets", "steps", "entry_models"} {
		if n := countRows(t, target, table); n != 0 {
			t.Errorf("%d rows left in %s after every entry was deleted", n, table)
		}
	}
}

// Nodes deleting at once the last entries with a facet value (sharing no
// image): the counts go down by one per delete and the last one out removes
// the value, however the deletes interleave.
func TestConcurrentDeletesCountFacetsDown(t *testing.T) {
	eachBackend(t, testConcurrentDeletesCountFacetsDown)
}

func testConcurrentDeletesCountFacetsDown(t *testing.T, be backend) {
	ctx := context.Background()
	target := be.newTarget(t)
	nodes := []*gallery.Store{openAt(t, target), openAt(t, target), openAt(t, target)}
	keep := mustSave(t, nodes[0], gallerytest.Run(999, gallerytest.Options{Attack: "kept"}))
	for round := range 20 {
		var receipts []gallery.Receipt
		for i := range len(nodes) {
			e := gallerytest.Run(uint64(round*10+i), gallerytest.Options{Attack: fmt.Sprint("attack-", round)})
			receipts = append(receipts, mustSave(t, nodes[0], e))
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, len(nodes))
		for i, s := range nodes {
			wg.Go(func() {
				<-start
				errs <- s.Delete(ctx, receipts[i].Slug, receipts[i].DeleteToken)
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	f, err := nodes[1].Facets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f) != "{[{mnist-cnn 1} {mnist-mlp 1}] [{kept 1}] [{8/255 1}]}" {
		t.Fatalf("facets with one entry (%s) left: %v", keep.Slug, f)
	}
	mustCheck(t, nodes[2])
}
