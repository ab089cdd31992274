package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"gibbon/gallery"
)

// Verify replays a saved run with real ORT and compares it with the real SQLite
// gallery's stored images.

// verifyAs posts a Verify as a page with the CSRF token does, and decodes the answer.
func verifyAs(t *testing.T, s *session, slug string) (int, verifyResponse, string) {
	t.Helper()
	resp := s.postJSON("/api/gallery/"+slug+"/verify", nil)
	defer resp.Body.Close()
	var v verifyResponse
	var e struct{ Error string }
	body := readAll(t, resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
	} else {
		json.Unmarshal([]byte(body), &e)
	}
	return resp.StatusCode, v, e.Error
}

// storedCopy is a copy of a stored entry with its images, ready to save again.
func storedCopy(t *testing.T, f *fixture, e *gallery.Entry) *gallery.Entry {
	t.Helper()
	orig, adv, err := f.store.Images(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	c := *e
	c.Slug, c.OriginalSHA, c.AdversarialSHA, c.LInfMeasured = "", "", "", nil
	c.Original, c.Adversarial = orig, adv
	return &c
}

func TestVerifyReproducesASavedRun(t *testing.T) {
	f := newExplorerFixture(t, nil)
	e, _ := savedRun(t, f, pgdWatched())
	s := newSession(t, f)

	status, v, msg := verifyAs(t, s, e.Slug)
	if status != http.StatusOK {
		t.Fatalf("verify: %d %s", status, msg)
	}
	if !v.Reproduced || v.Changed != 0 || v.Values != 28*28 || len(v.Differences) != 0 || !v.Deterministic ||
		!strings.HasPrefix(v.Summary, "Reproduced bit-for-bit") || v.ProviderNote != "" || len(v.Providers) == 0 {
		t.Fatalf("verification of an unaltered run: %+v", v)
	}
	g := &galleryFixture{f}
	if r := g.do(t, http.MethodPost, "/api/gallery/"+e.Slug+"/verify", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site Verify: %d, want 403", r.StatusCode)
	}

	// The same record with an altered adversarial image: 5 values, 3 levels off.
	altered := storedCopy(t, f, e)
	img := decodeGray(t, altered.Adversarial)
	for _, i := range []int{0, 100, 300, 500, 783} {
		if img.Pix[i] < 250 {
			img.Pix[i] += 3
		} else {
			img.Pix[i] -= 3
		}
	}
	altered.Adversarial = pngBytes(t, img)
	rec, err := f.store.Save(context.Background(), altered)
	if err != nil {
		t.Fatal(err)
	}
	status, v, msg = verifyAs(t, s, rec.Slug)
	if status != http.StatusOK || v.Reproduced || v.Changed != 5 || v.MaxDiff != 3 ||
		!strings.Contains(v.Summary, "5 of 784 pixel values differ (by up to 3/255)") {
		t.Fatalf("verification of an altered image: %d %s %+v", status, msg, v)
	}
}

func TestVerifyRefusesWhatItCannotReplay(t *testing.T) {
	f := newExplorerFixture(t, func(c *AttackConfig) { c.MaxRuns, c.MaxQueue = 1, -1 })
	e, _ := savedRun(t, f, pgdWatched())
	s := newSession(t, f)
	save := func(e *gallery.Entry) string {
		t.Helper()
		rec, err := f.store.Save(context.Background(), e)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Slug
	}

	// A model the server lacks, named everywhere the entry names it.
	raw, err := json.Marshal(storedCopy(t, f, e))
	if err != nil {
		t.Fatal(err)
	}
	var retired gallery.Entry
	if err := json.Unmarshal(bytes.ReplaceAll(raw, []byte(`"cosine-b"`), []byte(`"retired-net"`)), &retired); err != nil {
		t.Fatal(err)
	}
	cp := storedCopy(t, f, e)
	retired.Original, retired.Adversarial = cp.Original, cp.Adversarial
	// The attacked model loaded here from another file than the entry's.
	otherFile := storedCopy(t, f, e)
	for i := range otherFile.Models {
		if otherFile.Models[i].Name == "cosine" {
			otherFile.Models[i].SHA256 = strings.Repeat("ab", 32)
		}
	}
	retiredSlug, otherSlug := save(&retired), save(otherFile)
	g := &galleryFixture{f}
	for slug, says := range map[string]string{retiredSlug: "Model retired-net is not loaded on this server.", otherSlug: "Model cosine here is another file"} {
		var plan planResponse
		json.NewDecoder(g.do(t, http.MethodGet, "/api/gallery/"+slug+"/plan", nil, nil).Body).Decode(&plan)
		if len(plan.Notes) != 1 || !strings.HasPrefix(plan.Notes[0], says) {
			t.Errorf("plan notes %q, want one saying %q", plan.Notes, says)
		}
	}
	for _, tc := range []struct {
		name, slug string
		status     int
		says       []string
	}{
		{"missing model", retiredSlug, http.StatusConflict, []string{"retired-net", "not loaded here"}},
		{"other checksum", otherSlug, http.StatusConflict, []string{"cosine", "another file"}},
		{"sweep", save(sweepEntry()), http.StatusUnprocessableEntity, []string{"only single runs are replayed"}},
		{"no plan", save(entryFor(t, 1)), http.StatusUnprocessableEntity, []string{"records no plan"}},
		{"unknown", "0000000000", http.StatusNotFound, []string{"no gallery entry"}},
	} {
		status, _, msg := verifyAs(t, s, tc.slug)
		if status != tc.status {
			t.Errorf("%s: status %d (%s), want %d", tc.name, status, msg, tc.status)
		}
		for _, w := range tc.says {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not say %q", tc.name, msg, w)
			}
		}
	}

	if strings.Contains(f.logs.String(), "level=ERROR") {
		t.Fatalf("a refused Verify was logged as a server error:\n%s", f.logs.String())
	}

	// The explorer's one slot taken and no room to wait: Verify is refused as busy
	// (503, like a busy explorer).
	release, err := f.srv.explorer.queue.acquire(context.Background(), func(int) {})
	if err != nil {
		t.Fatal(err)
	}
	status, _, msg := verifyAs(t, s, e.Slug)
	release()
	if status != http.StatusServiceUnavailable || !strings.Contains(msg, "busy") {
		t.Fatalf("Verify with the queue full: %d %q, want 503 busy", status, msg)
	}
	if status, v, msg := verifyAs(t, s, e.Slug); status != http.StatusOK || !v.Reproduced {
		t.Fatalf("Verify once the slot is free: %d %s %+v", status, msg, v)
	}
}

// TestVerifyNamesProvidersThatPromiseNothing checks the page and the answer for an
// entry recorded on a GPU provider (an operator's import from such a machine).
func TestVerifyNamesProvidersThatPromiseNothing(t *testing.T) {
	f := newExplorerFixture(t, nil)
	e, _ := savedRun(t, f, pgdWatched())
	gpu := storedCopy(t, f, e)
	gpu.Provider, gpu.Imported = "webgpu+cpu", true
	rec, err := f.store.Save(context.Background(), gpu)
	if err != nil {
		t.Fatal(err)
	}
	g := &galleryFixture{f}
	d := getDoc(t, g, "/g/"+rec.Slug, http.StatusOK)
	if note := d.Find(`[data-testid="provider-note"]`).Text(); !strings.Contains(note, "webgpu") || !strings.Contains(note, "does not promise identical results") {
		t.Errorf("provider note %q", note)
	}
	if d.Find(`[data-testid="entry-imported"]`).Length() != 1 || d.Find(`[data-testid="param-imported"]`).Length() != 1 {
		t.Error("an imported entry is not marked imported")
	}
	status, v, msg := verifyAs(t, newSession(t, f), rec.Slug)
	if status != http.StatusOK || !v.Reproduced || v.Deterministic || !strings.Contains(v.ProviderNote, "does not promise identical results") {
		t.Fatalf("verify of a GPU-recorded run replayed on the CPU: %d %s %+v", status, msg, v)
	}
}
