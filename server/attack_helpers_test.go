package server

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
)

// Explorer test models. "cosine" is the nearest-template classifier of
// helpers_test.go written with ops the gradient builder supports (logit k =
// 12·cos(x, template k)), so attacks can take its gradients; "cosine-b" has other
// noise templates (a transfer target, marked robust to show the badge). "colours"
// takes 32×32 RGB images, so it cannot watch an MNIST attack.

func templateWeights(t testing.TB, seed uint64) []float32 {
	t.Helper()
	w := make([]float32, 784*10)
	rng := rand.New(rand.NewPCG(seed, 2))
	for k := range 10 {
		col := make([]float64, 784)
		switch d := string(rune('0' + k)); d {
		case "0", "1", "7":
			pre, err := inference.Preprocess(drawShape(d, 200, 200), mnistContract)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range pre.Tensor.Data {
				col[i] = float64(v)
			}
		default:
			for i := range col {
				col[i] = rng.Float64() - 0.5
			}
		}
		var norm float64
		for _, v := range col {
			norm += v * v
		}
		norm = math.Sqrt(norm)
		for i, v := range col {
			w[i*10+k] = float32(12 * v / norm)
		}
	}
	return w
}

func cosineModel(t testing.TB, seed uint64) []byte {
	t.Helper()
	b := onnx.NewBuilder("cosine")
	x := b.Input("image", -1, 1, 28, 28)
	flat := b.Op("Flatten", []string{x})
	ss := b.Op("ReduceSum", []string{b.Op("Mul", []string{flat, flat}), b.Ints(1)}, onnx.AttrInt("keepdims", 1))
	norm := b.Op("Sqrt", []string{b.Op("Add", []string{ss, b.Scalar(1e-6)})})
	y := b.Op("Div", []string{b.Op("MatMul", []string{flat, b.Init("W", []int64{784, 10}, templateWeights(t, seed))}), norm})
	b.Output("logits", y, -1, 10)
	return b.Bytes()
}

// smallCNN is the zoo's cnn-small architecture with fresh weights: the same work
// per step as the trained model, for speed measurements.
func smallCNN(t testing.TB) []byte {
	t.Helper()
	m, _ := arch.SmallCNN.Build(1)
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// attackNetModel is a stand-in attack network with heads ε = 0.1, 0.2, 0.3: each
// head pushes every pixel away from mid-gray by its ε (tanh keeps it inside) and
// clips to [0,1]. Output [N, 3, 28, 28]: three adversarial images per input.
func attackNetModel() []byte {
	b := onnx.NewBuilder("pushnet")
	x := b.Input("image", -1, 1, 28, 28)
	dir := b.Op("Tanh", []string{b.Op("Mul", []string{b.Op("Sub", []string{x, b.Scalar(0.5)}), b.Scalar(20)})})
	var heads []string
	for _, e := range []float32{0.1, 0.2, 0.3} {
		heads = append(heads, b.Op("Clip", []string{b.Op("Add", []string{x, b.Op("Mul", []string{dir, b.Scalar(e)})}), b.Scalar(0), b.Scalar(1)}))
	}
	b.Output("adv", b.Op("Concat", heads, onnx.AttrInt("axis", 1)), -1, 3, 28, 28)
	return b.Bytes()
}

type modelFile struct {
	entry inference.ModelEntry
	data  []byte
}

// explorerDir writes a models directory for the explorer tests, plus samples/.
func explorerDir(t testing.TB, extra ...modelFile) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := []modelFile{
		{inference.ModelEntry{Name: "cosine", File: "cosine.onnx", Task: inference.TaskClassifier, Architecture: "cosine to 10 templates",
			Input: mnistContract, Labels: digitLabels(), OutputsLogits: true}, cosineModel(t, 1)},
		{inference.ModelEntry{Name: "cosine-b", File: "cosine-b.onnx", Task: inference.TaskClassifier, Architecture: "other noise templates",
			Robust: true, Input: mnistContract, Labels: digitLabels(), OutputsLogits: true}, cosineModel(t, 9)},
		{inference.ModelEntry{Name: "colours", File: "colours.onnx", Task: inference.TaskClassifier, Architecture: "channel means",
			Input: colourContract, Labels: []string{"red", "green", "blue"}}, colourModel()},
	}
	files = append(files, extra...)
	var man inference.Manifest
	for _, f := range files {
		write(f.entry.File, f.data)
		f.entry.SHA256 = shaHex(f.data)
		man.Models = append(man.Models, f.entry)
	}
	data, err := json.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	write("manifest.json", data)
	write("samples/digit-0-0.png", pngBytes(t, drawShape("0", 28, 28)))
	write("samples/digit-1-0.png", pngBytes(t, drawShape("1", 28, 28)))
	write("samples/digit-7-0.png", pngBytes(t, drawShape("7", 28, 28)))
	return dir
}

// newExplorerFixture serves the explorer (and a gallery) over the explorer models.
func newExplorerFixture(t testing.TB, edit func(*AttackConfig), extra ...modelFile) *fixture {
	t.Helper()
	return serveExplorerDir(t, explorerDir(t, extra...), edit)
}

// serveExplorerDir serves the explorer (and a gallery) over a models directory
// with a samples/ folder.
func serveExplorerDir(t testing.TB, dir string, edit func(*AttackConfig)) *fixture {
	t.Helper()
	cfg := DefaultConfig()
	cfg.UploadRate, cfg.UploadBurst = 1000, 1000
	acfg := DefaultAttackConfig()
	if edit != nil {
		edit(&acfg)
	}
	rt := testrt.Open(t)
	src := inference.ModelSource{Name: dir, FS: os.DirFS(dir)}
	reg, err := zoo.Load(context.Background(), rt, src)
	if err != nil {
		t.Fatal(err)
	}
	if p := reg.Problems(); len(p) > 0 {
		t.Fatalf("test models did not load: %v", p)
	}
	store, err := gallery.Open(context.Background(), filepath.Join(t.TempDir(), gallery.FileName))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := New(Deps{Config: cfg, Log: slog.New(slog.NewTextHandler(logs, nil)), Models: reg,
		Samples: []fs.FS{os.DirFS(filepath.Join(dir, "samples"))}, Gallery: store,
		Attack: AttackDeps{Config: acfg, Enabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	// Cleanups run last-in first-out: the server, then the sessions, then the store.
	t.Cleanup(func() { store.Close() })
	t.Cleanup(reg.Close)
	// Websockets are hijacked, so ts.Close does not wait for them: a test that
	// fails mid-run must not close the sessions under a running attack.
	t.Cleanup(func() {
		for deadline := time.Now().Add(10 * time.Second); srv.explorer.sessions.Load() > 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Cleanup(ts.Close)
	return &fixture{srv: srv, ts: ts, reg: reg, logs: logs, store: store}
}

// wsClient is a test client of the explorer's websocket.
// socketClient is a test's end of one of the server's websockets.
type socketClient struct {
	t    testing.TB
	conn *websocket.Conn
}

// dialSocket opens the websocket at path as a page of f's server would; what names
// it in the failure.
func dialSocket(t testing.TB, f *fixture, d *websocket.Dialer, path, what string) socketClient {
	t.Helper()
	url := "ws" + strings.TrimPrefix(f.ts.URL, "http") + path
	conn, resp, err := d.Dial(url, http.Header{"Origin": {f.ts.URL}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial the %s: %v (HTTP %d)", what, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return socketClient{t: t, conn: conn}
}

func (c socketClient) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

func (c socketClient) sendBinary(b []byte) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.BinaryMessage, b); err != nil {
		c.t.Fatal(err)
	}
}

// wsClient is a test's end of the explorer's websocket.
type wsClient struct{ socketClient }

func wsURL(f *fixture) string { return "ws" + strings.TrimPrefix(f.ts.URL, "http") + attackSocketPath }

func dial(t testing.TB, f *fixture) *wsClient {
	t.Helper()
	return dialWith(t, f, websocket.DefaultDialer)
}

func dialWith(t testing.TB, f *fixture, d *websocket.Dialer) *wsClient {
	t.Helper()
	return &wsClient{dialSocket(t, f, d, attackSocketPath, "explorer")}
}

// wsMsg is one message from the server: Type and the decoded fields, plus images
// for binary ones.
type wsMsg struct {
	Type     string             `json:"type"`
	Run      int                `json:"run"`
	Message  string             `json:"message"`
	Position int                `json:"position"`
	Seq      int                `json:"seq"`
	Step     int                `json:"step"`
	Steps    int                `json:"steps"`
	Final    bool               `json:"final"`
	Stage    string             `json:"stage"`
	Linf     int                `json:"linf"`
	LossFrom int                `json:"loss_from"`
	Loss     []*float64         `json:"loss"`
	Gain     float64            `json:"gain"`
	Chosen   string             `json:"chosen"`
	Stopped  bool               `json:"stopped"`
	Reason   string             `json:"reason"`
	Flipped  int                `json:"flipped"`
	Watched  int                `json:"watched"`
	Eps      int                `json:"eps"`
	Timings  map[string]float64 `json:"timings"`
	Key      string             `json:"key"`
	Saveable bool               `json:"saveable"`
	NoSave   string             `json:"no_save"`
	Download string             `json:"download"`
	Defences []struct {
		Name    string `json:"name"`
		Flipped bool   `json:"flipped"`
		Error   string `json:"error"`
		Top     []struct {
			Label string  `json:"label"`
			Index int     `json:"index"`
			Prob  float64 `json:"probability"`
		} `json:"top"`
		Clean []struct {
			Label string  `json:"label"`
			Index int     `json:"index"`
			Prob  float64 `json:"probability"`
		} `json:"clean"`
	} `json:"defences"`
	binary bool
	images map[string][]byte
	metas  []frameImage
	raw    []byte // the message as sent, for fields a test reads itself
}

// read returns the next message, failing after timeout.
func (c *wsClient) read(timeout time.Duration) wsMsg {
	c.t.Helper()
	m, err := c.tryRead(timeout)
	if err != nil {
		c.t.Fatalf("read from the explorer: %v", err)
	}
	return m
}

func (c *wsClient) tryRead(timeout time.Duration) (wsMsg, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	typ, data, err := c.conn.ReadMessage()
	if err != nil {
		return wsMsg{}, err
	}
	m := wsMsg{raw: data}
	if typ == websocket.BinaryMessage {
		m.binary = true
		m.images, m.metas, err = unpackBinary(data, &m)
	} else {
		err = json.Unmarshal(data, &m)
	}
	return m, err
}

// until reads messages up to and including the first of type want (or an error
// message, which fails the test unless want is "error").
func (c *wsClient) until(want string, timeout time.Duration) (wsMsg, []wsMsg) {
	c.t.Helper()
	var seen []wsMsg
	deadline := time.Now().Add(timeout)
	for {
		m := c.read(time.Until(deadline))
		seen = append(seen, m)
		if m.Type == want {
			return m, seen
		}
		if m.Type == "error" {
			c.t.Fatalf("the explorer answered an error while waiting for %q: %s", want, m.Message)
		}
	}
}

// pgd is a start message for PGD on the sample seven against the cosine models.
func pgd(eps, steps int) map[string]any {
	return map[string]any{"type": "start", "attack": "pgd", "eps": eps, "steps": steps, "surrogates": []string{"cosine"},
		"watch":  []map[string]any{{"model": "cosine"}, {"model": "cosine-b"}, {"model": "cosine", "defence": "bits", "param": 1}},
		"source": "sample", "sample": "digit-7-0.png", "seed": 3}
}

func decodeGray(t testing.TB, data []byte) *image.Gray {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("frame image: %v", err)
	}
	g, ok := img.(*image.Gray)
	if !ok {
		t.Fatalf("frame image is %T, want 8-bit gray", img)
	}
	return g
}

// waitUntil polls cond (server state) for up to 10 s.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// smallBufferDialer reads through a tiny socket buffer, so the server's writes
// block soon when the client stops reading.
var smallBufferDialer = &websocket.Dialer{
	NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(16 << 10)
		}
		return c, err
	},
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   1024,
}

// saveRun saves a finished run by its key, as the page does: a same-origin POST
// from the address (and without the cookie) the test's websocket used.
func saveRun(t testing.TB, f *fixture, key, title string) (*http.Response, saveResponse) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"title": title})
	req, err := http.NewRequest(http.MethodPost, f.ts.URL+"/api/runs/"+key+"/save", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var saved saveResponse
	if resp.StatusCode == http.StatusCreated {
		if err := json.NewDecoder(resp.Body).Decode(&saved); err != nil {
			t.Fatal(err)
		}
	}
	return resp, saved
}
