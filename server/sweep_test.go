package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"image/png"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/gorilla/websocket"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/sweep"
)

// pushnetFile is the explorer tests' stand-in attack network, for sweeps and matrices.
func pushnetFile() modelFile {
	return modelFile{inference.ModelEntry{Name: "pushnet", File: "pushnet.onnx", Task: inference.TaskAttackNetwork,
		Input: mnistContract, Attack: &inference.AttackNetInfo{Eps: []float64{0.1, 0.2, 0.3}, Targets: []string{"cosine"}}}, attackNetModel()}
}

// swClient talks to the sweeps' websocket.
// swClient is a test's end of the sweeps' websocket.
type swClient struct{ socketClient }

// swMsg is any message from the sweeps' websocket.
type swMsg struct {
	Type     string          `json:"type"`
	Run      int             `json:"run"`
	Message  string          `json:"message"`
	Kind     string          `json:"kind"`
	Position int             `json:"position"`
	Done     int             `json:"done"`
	Total    int             `json:"total"`
	Label    int             `json:"label"`
	Clean    string          `json:"clean"`
	Thumb    string          `json:"thumb"`
	Eps      []float64       `json:"eps"`
	Eps255   []float64       `json:"eps_255"`
	Command  string          `json:"command"`
	CSV      string          `json:"csv"`
	Point    sweep.Point     `json:"point"`
	Settings sweep.Settings  `json:"settings"`
	Result   json.RawMessage `json:"result"`
	Key      string          `json:"key"`
	Saveable bool            `json:"saveable"`
	NoSave   string          `json:"no_save"`
	Defences []struct {
		Name, Model, Transform string
	} `json:"defences"`
}

func dialSweep(t testing.TB, f *fixture) *swClient {
	t.Helper()
	return &swClient{dialSocket(t, f, websocket.DefaultDialer, sweepSocketPath, "sweeps")}
}

func (c *swClient) read(timeout time.Duration) swMsg {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	typ, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read from the sweeps: %v", err)
	}
	if typ != websocket.TextMessage {
		c.t.Fatalf("a binary message from the sweeps")
	}
	var m swMsg
	if err := json.Unmarshal(data, &m); err != nil {
		c.t.Fatalf("message %s: %v", data, err)
	}
	return m
}

// until reads up to the first message of type want; an error message fails the test
// unless want is "error".
func (c *swClient) until(want string, timeout time.Duration) (swMsg, []swMsg) {
	c.t.Helper()
	var seen []swMsg
	deadline := time.Now().Add(timeout)
	for {
		m := c.read(time.Until(deadline))
		seen = append(seen, m)
		if m.Type == want {
			return m, seen
		}
		if m.Type == "error" {
			c.t.Fatalf("the sweeps answered an error while waiting for %q: %s", want, m.Message)
		}
	}
}

func imageStart() map[string]any {
	return map[string]any{"type": "start", "source": "sample", "sample": "digit-7-0.png", "settings": map[string]any{
		"kind": "image", "attack": "pgd", "models": []string{"cosine"}, "defences": []string{"cosine", "cosine-b", "cosine+bits:1"},
		"eps": "0:0.45:0.15", "steps": 20, "seed": 3, "label": -1}}
}

// One image: started (with the clean image and the budgets in both units), one point
// per ε in order with its thumbnail, then done with the result, its CSV and a gallery
// draft that saves, whose permalink re-opens the page with the settings.
func TestSweepSocketStreamsAnImageSweep(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dialSweep(t, f)
	c.send(imageStart())
	started, _ := c.until("started", 30*time.Second)
	if started.Kind != "image" || !slices.Equal(started.Eps, []float64{0, 0.15, 0.3, 0.45}) || started.Eps255[3] != 114.75 ||
		started.Label != 7 || !strings.HasPrefix(started.Clean, "data:image/png;base64,") || len(started.Defences) != 3 ||
		started.Defences[2].Name != "cosine + 1-bit" || started.Settings.Image != "digit-7-0.png" {
		t.Fatalf("started: %+v", started)
	}
	var points []swMsg
	var done swMsg
	for done.Type == "" {
		m := c.read(30 * time.Second)
		switch m.Type {
		case "point":
			points = append(points, m)
		case "done":
			done = m
		case "error":
			t.Fatal(m.Message)
		}
	}
	if len(points) != 4 {
		t.Fatalf("%d points", len(points))
	}
	for k, p := range points {
		if p.Point.Index != k || p.Point.Eps != started.Eps[k] || len(p.Point.Defences) != 3 {
			t.Errorf("point %d: %+v", k, p.Point)
		}
		img, err := png.Decode(bytes.NewReader(dataURL(t, p.Thumb)))
		if err != nil || img.Bounds().Dx() != 28 {
			t.Errorf("point %d thumbnail: %v", k, err)
		}
		if p.Point.Linf255 > p.Point.Eps255+1e-6 {
			t.Errorf("point %d moved %g/255 at ε %g/255", k, p.Point.Linf255, p.Point.Eps255)
		}
	}
	if !points[3].Point.Defences[0].Flipped || points[0].Point.Defences[0].Flipped {
		t.Errorf("the attacked model: clean %+v, at ε 0.45 %+v", points[0].Point.Defences[0], points[3].Point.Defences[0])
	}
	var res sweep.ImageResult
	if err := json.Unmarshal(done.Result, &res); err != nil || res.Schema != sweep.SchemaImage || len(res.Points) != 4 {
		t.Fatalf("result %v: %s", err, done.Result)
	}
	rows, err := csv.NewReader(strings.NewReader(done.CSV)).ReadAll()
	if err != nil || !slices.Equal(rows[0], sweep.ImageCSVHeader) || len(rows) != 1+4*3 {
		t.Errorf("CSV %v: %q", err, done.CSV)
	}
	if done.Command != "gibbon sweep digit-7-0.png --model cosine --defences cosine,cosine-b,cosine+bits:1 --attack pgd --eps 0:0.45:0.15 --steps 20 --seed 3" {
		t.Errorf("command %s", done.Command)
	}

	// Save it by its key as the page does, then follow the permalink's re-run link.
	if !done.Saveable {
		t.Fatalf("the sweep cannot be saved: %s", done.NoSave)
	}
	resp, saved := saveRun(t, f, done.Key, "Sweeping a seven")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("saving: %d", resp.StatusCode)
	}
	stored, err := f.store.Get(context.Background(), saved.Slug)
	if err != nil || stored.Kind != gallery.KindSweep || stored.OriginalSHA == "" || stored.EpsUnit != "/1" || stored.Eps != 0.45 {
		t.Fatalf("stored sweep %+v (%v)", stored, err)
	}
	s := newSession(t, f)
	entry := doc(t, s.get(saved.Permalink))
	rerun, _ := entry.Find(`[data-testid="rerun"]`).Attr("href")
	if rerun != "/sweep?from="+saved.Slug {
		t.Fatalf("re-run link %q", rerun)
	}
	pg := doc(t, s.get(f.ts.URL+rerun))
	if v, _ := pg.Find(`[data-testid="sweep-eps"]`).Attr("value"); v != "0:0.45:0.15" {
		t.Errorf("the re-run form's ε %q", v)
	}
	if v, _ := pg.Find(`[data-testid="sweep-seed"]`).Attr("value"); v != "3" {
		t.Errorf("the re-run form's seed %q", v)
	}
	if u, _ := pg.Find(`[data-testid="sweep-page"]`).Attr("data-entry-url"); u != "/g/"+saved.Slug+"/entry.json" {
		t.Errorf("entry URL %q", u)
	}
	if u, _ := pg.Find(`[data-testid="sweep-page"]`).Attr("data-image-url"); !strings.HasPrefix(u, "/gallery/img/") {
		t.Errorf("the saved image %q", u)
	}
	if !strings.Contains(pg.Find(`[data-testid="saved-command"]`).Text(), "gibbon sweep digit-7-0.png") || pg.Find(`[data-testid="saved-problem"]`).Length() != 0 {
		t.Errorf("saved notice: %q", pg.Find(`[data-testid="saved-notice"]`).Text())
	}
	if pg.Find(`input[name="defence-transform"][value="bits"][checked]`).Length() != 1 {
		t.Error("the saved 1-bit defence is not ticked")
	}
}

func dataURL(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "data:image/png;base64,"))
	if err != nil {
		t.Fatalf("data URL: %v", err)
	}
	return b
}

// A data set sweep and both matrices stream their partial results and end with
// results whose numbers agree.
func TestSweepSocketDatasetAndMatrices(t *testing.T) {
	f := newExplorerFixture(t, nil, pushnetFile())
	c := dialSweep(t, f)
	c.send(map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "attack": "fgsm", "models": []string{"cosine"},
		"defences": []string{"cosine", "cosine-b"}, "eps": "0,0.1,0.3", "n": 25, "batch": 10, "seed": 1}})
	done, msgs := c.until("done", time.Minute)
	var progress []int
	for _, m := range msgs {
		if m.Type == "progress" {
			progress = append(progress, m.Done)
		}
	}
	if len(progress) == 0 || progress[len(progress)-1] != 25 || !slices.IsSorted(progress) {
		t.Errorf("progress %v", progress)
	}
	var ds sweep.DatasetResult
	if err := json.Unmarshal(done.Result, &ds); err != nil || ds.N != 25 || len(ds.Defences) != 2 || ds.Defences[0].Correct[2] > ds.Defences[0].Correct[0] {
		t.Fatalf("dataset result %v: %+v", err, ds)
	}

	c.send(map[string]any{"type": "start", "settings": map[string]any{"kind": "compete", "attacks": []string{"noise", "fgsm", "net:pushnet"},
		"models": []string{"cosine"}, "defences": []string{"cosine", "cosine-b", "cosine+median:2"}, "eps": "0.1,0.3", "n": 30, "batch": 10, "seed": 2}})
	started, _ := c.until("started", time.Minute)
	if !slices.Equal(started.Eps, []float64{0.1, 0.3}) || len(started.Defences) != 3 {
		t.Errorf("compete started %+v", started)
	}
	done, _ = c.until("done", time.Minute)
	var m sweep.Matrix
	if err := json.Unmarshal(done.Result, &m); err != nil || len(m.Attacks) != 3 || len(m.BatchEps) != 3 {
		t.Fatalf("matrix %v: %s", err, done.Result)
	}
	for a, at := range m.Attacks {
		sum := 0
		for d := range m.Defences {
			sum += m.Misclassified[a][d]
		}
		if sum != at.Score {
			t.Errorf("%s: score %d, row %d", at.Name, at.Score, sum)
		}
	}
	if resp, saved := saveRun(t, f, done.Key, ""); resp.StatusCode != http.StatusCreated {
		t.Errorf("saving the matrix: %d", resp.StatusCode)
	} else if e, err := f.store.Get(context.Background(), saved.Slug); err != nil || e.Kind != gallery.KindMatrix || e.Attack != "compete: noise, fgsm, net:pushnet" {
		t.Errorf("stored matrix %+v: %v", e, err)
	}

	c.send(map[string]any{"type": "start", "settings": map[string]any{"kind": "transfer", "attack": "pgd", "models": []string{"cosine", "cosine-b", "net:pushnet"},
		"defences": []string{"cosine", "cosine-b"}, "eps": "0.2", "n": 20, "steps": 3, "seed": 4}})
	done, _ = c.until("done", time.Minute)
	var tm sweep.TransferMatrix
	if err := json.Unmarshal(done.Result, &tm); err != nil || len(tm.Sources) != 3 || tm.Sources[2].Network != "pushnet" || len(tm.Targets) != 2 {
		t.Fatalf("transfer %v: %s", err, done.Result)
	}
	rows, err := csv.NewReader(strings.NewReader(done.CSV)).ReadAll()
	if err != nil || !slices.Equal(rows[0], sweep.TransferCSVHeader) || len(rows) != 7 {
		t.Errorf("transfer CSV %v: %q", err, done.CSV)
	}
}

// Bad requests get one clear message each and leave the socket usable; stop ends a
// run with a stopped message.
func TestSweepSocketRefusalsAndStop(t *testing.T) {
	f := newExplorerFixture(t, nil)
	c := dialSweep(t, f)
	for _, tc := range []struct {
		msg  any
		want string
	}{
		{"not json", "not valid JSON"},
		{map[string]any{"type": "dance"}, "Unknown message type"},
		{map[string]any{}, "no type"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "wave"}}, "nknown kind"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "image", "eps": "0:1"}, "source": "sample", "sample": "digit-7-0.png"}, "FROM:TO:STEP"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "image"}, "source": "sample", "sample": "nope.png"}, "no sample"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "image"}}, "Choose an image"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "image", "label": 12}, "source": "sample", "sample": "digit-7-0.png"}, "between 0 and 9"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "n": 5000}}, "between 1 and 1000"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "steps": 101}}, "teps must be between 1 and 100"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "models": []string{"colours"}}}, "28×28 gray digits"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "defences": []string{"colours"}}}, "takes"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "attack": "net:ghost"}}, "No attack network"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "color": "red"}}, `a field Gibbon does not know: "color"`},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "n": "ten"}}, "wrong value for settings.n"},
		{map[string]any{"type": "start", "settings": map[string]any{"kind": "compete"}, "source": "sample"}, "Only a sweep of one image"},
	} {
		if s, ok := tc.msg.(string); ok {
			if err := c.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
				t.Fatal(err)
			}
		} else {
			c.send(tc.msg)
		}
		m := c.read(30 * time.Second)
		if m.Type != "error" || !strings.Contains(m.Message, tc.want) {
			t.Errorf("%v: %s %q, want an error about %q", tc.msg, m.Type, m.Message, tc.want)
		}
	}
	if err := c.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if m := c.read(10 * time.Second); m.Type != "error" || !strings.Contains(m.Message, "without a start") {
		t.Errorf("stray image: %+v", m)
	}
	// An upload that is not an image.
	c.send(map[string]any{"type": "start", "settings": map[string]any{"kind": "image", "image": "junk.png"}, "source": "upload", "image_bytes": 5})
	if err := c.conn.WriteMessage(websocket.BinaryMessage, []byte("junk!")); err != nil {
		t.Fatal(err)
	}
	if m := c.read(30 * time.Second); m.Type != "error" || m.Message == "" || strings.Contains(m.Message, "failed") {
		t.Errorf("junk upload: %+v", m)
	}

	// A long run, stopped after its first progress; a second start meanwhile is refused.
	c.send(map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset", "attack": "pgd", "models": []string{"cosine"},
		"defences": []string{"cosine"}, "eps": "0:0.3:0.01", "n": 1000, "steps": 100, "batch": 2, "seed": 1}})
	c.until("progress", time.Minute)
	c.send(map[string]any{"type": "start", "settings": map[string]any{"kind": "dataset"}})
	c.send(map[string]any{"type": "stop"})
	var refused bool
	for {
		m := c.read(30 * time.Second)
		if m.Type == "error" && strings.Contains(m.Message, "already in progress") {
			refused = true
		}
		if m.Type == "stopped" {
			break
		}
		if m.Type == "done" {
			t.Fatal("the stopped run finished")
		}
	}
	if !refused {
		t.Error("a second start while running was not refused")
	}
	waitUntil(t, "the stopped run to end", func() bool { return f.srv.sweeps.running.Load() == 0 })

	// Another site's page may not connect.
	url := "ws" + strings.TrimPrefix(f.ts.URL, "http") + sweepSocketPath
	_, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a foreign origin: %v", err)
	}
	if r, err := http.Get(f.ts.URL + sweepSocketPath); err != nil || r.StatusCode != http.StatusBadRequest {
		t.Errorf("a plain GET of the socket: %v %v", r.StatusCode, err)
	}
}

// The pages render their forms with the defaults; an unknown or unfit entry in
// ?from= is a clear error page.
func TestSweepAndMatrixPages(t *testing.T) {
	f := newExplorerFixture(t, nil, pushnetFile())
	s := newSession(t, f)
	pg := doc(t, s.get(f.ts.URL+"/sweep"))
	var nav []string
	pg.Find(`[data-testid="nav-link"]`).Each(func(_ int, n *goquery.Selection) { nav = append(nav, n.Text()) })
	if !slices.Contains(nav, "Sweep") || !slices.Contains(nav, "Compete") {
		t.Errorf("nav %v", nav)
	}
	if v, _ := pg.Find(`[data-testid="sweep-eps"]`).Attr("value"); v != "0:0.4:0.025" {
		t.Errorf("default ε %q", v)
	}
	if h := pg.Find(`[data-testid="sweep-eps-hint"]`).Text(); !strings.Contains(h, "17 values on [0,1]") || !strings.Contains(h, "102 in /255") {
		t.Errorf("ε hint %q", h)
	}
	if n := pg.Find(`[data-testid="sweep-sample"]`).Length(); n != 3 {
		t.Errorf("%d samples", n)
	}
	if opts := pg.Find(`#sw-attack option[value="net:pushnet"]`).Length(); opts != 1 {
		t.Error("the attack network is not in the attack menu")
	}
	for _, id := range []string{"sweep-chart", "sweep-table", "sw-progress", "sw-start"} {
		if pg.Find(`[data-testid="`+id+`"]`).Length() != 1 {
			t.Errorf("no %s", id)
		}
	}
	cp := doc(t, s.get(f.ts.URL+"/compete"))
	var entrants []string
	cp.Find(`[data-testid="matrix-attack"][checked]`).Each(func(_ int, n *goquery.Selection) { v, _ := n.Attr("value"); entrants = append(entrants, v) })
	if strings.Join(entrants, ",") != "fgsm,pgd,mi-fgsm,noise,net:pushnet" {
		t.Errorf("default entrants %v", entrants)
	}
	if v, _ := cp.Find(`[data-testid="matrix-eps"]`).Attr("value"); v != "0.1,0.2,0.3" {
		t.Errorf("default ε set %q", v)
	}
	tp := doc(t, s.get(f.ts.URL+"/transfer"))
	var sources []string
	tp.Find(`[data-testid="matrix-source"][checked]`).Each(func(_ int, n *goquery.Selection) { v, _ := n.Attr("value"); sources = append(sources, v) })
	if strings.Join(sources, ",") != "cosine,cosine-b,net:pushnet" {
		t.Errorf("default sources %v", sources)
	}
	for path, status := range map[string]int{"/sweep?from=nonsense!": 404, "/sweep?from=abcdefghjkmn": 404, "/compete?from=abcdefghjkmn": 404} {
		if r := s.get(f.ts.URL + path); r.StatusCode != status {
			t.Errorf("%s: %d, want %d", path, r.StatusCode, status)
		}
	}
}
