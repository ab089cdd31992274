package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
	"gibbon/gallery/pgtest"
)

// With --db postgres://… a web node keeps no state: it serves the permalinks
// another node saved, at once, and writes nothing to its data directory.
func TestServeOnPostgresServesAnotherNodesEntries(t *testing.T) {
	ctx := context.Background()
	db := pgtest.NewSchema(t)
	data := filepath.Join(t.TempDir(), "state")
	base, logs, stop := startServe(t, "--db", db, "--data", data)

	nodeA, err := gallery.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer nodeA.Close()
	e := gallerytest.Run(1, gallerytest.Options{Title: "saved on node A"})
	rec, err := nodeA.Save(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	page := get(t, base+"/g/"+rec.Slug)
	if !strings.Contains(string(page), "saved on node A") {
		t.Fatalf("the permalink page does not show the entry node A saved:\n%.500s", page)
	}
	if png := get(t, base+"/g/"+rec.Slug+"/adversarial.png"); !bytes.Equal(png, e.Adversarial) {
		t.Fatal("the adversarial image differs from the one node A saved")
	}
	if !strings.Contains(logs.String(), `"backend":"postgres"`) {
		t.Errorf("the log does not say the gallery is on PostgreSQL:\n%s", logs.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a web node on PostgreSQL made its data directory: %v", err)
	}
}

// A wrong or unreachable database stops `gibbon serve` at once: one line on
// stderr, exit code 1, no password in it.
func TestServeStopsAtOnceOnABadDatabase(t *testing.T) {
	good, err := url.Parse(pgtest.NewSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	noDB := *good
	noDB.Path = "/no_such_db"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	for db, says := range map[string]string{
		"postgres://gibbon:secret@" + closed + "/gallery": "connection refused",
		noDB.String(): `database "no_such_db" does not exist`,
		"postgress://gibbon:secret@db.internal/gallery": "is not a gallery",
	} {
		data := filepath.Join(t.TempDir(), "state")
		var stderr bytes.Buffer
		code := Main(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--db", db, "--data", data}, io.Discard, &stderr)
		msg := stderr.String()
		if code != 1 || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "gibbon: open gallery") ||
			!strings.Contains(msg, says) || strings.Contains(msg, "secret") {
			t.Errorf("--db %s: exit %d, stderr %q: want one line saying %q, without the password", db, code, msg, says)
		}
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return body
}
