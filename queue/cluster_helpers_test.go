package queue_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"gibbon/gallery/pgtest"
)

// cluster is a scaled-out Gibbon on loopback: nats-server in this process (its
// store in a directory that outlives a restart), a PostgreSQL schema for the
// shared gallery, and gibbon web nodes and workers as separate processes.
type cluster struct {
	t        *testing.T
	ns       *natsserver.Server
	natsDir  string
	natsPort int
	db       string
	extra    string // a models directory with extraModel
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	if gibbonBin == "" {
		t.Fatal("the gibbon binary was not built: TestMain builds it when -run selects a cluster test")
	}
	c := &cluster{t: t, natsDir: t.TempDir(), db: pgtest.NewSchema(t), extra: extraModelsDir(t)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.natsPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	c.ns = startNATS(t, c.natsDir, c.natsPort)
	return c
}

func (c *cluster) natsURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", c.natsPort) }

// restartNATS stops the server and starts it again on the same port and store.
func (c *cluster) restartNATS() {
	c.ns.Shutdown()
	c.ns.WaitForShutdown()
	c.ns = startNATS(c.t, c.natsDir, c.natsPort)
}

// proc is one gibbon process and its log.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    *syncBuffer
	base   string // a web node's http://host:port
	exited chan struct{}
}

// web starts a web node: the shared gallery, runs on the workers, the extra
// models on its pages.
func (c *cluster) web(name string) *proc {
	p := c.start(name, "serving", "serve", "--addr", "127.0.0.1:0", "--data", c.t.TempDir(), "--db", c.db,
		"--nats", c.natsURL(), "--models", c.extra, "--explorer-pages-per-client", "20", "--upload-burst", "100")
	m := regexp.MustCompile(`url=(http://[0-9.:]+)`).FindStringSubmatch(p.log.String())
	if m == nil {
		c.t.Fatalf("%s logged no address:\n%s", name, p.log)
	}
	p.base = m[1]
	return p
}

// worker starts a worker that redelivers after 2 s of silence.
func (c *cluster) worker(name string, args ...string) *proc {
	return c.start(name, "worker ready", append([]string{"worker", "--nats", c.natsURL(), "--name", name,
		"--ack-wait", "2s"}, args...)...)
}

// start runs gibbon with args and waits for ready in its log.
func (c *cluster) start(name, ready string, args ...string) *proc {
	c.t.Helper()
	p := &proc{name: name, cmd: exec.Command(gibbonBin, args...), log: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	c.t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
		if c.t.Failed() {
			c.t.Logf("%s's log:\n%s", name, p.log)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.log.String(), ready) {
		select {
		case <-p.exited:
			c.t.Fatalf("%s exited before it was ready:\n%s", name, p.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s was not ready in 60 s:\n%s", name, p.log)
		}
	}
	return p
}

// kill sends SIGKILL: no goodbye to anyone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
}

// accepted counts the runs the process's log says it accepted.
func (p *proc) accepted() int { return strings.Count(p.log.String(), "run accepted") }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// page is an explorer page on a web node: its websocket, with the browser's
// CSRF cookie (the same on every node behind one proxy).
type page struct {
	t      *testing.T
	base   string
	cookie string
	conn   *websocket.Conn
}

// browserToken is a browser's CSRF cookie, named for the test's reading: 32
// bytes, base64url, as the server makes them.
func browserToken(name string) string {
	sum := sha256.Sum256([]byte(name))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// openPage opens an explorer page on base as the browser whose CSRF cookie is
// browserToken(browser).
func openPage(t *testing.T, base, browser string) *page {
	t.Helper()
	return openSocket(t, base, browser, "/api/attack/ws")
}

// openSweepPage opens a sweep, competition or transfer page's websocket.
func openSweepPage(t *testing.T, base, browser string) *page {
	t.Helper()
	return openSocket(t, base, browser, "/api/sweep/ws")
}

func openSocket(t *testing.T, base, browser, path string) *page {
	t.Helper()
	cookie := browserToken(browser)
	h := http.Header{"Origin": {base}, "Cookie": {"gibbon_csrf=" + cookie}}
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+path, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &page{t: t, base: base, cookie: cookie, conn: conn}
}

// msg is a server message's JSON (a binary message's header): the explorer's,
// and the sweeps' (Done, Total, Result).
type msg struct {
	Type     string          `json:"type"`
	Key      string          `json:"key"`
	Message  string          `json:"message"`
	Position int             `json:"position"`
	Seq      int             `json:"seq"`
	Final    bool            `json:"final"`
	Stopped  bool            `json:"stopped"`
	Steps    int             `json:"steps"`
	Saveable bool            `json:"saveable"`
	Done     int             `json:"done"`
	Total    int             `json:"total"`
	Result   json.RawMessage `json:"result"`
}

func (p *page) send(v any) {
	p.t.Helper()
	if err := p.conn.WriteJSON(v); err != nil {
		p.t.Fatal(err)
	}
}

func (p *page) read(timeout time.Duration) (msg, error) {
	p.conn.SetReadDeadline(time.Now().Add(timeout))
	typ, data, err := p.conn.ReadMessage()
	if err != nil {
		return msg{}, err
	}
	if typ == websocket.BinaryMessage {
		if len(data) < 4 {
			return msg{}, io.ErrUnexpectedEOF
		}
		n := binary.BigEndian.Uint32(data)
		data = data[4 : 4+n]
	}
	var m msg
	return m, json.Unmarshal(data, &m)
}

// until reads up to the first message of one of types, within timeout.
func (p *page) until(timeout time.Duration, types ...string) msg {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m, err := p.read(time.Until(deadline))
		if err != nil {
			p.t.Fatalf("waiting for %v: %v", types, err)
		}
		for _, want := range types {
			if m.Type == want {
				return m
			}
		}
	}
}

// pgdStart is a PGD run on a sample digit, watched by two defences.
func pgdStart(model string, steps, restarts int) map[string]any {
	return map[string]any{"type": "start", "attack": "pgd", "eps": 60, "steps": steps, "restarts": restarts,
		"surrogates": []string{model}, "watch": []map[string]any{{"model": model}, {"model": "mnist-mlp"}},
		"source": "sample", "sample": "digit-4-0.png", "seed": 11}
}

// runToEnd starts a run and waits for its done message (an error fails).
func (p *page) runToEnd(start map[string]any, timeout time.Duration) msg {
	p.t.Helper()
	p.send(start)
	m := p.until(timeout, "done", "error")
	if m.Type == "error" {
		p.t.Fatalf("the run failed: %s", m.Message)
	}
	return m
}

// save posts a run's save on a web node (any node: the run book is shared).
func save(t *testing.T, base, cookie, key, title string) (int, map[string]string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"title": title})
	req, _ := http.NewRequest(http.MethodPost, base+"/api/runs/"+key+"/save", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", cookie)
	req.AddCookie(&http.Cookie{Name: "gibbon_csrf", Value: cookie})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]string{}
	json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// get fetches a page and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}
