package server

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"gibbon/gallery"
)

// Point 2: files made per request from an entry's images are bounded. Their size
// is checked from the record before any work (larger entries keep their stored
// images); they are made a few at a time, with a short line, and the rest told to
// come back; they stream out whole and correct.
func TestGeneratedDownloadsAreBounded(t *testing.T) {
	f := newExplorerFixture(t, nil)
	big := savedEntry(t, f, 2100, 2100) // 4.4 MP: over the bound
	for _, file := range []string{"perturbation.npy", "perturbation.png", "export.zip"} {
		resp, body := do(t, client(t), http.MethodGet, f.ts.URL+"/g/"+big+"/"+file, http.Header{"Accept": {"application/json"}}, nil)
		var e map[string]string
		json.Unmarshal([]byte(body), &e)
		what := file
		if file == "perturbation.png" {
			what = "its perturbation map or preview card"
		}
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(e["error"], "2100×2100 pixels; "+what+" is made only for images up to 4.2 MP") {
			t.Errorf("%s of a 2100×2100 entry: %d %q", file, resp.StatusCode, e["error"])
		}
	}
	if resp, _ := do(t, client(t), http.MethodGet, f.ts.URL+"/g/"+big+"/original.png", nil, nil); resp.StatusCode != 200 {
		t.Errorf("the large entry's original.png: %d", resp.StatusCode)
	}

	slug := savedEntry(t, f, 64, 48)
	e, err := f.srv.gallery.Get(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	orig, adv, err := f.srv.gallery.Images(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	p, err := gallery.NewPerturbation(orig, adv)
	if err != nil {
		t.Fatal(err)
	}
	resp, npy := do(t, client(t), http.MethodGet, f.ts.URL+"/g/"+slug+"/perturbation.npy", nil, nil)
	if resp.StatusCode != 200 || npy != string(p.NPY()) || resp.Header.Get("Content-Length") != strconv.Itoa(len(npy)) {
		t.Fatalf("perturbation.npy: %d, %d bytes (length header %q), want the %d bytes of the perturbation",
			resp.StatusCode, len(npy), resp.Header.Get("Content-Length"), len(p.NPY()))
	}
	resp, zipped := do(t, client(t), http.MethodGet, f.ts.URL+"/g/"+slug+"/export.zip", nil, nil)
	z, err := zip.NewReader(strings.NewReader(zipped), int64(len(zipped)))
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("export.zip: %d %v", resp.StatusCode, err)
	}
	for _, zf := range z.File {
		if zf.Name != "perturbation.npy" {
			continue
		}
		r, _ := zf.Open()
		inZip, _ := io.ReadAll(r)
		if !bytes.Equal(inZip, p.NPY()) {
			t.Fatal("the zip's perturbation.npy differs from the perturbation")
		}
	}

	// A full line: the next download is told to come back, not queued.
	f.srv.downloads = newGate(1, 0)
	release, err := f.srv.downloads.acquire(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, client(t), http.MethodGet, f.ts.URL+"/g/"+slug+"/export.zip", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Too many downloads are being prepared") {
		t.Fatalf("a download beyond the cap: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	release()
	if resp, _ := do(t, client(t), http.MethodGet, f.ts.URL+"/g/"+slug+"/perturbation.png", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("a download once a place is free: %d", resp.StatusCode)
	}
}
