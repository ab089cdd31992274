package server

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkExplorerLoad is the explorer under load: N websocket clients, each on
// its own connection, send one start message at the same moment for a short PGD
// (10 steps, ε = 40/255) on the built-in small CNN, watched by the CNN itself,
// and read everything the server sends. Limits are raised so that none is
// refused for its address or the socket cap, and all may wait in line; the
// explorer runs as many attacks at once as `gibbon serve` does. One run before
// the measured ones builds the CNN's gradient graph.
//
// Reported per N: completed and refused runs, p50/p99 time from the start
// message to the first frame and to done, and the process's peak resident
// memory (server and clients together; Linux). Run it with -benchtime=1x:
//
//	go test ./server -run '^$' -bench ExplorerLoad -benchtime 1x
func BenchmarkExplorerLoad(b *testing.B) {
	for _, n := range []int{20, 200, 1000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.MaxSockets = n + 64
			acfg := DefaultAttackConfig()
			acfg.MaxSocketsPerClient, acfg.MaxQueue = n, n
			f := newBuiltinFixtureWith(b, cfg, acfg)
			loadRound(b, f, 1, false) // the first run builds the gradient graph: not measured
			for b.Loop() {
				loadRound(b, f, n, true)
			}
		})
	}
}

// loadOutcome is one client's run.
type loadOutcome struct {
	firstFrame, done time.Duration
	refused          string // why the run was refused, if it was
}

// loadRound runs n clients at once; report says whether to report the metrics.
func loadRound(b *testing.B, f *fixture, n int, report bool) {
	start := map[string]any{"type": "start", "attack": "pgd", "eps": 40, "steps": 10,
		"surrogates": []string{"mnist-cnn-small"}, "watch": []map[string]any{{"model": "mnist-cnn-small"}},
		"source": "sample", "sample": "digit-7-0.png", "seed": 1}
	conns := make([]*websocket.Conn, n)
	var dialWG sync.WaitGroup
	url := "ws" + strings.TrimPrefix(f.ts.URL, "http") + attackSocketPath
	for i := range conns {
		dialWG.Go(func() {
			d := websocket.Dialer{HandshakeTimeout: time.Minute}
			c, _, err := d.Dial(url, http.Header{"Origin": {f.ts.URL}})
			if err != nil {
				b.Errorf("dial %d: %v", i, err)
				return
			}
			conns[i] = c
		})
	}
	dialWG.Wait()
	if b.Failed() {
		b.FailNow()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	rss := rssMeter{b}
	rss.reset()
	out := make([]loadOutcome, n)
	var wg sync.WaitGroup
	go0 := make(chan struct{})
	for i, c := range conns {
		wg.Go(func() { out[i] = runLoadClient(b, c, start, go0) })
	}
	t0 := time.Now()
	close(go0)
	wg.Wait()
	wall := time.Since(t0)
	if !report {
		return
	}
	var first, done []float64
	refused := map[string]int{}
	for _, o := range out {
		if o.refused != "" {
			refused[o.refused]++
			continue
		}
		first = append(first, float64(o.firstFrame.Microseconds())/1000)
		done = append(done, float64(o.done.Microseconds())/1000)
	}
	b.ReportMetric(float64(len(done)), "completed")
	b.ReportMetric(float64(n-len(done)), "refused")
	b.ReportMetric(percentile(first, 50), "p50-first-frame-ms")
	b.ReportMetric(percentile(first, 99), "p99-first-frame-ms")
	b.ReportMetric(percentile(done, 50), "p50-done-ms")
	b.ReportMetric(percentile(done, 99), "p99-done-ms")
	b.ReportMetric(float64(rss.field("VmHWM")>>20), "peak-RSS-MB")
	b.Logf("%d clients: %d completed in %v, refused %v", n, len(done), wall.Round(time.Millisecond), refused)
}

// runLoadClient sends the start message when go0 closes and reads until done, an
// error, or the close.
func runLoadClient(b *testing.B, c *websocket.Conn, start map[string]any, go0 <-chan struct{}) loadOutcome {
	<-go0
	t0 := time.Now()
	if err := c.WriteJSON(start); err != nil {
		return loadOutcome{refused: "write: " + err.Error()}
	}
	var o loadOutcome
	c.SetReadDeadline(time.Now().Add(10 * time.Minute))
	for {
		typ, data, err := c.ReadMessage()
		if err != nil {
			return loadOutcome{refused: "closed: " + err.Error()}
		}
		var m struct {
			Type    string `json:"type"`
			Message string `json:"message"`
			Stopped bool   `json:"stopped"`
		}
		if typ == websocket.BinaryMessage {
			if len(data) < 4 || int(binary.BigEndian.Uint32(data))+4 > len(data) {
				b.Errorf("a binary message of %d bytes without its head", len(data))
				return loadOutcome{refused: "bad message"}
			}
			data = data[4 : 4+binary.BigEndian.Uint32(data)]
		}
		if err := json.Unmarshal(data, &m); err != nil {
			b.Errorf("message %q: %v", data, err)
			return loadOutcome{refused: "bad message"}
		}
		switch m.Type {
		case "frame":
			if o.firstFrame == 0 {
				o.firstFrame = time.Since(t0)
			}
		case "error":
			return loadOutcome{refused: m.Message}
		case "done":
			if m.Stopped {
				return loadOutcome{refused: "stopped"}
			}
			o.done = time.Since(t0)
			return o
		}
	}
}

// percentile is the p-th percentile (nearest rank) of xs, 0 without any.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(k, 0), len(s)-1)]
}
