package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
	"gibbon/inference"
	"gibbon/inference/engine"
)

// Permalinks of real runs: a PGD run on the explorer's websocket (real ORT), saved
// by its key into a real SQLite gallery, then its page, pictures, plan and replay.

// pgdWatched is PGD on the sample seven against cosine, watched by cosine-b first,
// then cosine behind a 1-bit depth reduction, then cosine itself: the attacked
// model's verdict is not the first one.
func pgdWatched() map[string]any {
	m := pgd(96, 20)
	m["watch"] = []map[string]any{{"model": "cosine-b"}, {"model": "cosine", "defence": "bits", "param": 1}, {"model": "cosine"}}
	return m
}

// savedRun runs start on the explorer's websocket, saves the run by its key and
// returns the stored entry and the run's final frame.
func savedRun(t *testing.T, f *fixture, start map[string]any) (*gallery.Entry, wsMsg) {
	t.Helper()
	c := dial(t, f)
	c.send(start)
	done, msgs := c.until("done", 60*time.Second)
	var last wsMsg
	for _, m := range msgs {
		if m.Type == "frame" {
			last = m
		}
	}
	if !last.Final || !done.Saveable {
		t.Fatalf("the run did not end with a saveable final frame: %+v", done)
	}
	resp, saved := saveRun(t, f, done.Key, "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("saving the run: %d", resp.StatusCode)
	}
	e, err := f.store.Get(context.Background(), saved.Slug)
	if err != nil {
		t.Fatal(err)
	}
	return e, last
}

func getDoc(t *testing.T, f *galleryFixture, path string, want int) *goquery.Document {
	t.Helper()
	resp := f.do(t, http.MethodGet, path, nil, nil)
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d", path, resp.StatusCode, want)
	}
	d, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func cell(d *goquery.Document, key string) (value, note string) {
	row := d.Find(`[data-testid="param-` + key + `"]`)
	return strings.TrimSpace(row.Find(".value").Text()), strings.TrimSpace(row.Find(".note").Text())
}

func TestPermalinkOfARun(t *testing.T) {
	f := &galleryFixture{newExplorerFixture(t, nil)}
	e, _ := savedRun(t, f.fixture, pgdWatched())
	d := getDoc(t, f, "/g/"+e.Slug, http.StatusOK)

	// Every defence as a card, the transform included, each with both verdicts.
	cards := d.Find(`[data-testid="defence-card"]`)
	if cards.Length() != 3 || len(e.Predictions) != 3 {
		t.Fatalf("%d defence cards for %d stored verdicts, want 3", cards.Length(), len(e.Predictions))
	}
	bits := d.Find(`[data-testid="defence-card"][data-defence="` + e.Predictions[1].DefenceName() + `"]`)
	if got := bits.Find(`[data-testid="defence-transform"]`).Text(); !strings.Contains(got, "1-bit") {
		t.Errorf("the transform defence's badge %q", got)
	}
	attacked := d.Find(`[data-testid="defence-card"][data-defence="cosine"]`)
	if attacked.Find(`[data-testid="defence-attacked"]`).Length() != 1 {
		t.Error("the attacked model's card is not marked attacked")
	}
	cos := e.Predictions[2]
	flip := cos.Original[0].Label + " → " + cos.Adversarial[0].Label
	if got := attacked.Find(`[data-testid="fooled"]`).Text(); got != "fooled: "+flip {
		t.Errorf("the attacked model's flip %q, want fooled: %s", got, flip)
	}
	cards.Each(func(_ int, c *goquery.Selection) {
		if c.Find(`[data-testid="verdict-Clean"] [data-testid="prediction"]`).Length() == 0 ||
			c.Find(`[data-testid="verdict-Adversarial"] [data-testid="prediction"]`).Length() == 0 {
			t.Errorf("card %s lacks a clean or an adversarial verdict", c.AttrOr("data-defence", "?"))
		}
	})
	checkParams(t, d, e)
	checkDistances(t, d, e)

	// Charts: the loss, and each defence's top-1 and true-class probability.
	if n := d.Find(`[data-testid="chart-loss"] polyline`).Length(); n != 1 {
		t.Errorf("loss chart with %d lines", n)
	}
	for i := range 3 {
		if n := d.Find(fmt.Sprintf(`[data-testid="chart-confidence-%d"] polyline`, i)).Length(); n != 2 {
			t.Errorf("confidence chart %d has %d lines, want top-1 and true class", i, n)
		}
	}
	if pts := d.Find(`[data-testid="chart-loss"] polyline`).AttrOr("points", ""); len(strings.Fields(pts)) != len(e.Steps) {
		t.Errorf("the loss line has %d points for %d recorded steps", len(strings.Fields(pts)), len(e.Steps))
	}
	if rerun := d.Find(`[data-testid="rerun"]`).AttrOr("href", ""); rerun != "/attack?from="+e.Slug {
		t.Errorf("re-run link %q", rerun)
	}
	if d.Find(`[data-testid="verify"]`).AttrOr("data-url", "") != "/api/gallery/"+e.Slug+"/verify" {
		t.Error("no Verify button")
	}
	checkOpenGraph(t, f, d, e, flip+", cosine")
}

// checkParams reads the parameters table: every number with its unit.
func checkParams(t *testing.T, d *goquery.Document, e *gallery.Entry) {
	t.Helper()
	want := map[string]*regexp.Regexp{
		"attack":   regexp.MustCompile(`^PGD$`),
		"eps":      regexp.MustCompile(`^96/255$`),
		"alpha":    regexp.MustCompile(`^12/255$`), // 2.5 ε / 20 steps
		"steps":    regexp.MustCompile(`^20 asked, 20 run$`),
		"restarts": regexp.MustCompile(`^1$`),
		"loss":     regexp.MustCompile(`^cross-entropy$`),
		"target":   regexp.MustCompile(`^untargeted$`),
		"label":    regexp.MustCompile(`^7$`),
		"seed":     regexp.MustCompile(`^3$`),
		"image":    regexp.MustCompile(`^sample digit-7-0\.png$`),
		"input":    regexp.MustCompile(`^28×28 gray images on \[0,1\]`),
		"runtime":  regexp.MustCompile(`^ONNX Runtime 1\.24\.1 · cpu$`),
		"version":  regexp.MustCompile(`.`),
	}
	for key, re := range want {
		if v, _ := cell(d, key); !re.MatchString(v) {
			t.Errorf("parameter %s is %q, want %s", key, v, re)
		}
	}
	if _, note := cell(d, "eps"); !strings.Contains(note, "0.3765 of the input range") {
		t.Errorf("ε's note %q: it must say the fraction of the range", note)
	}
	if _, note := cell(d, "alpha"); !strings.Contains(note, "0.04706 of the input range") {
		t.Errorf("α's note %q", note)
	}
	if _, note := cell(d, "runtime"); !strings.Contains(note, "cosine gradient: cpu") {
		t.Errorf("runtime note %q: each pass and where it ran", note)
	}
	if d.Find(`[data-testid="param-imported"]`).Length() != 0 || d.Find(`[data-testid="entry-imported"]`).Length() != 0 {
		t.Error("a run this server computed is marked imported")
	}
	shas := map[string]string{}
	d.Find(`[data-testid="entry-model"]`).Each(func(_ int, s *goquery.Selection) {
		shas[s.AttrOr("data-model", "")] = s.Find(`[data-testid="model-sha"]`).Text()
	})
	for _, m := range e.Models {
		if shas[m.Name] != m.SHA256[:12] {
			t.Errorf("model %s shown with checksum %q, want %s", m.Name, shas[m.Name], m.SHA256[:12])
		}
	}
}

// checkDistances compares the L∞ and L2 rows with the record and the images.
func checkDistances(t *testing.T, d *goquery.Document, e *gallery.Entry) {
	t.Helper()
	linf, _ := cell(d, "linf")
	measured, _ := cell(d, "linf-measured")
	if linf != gallery.FormatEps(e.LInf, e.EpsUnit) || measured != fmt.Sprintf("%g/255", *e.LInfMeasured) || e.LInf > 96 || e.LInf < 1 {
		t.Errorf("L∞ recorded %q, measured %q (stored %g, %g)", linf, measured, e.LInf, *e.LInfMeasured)
	}
	l2, _ := cell(d, "l2")
	l2m, _ := cell(d, "l2-measured")
	if l2 != num4(e.L2) || l2m != l2 || e.L2 <= 0 {
		t.Errorf("L2 recorded %q, measured %q; the record says %g", l2, l2m, e.L2)
	}
}

// checkOpenGraph checks the tags link previews read, and the card they point at.
func checkOpenGraph(t *testing.T, f *galleryFixture, d *goquery.Document, e *gallery.Entry, flip string) {
	t.Helper()
	og := map[string]string{}
	d.Find(`meta[property]`).Each(func(_ int, s *goquery.Selection) { og[s.AttrOr("property", "")] = s.AttrOr("content", "") })
	card := f.ts.URL + "/g/" + e.Slug + "/card.png"
	if og["og:image"] != card || og["og:image:width"] != "1200" || og["og:image:height"] != "630" || og["og:url"] != f.ts.URL+"/g/"+e.Slug {
		t.Errorf("Open Graph image tags %v", og)
	}
	if desc := og["og:description"]; !strings.HasPrefix(desc, "PGD, ε 96/255: "+flip) {
		t.Errorf("og:description %q, want the attacked model's flip %q", desc, flip)
	}
	if tc, ok := d.Find(`meta[name="twitter:card"]`).Attr("content"); !ok || tc != "summary_large_image" {
		t.Errorf("twitter:card %q", tc)
	}
	if _, ok := og["twitter:card"]; ok {
		t.Error("twitter:card given as property=: Twitter reads name=")
	}
	if got := d.Find(`[data-testid="entry-flip"] strong`).Text(); got != flip {
		t.Errorf("the page's flip line %q, want %q", got, flip)
	}
}

func TestPermalinkCardAndPerturbationMap(t *testing.T) {
	f := &galleryFixture{newExplorerFixture(t, nil)}
	e, final := savedRun(t, f.fixture, pgdWatched())
	base := "/g/" + e.Slug

	resp := f.do(t, http.MethodGet, base+"/card.png", nil, nil)
	cardPNG := []byte(readAll(t, resp.Body))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || resp.Header.Get("ETag") == "" {
		t.Fatalf("card: status %d, headers %v", resp.StatusCode, resp.Header)
	}
	card, err := png.Decode(bytes.NewReader(cardPNG))
	if err != nil {
		t.Fatalf("the card does not decode: %v", err)
	}
	if b := card.Bounds(); b.Dx() < 1200 || b.Dy() < 630 {
		t.Fatalf("card %v, want at least 1200×630", b)
	}
	if r := f.do(t, http.MethodGet, base+"/card.png", nil, http.Header{"If-None-Match": {resp.Header.Get("ETag")}}); r.StatusCode != http.StatusNotModified {
		t.Errorf("card revalidation: %d, want 304", r.StatusCode)
	}
	// The adversarial panel is the stored image enlarged without smoothing: each
	// source pixel is a square of its exact gray.
	adv := decodeGray(t, final.images["adv"])
	gap := (cardWidth - 3*cardPanel) / 4
	box := fitSquare(image.Rect(2*gap+cardPanel, cardTop, 2*gap+2*cardPanel, cardTop+cardPanel), adv.Bounds())
	z := box.Dx() / adv.Bounds().Dx()
	for y := range 28 {
		for x := range 28 {
			for _, off := range [][2]int{{0, 0}, {z - 1, z - 1}} {
				r, g, b, _ := card.At(box.Min.X+x*z+off[0], box.Min.Y+y*z+off[1]).RGBA()
				if v := adv.GrayAt(x, y).Y; uint8(r>>8) != v || uint8(g>>8) != v || uint8(b>>8) != v {
					t.Fatalf("card pixel for (%d,%d)+%v is %d,%d,%d; the image has %d", x, y, off, r>>8, g>>8, b>>8, v)
				}
			}
		}
	}

	// The map at gain 1 is the explorer's own final perturbation picture.
	resp = f.do(t, http.MethodGet, base+"/perturbation.png?gain=1", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("perturbation map: %d", resp.StatusCode)
	}
	if got, want := decodeNRGBA(t, []byte(readAll(t, resp.Body))), decodeNRGBA(t, final.images["perturbation"]); !bytes.Equal(got.Pix, want.Pix) {
		t.Error("the permalink's map differs from the explorer's at the same gain")
	}
	resp = f.do(t, http.MethodGet, base+"/perturbation.png?gain=4", nil, nil)
	if m := decodeNRGBA(t, []byte(readAll(t, resp.Body))); resp.StatusCode != http.StatusOK || m.Bounds().Dx() != 28 {
		t.Fatalf("map at gain 4: %d", resp.StatusCode)
	}
	for _, bad := range []string{"0.1", "17", "abc", "NaN", "-1"} {
		if r := f.do(t, http.MethodGet, base+"/perturbation.png?gain="+bad, nil, nil); r.StatusCode != http.StatusBadRequest {
			t.Errorf("gain %s: status %d, want 400", bad, r.StatusCode)
		}
	}
	d := getDoc(t, f, base+"?gain=4", http.StatusOK)
	if src := d.Find(`[data-testid="image-perturbation"]`).AttrOr("src", ""); src != base+"/perturbation.png?gain=4" {
		t.Errorf("the page at gain 4 shows %q", src)
	}
	if sel := d.Find(`[data-testid="gain"] option[selected]`).AttrOr("value", ""); sel != "4" {
		t.Errorf("the gain control shows %q", sel)
	}
	if full := d.Find(`#full-at`).Text(); full != "24" {
		t.Errorf("full colour from ±%s/255 at gain 4, want 96/4 = 24", full)
	}
	getDoc(t, f, base+"?gain=99", http.StatusBadRequest)
}

func decodeNRGBA(t *testing.T, data []byte) *image.NRGBA {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out := image.NewNRGBA(img.Bounds())
	for y := range img.Bounds().Dy() {
		for x := range img.Bounds().Dx() {
			out.Set(x, y, img.At(x, y))
		}
	}
	return out
}

func TestPlanAPIReRunsTheRun(t *testing.T) {
	f := &galleryFixture{newExplorerFixture(t, nil)}
	e, final := savedRun(t, f.fixture, pgdWatched())
	resp := f.do(t, http.MethodGet, "/api/gallery/"+e.Slug+"/plan", nil, nil)
	var plan struct {
		planResponse
		Start map[string]any `json:"start"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&plan); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("plan: %d %v", resp.StatusCode, err)
	}
	stored, err := engine.ParamsOf(e)
	if err != nil {
		t.Fatal(err)
	}
	if mustJSON(t, plan.Plan) != mustJSON(t, stored.Plan) || plan.ImageURL != imageURL(e.OriginalSHA) ||
		plan.Eps255 != 96 || plan.Alpha255 != 0 || plan.Steps != 20 || len(plan.Notes) != 0 {
		t.Fatalf("plan answer %+v", plan.planResponse)
	}
	if plan.Start["source"] != "gallery" || plan.Start["entry"] != e.Slug || plan.Start["seed"] != float64(3) || len(plan.Start["watch"].([]any)) != 3 {
		t.Fatalf("start message %v", plan.Start)
	}
	// Started as the explorer would, it makes the stored adversarial image again.
	plan.Start["type"] = "start"
	c := dial(t, f.fixture)
	c.send(plan.Start)
	_, msgs := c.until("done", 60*time.Second)
	var last wsMsg
	for _, m := range msgs {
		if m.Type == "frame" {
			last = m
		}
	}
	if !bytes.Equal(last.images["adv"], final.images["adv"]) {
		t.Error("re-running the plan made another adversarial image")
	}

	for _, tc := range []struct {
		name   string
		e      *gallery.Entry
		status int
		says   string
	}{
		{"sweep", sweepEntry(), http.StatusUnprocessableEntity, "only single runs are replayed"},
		{"no plan", entryFor(t, 1), http.StatusUnprocessableEntity, "records no plan"},
	} {
		r := f.save(t, tc.e)
		resp := f.do(t, http.MethodGet, "/api/gallery/"+r.Slug+"/plan", nil, nil)
		var body struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != tc.status || !strings.Contains(body.Error, tc.says) {
			t.Errorf("%s: %d %q, want %d saying %q", tc.name, resp.StatusCode, body.Error, tc.status, tc.says)
		}
	}
	if r := f.do(t, http.MethodGet, "/api/gallery/0000000000/plan", nil, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown entry: %d", r.StatusCode)
	}
}

// sweepEntry is a stored sweep: images, but no plan of one run.
func sweepEntry() *gallery.Entry {
	e := gallerytest.Run(7, gallerytest.Options{})
	e.Kind, e.Params, e.Payload = gallery.KindSweep, json.RawMessage(`{"kind":"image"}`), json.RawMessage(`{"points":[]}`)
	return e
}

// TestPermalinkOfANetworkAndAStoppedRun covers the runs without steps of their own
// (an attack network's one pass) and runs stopped midway: each page says so, and
// each replays bit for bit.
func TestPermalinkOfANetworkAndAStoppedRun(t *testing.T) {
	net := modelFile{inference.ModelEntry{Name: "pushnet", File: "pushnet.onnx", Task: inference.TaskAttackNetwork,
		Input: mnistContract, Attack: &inference.AttackNetInfo{Eps: []float64{0.1, 0.2, 0.3}, Targets: []string{"cosine"}}}, attackNetModel()}
	f := &galleryFixture{newExplorerFixture(t, nil, net)}
	m := pgd(51, 1)
	m["attack"], m["surrogates"] = "net:pushnet", nil
	netRun, _ := savedRun(t, f.fixture, m)

	// Stopped after its first frame.
	c := dial(t, f.fixture)
	m = pgd(96, 200)
	m["pace_ms"] = 20
	c.send(m)
	c.until("frame", 30*time.Second)
	c.send(map[string]string{"type": "stop"})
	done, _ := c.until("done", 10*time.Second)
	if !done.Stopped || !done.Saveable {
		t.Fatalf("done after stop: %+v", done)
	}
	resp, saved := saveRun(t, f.fixture, done.Key, "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("saving the stopped run: %d", resp.StatusCode)
	}

	d := getDoc(t, f, "/g/"+netRun.Slug, http.StatusOK)
	for key, want := range map[string]string{"attack": "Attack network pushnet", "steps": "one forward pass", "head": "ε 0.2 (51/255)", "eps": "51/255"} {
		if v, _ := cell(d, key); v != want {
			t.Errorf("network run: %s is %q, want %q", key, v, want)
		}
	}
	if desc := d.Find(`meta[property="og:description"]`).AttrOr("content", ""); !strings.HasPrefix(desc, "Attack network pushnet, ε 51/255: 7 → ") {
		t.Errorf("network run's og:description %q", desc)
	}
	d = getDoc(t, f, "/g/"+saved.Slug, http.StatusOK)
	v, note := cell(d, "steps")
	if !regexp.MustCompile(`^200 asked, \d+ run$`).MatchString(v) || !strings.Contains(note, "stopped after") || !strings.Contains(note, "You stopped the run") {
		t.Errorf("stopped run: steps %q, note %q", v, note)
	}

	s := newSession(t, f.fixture)
	for _, slug := range []string{netRun.Slug, saved.Slug} {
		if status, v, msg := verifyAs(t, s, slug); status != http.StatusOK || !v.Reproduced {
			t.Errorf("verify %s: %d %s %+v", slug, status, msg, v)
		}
	}
	resp = f.do(t, http.MethodGet, "/api/gallery/"+saved.Slug+"/plan", nil, nil)
	var plan planResponse
	if err := json.NewDecoder(resp.Body).Decode(&plan); err != nil || len(plan.Notes) != 1 || !strings.Contains(plan.Notes[0], "stopped after") {
		t.Errorf("the stopped run's plan notes %q (%v)", plan.Notes, err)
	}
}
