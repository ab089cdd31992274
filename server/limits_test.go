package server

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// plainPNG is a valid w×h PNG of zero pixels, colour type ct (0 gray, 6 RGBA) at
// 8 bits, written row by row: a 1×39,000,000 image is 76 kB and needs no image in
// memory to make.
func plainPNG(t testing.TB, w, h int, ct byte) []byte {
	t.Helper()
	chunk := func(out *bytes.Buffer, typ string, body []byte) {
		binary.Write(out, binary.BigEndian, uint32(len(body)))
		c := append([]byte(typ), body...)
		out.Write(c)
		binary.Write(out, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, uint32(w))
	ihdr = binary.BigEndian.AppendUint32(ihdr, uint32(h))
	chunk(&out, "IHDR", append(ihdr, 8, ct, 0, 0, 0))
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestSpeed)
	channels := map[byte]int{0: 1, 6: 4}[ct]
	rows := make([]byte, (1+w*channels)*max(1, 65536/(1+w*channels))) // filter byte 0, zero pixels
	per := len(rows) / (1 + w*channels)
	for y := 0; y < h; y += per {
		n := min(per, h-y)
		if _, err := zw.Write(rows[:n*(1+w*channels)]); err != nil {
			t.Fatal(err)
		}
	}
	zw.Close()
	chunk(&out, "IDAT", z.Bytes())
	chunk(&out, "IEND", nil)
	return out.Bytes()
}

// classifyStatus posts data to /api/classify and returns the status and the error
// message, safe to call from any goroutine.
func (s *session) classifyStatus(data []byte, name string) (int, string, error) {
	body, ctype := upload{file: data, filename: name, fields: map[string]string{"_csrf": s.token}}.encode(s.t)
	req, err := http.NewRequest(http.MethodPost, s.f.ts.URL+"/api/classify", body)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := s.c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error, nil
}

// Point 1: an image of an absurd shape, or one whose decoded pixels would take
// too much memory, is refused from its header with a 413 that says why, on the
// classify page and on the explorer's upload path alike.
func TestAspectRatioAndDepthBombsAreRefused(t *testing.T) {
	f := newExplorerFixture(t, nil)
	s := newSession(t, f)
	tall, wide := plainPNG(t, 1, 39_000_000, 0), plainPNG(t, 39_000_000, 1, 0)
	deep := pngHeaderOfDepth(7000, 5000, 16) // 35 MP of 16-bit RGBA: 280 MB decoded
	for _, tc := range []struct {
		name string
		data []byte
		says string
	}{
		{"1×39,000,000", tall, "no side may be longer than 16384 pixels"},
		{"39,000,000×1", wide, "no side may be longer than 16384 pixels"},
		{"16-bit 35 MP", deep, "decoding it takes 280 MB of memory"},
	} {
		status, msg, err := s.classifyStatus(tc.data, "bomb.png")
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusRequestEntityTooLarge || !strings.Contains(msg, tc.says) {
			t.Errorf("classify %s (%d bytes): %d %q, want 413 saying %q", tc.name, len(tc.data), status, msg, tc.says)
		}
		c := dial(t, f)
		m := pgd(40, 3)
		m["source"], m["image_bytes"] = "upload", len(tc.data)
		delete(m, "sample")
		c.send(m)
		c.sendBinary(tc.data)
		if got := c.read(30 * time.Second); got.Type != "error" || !strings.Contains(got.Message, tc.says) {
			t.Errorf("explorer %s: %s %q, want an error saying %q", tc.name, got.Type, got.Message, tc.says)
		}
		c.conn.Close()
	}
	if used := f.srv.images.memory.inUse(); used != 0 {
		t.Fatalf("%d bytes of the decode budget still taken", used)
	}
}

// pngHeaderOfDepth is an RGBA PNG header of the given bit depth and no pixels.
func pngHeaderOfDepth(w, h uint32, depth byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(nil, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	c := append([]byte("IHDR"), append(ihdr, depth, 6, 0, 0, 0)...)
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(c)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(c))
	return b.Bytes()
}

// rssMeter measures the process's resident memory: now, and the peak since reset
// (Linux: VmHWM, reset by writing 5 to /proc/self/clear_refs).
type rssMeter struct{ t testing.TB }

func (m rssMeter) field(name string) int64 {
	m.t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		m.t.Skipf("no /proc/self/status to read resident memory from: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				m.t.Fatal(err)
			}
			return kb << 10
		}
	}
	m.t.Fatalf("no %s in /proc/self/status", name)
	return 0
}

func (m rssMeter) reset() {
	m.t.Helper()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		m.t.Skipf("the peak resident memory cannot be reset here: %v", err)
	}
}

// Point 1's goal: four concurrent worst-case uploads that pass every limit (40 MP
// of 8-bit RGBA, as wide and as tall as the side limit allows: 160 MB decoded
// each) and a normal one beside them never take the server more than 256 MB above
// idle, and every one is answered.
func TestWorstCaseUploadsStayWithinMemory(t *testing.T) {
	f := newFixture(t, nil)
	s := newSession(t, f)
	wide, tall := plainPNG(t, 16_384, 2441, 6), plainPNG(t, 2441, 16_384, 6)
	seven := pngBytes(t, drawShape("7", 100, 100))
	if st, msg, err := s.classifyStatus(seven, "warm-up.png"); err != nil || st != 200 {
		t.Fatalf("warm-up: %d %q %v", st, msg, err)
	}
	rss := rssMeter{t}
	runtime.GC()
	debug.FreeOSMemory()
	idle := rss.field("VmRSS")
	rss.reset()
	var wg sync.WaitGroup
	results := make([]string, 5)
	for i, data := range [][]byte{wide, tall, wide, tall, seven} {
		wg.Go(func() {
			st, msg, err := s.classifyStatus(data, fmt.Sprintf("upload-%d.png", i))
			if err != nil || st != http.StatusOK {
				results[i] = fmt.Sprintf("upload %d: %d %q %v", i, st, msg, err)
			}
		})
	}
	wg.Wait()
	peak := rss.field("VmHWM")
	for _, r := range results {
		if r != "" {
			t.Error(r)
		}
	}
	t.Logf("resident memory: idle %d MB, peak %d MB (%d MB above idle)", idle>>20, peak>>20, (peak-idle)>>20)
	if peak-idle > 256<<20 {
		t.Fatalf("the server held %d MB above idle, over 256 MB", (peak-idle)>>20)
	}
	if used := f.srv.images.memory.inUse(); used != 0 {
		t.Fatalf("%d bytes of the decode budget still taken", used)
	}
}

// A small upload does not wait behind large ones: with every large-image slot
// and most of the decode memory taken, it is still decoded and answered.
func TestSmallUploadsPassLargeOnes(t *testing.T) {
	f := newFixture(t, nil)
	s := newSession(t, f)
	w := f.srv.images
	for range cap(w.heavy) {
		w.heavy <- struct{}{}
	}
	defer func() {
		for range cap(w.heavy) {
			<-w.heavy
		}
	}()
	release, err := w.memory.acquire(context.Background(), f.srv.cfg.MaxDecodeBytes)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	s.c.Timeout = time.Minute // fail, not hang, if it waited
	if st, msg, err := s.classifyStatus(pngBytes(t, drawShape("7", 100, 100)), "seven.png"); err != nil || st != 200 {
		t.Fatalf("a small upload beside large ones: %d %q %v", st, msg, err)
	}
}

// The gate admits whatever fits at once, lets the rest wait in a bounded line,
// hands freed room to those waiting, and forgets a waiter whose context ends.
func TestGateAdmitsWhatFitsAndBoundsTheLine(t *testing.T) {
	g := newGate(10, 1)
	big, err := g.acquire(context.Background(), 8)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		rel, err := g.acquire(context.Background(), 5)
		if err == nil {
			defer rel()
		}
		waited <- err
	}()
	waitUntil(t, "the large waiter is in line", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) == 1 })
	done, cancel := context.WithCancel(context.Background())
	cancel() // it must not wait at all
	small, err := g.acquire(done, 2)
	if err != nil {
		t.Fatalf("2 of the 2 free units, past a waiter for 5: %v", err)
	}
	if _, err := g.acquire(context.Background(), 1); !errors.Is(err, errGateFull) {
		t.Fatalf("over a full line: %v, want errGateFull", err)
	}
	small()
	big()
	big() // a second release changes nothing
	if err := <-waited; err != nil {
		t.Fatalf("the waiter: %v", err)
	}
	waitUntil(t, "the waiter's release", func() bool { return g.inUse() == 0 })
	// A waiter whose context ends leaves the line and takes nothing.
	hold, _ := g.acquire(context.Background(), 10)
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer stop()
	if _, err := g.acquire(ctx, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a cancelled waiter: %v", err)
	}
	hold()
	if g.inUse() != 0 || len(g.waiting) != 0 {
		t.Fatalf("after all left: %d in use, %d waiting", g.inUse(), len(g.waiting))
	}
}

// BenchmarkClassifyBesideWorstCaseUploads times a normal classification (a
// 100×100 PNG through every test model) alone, and while four worst-case uploads
// (40 MP of 8-bit RGBA, as wide and as tall as allowed) are in flight. The
// difference is the delay large uploads cause to others; goal: under 1 s.
func BenchmarkClassifyBesideWorstCaseUploads(b *testing.B) {
	f := newFixture(b, nil)
	s := newSession(b, f)
	wide, tall := plainPNG(b, 16_384, 2441, 6), plainPNG(b, 2441, 16_384, 6)
	seven := pngBytes(b, drawShape("7", 100, 100))
	normal := func() time.Duration {
		t0 := time.Now()
		if st, msg, err := s.classifyStatus(seven, "seven.png"); err != nil || st != 200 {
			b.Fatalf("normal classify: %d %q %v", st, msg, err)
		}
		return time.Since(t0)
	}
	normal()
	b.Run("alone", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			total += normal()
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/classify")
	})
	b.Run("beside-4-worst", func(b *testing.B) {
		var total time.Duration
		for b.Loop() {
			var wg sync.WaitGroup
			for _, data := range [][]byte{wide, tall, wide, tall} {
				wg.Go(func() {
					if st, msg, err := s.classifyStatus(data, "worst.png"); err != nil || st != 200 {
						b.Errorf("worst-case upload: %d %q %v", st, msg, err)
					}
				})
			}
			for f.srv.images.memory.inUse() < f.srv.cfg.MaxDecodeBytes/2 { // a large one is decoding
				time.Sleep(time.Millisecond)
			}
			total += normal()
			wg.Wait()
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/classify")
	})
}

func TestConfigCheckRefusesLimitsThatCannotWork(t *testing.T) {
	if err := DefaultConfig().Check(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, edit := range map[string]func(*Config){
		"side":    func(c *Config) { c.MaxImageSide = 0 },
		"decode":  func(c *Config) { c.MaxDecodeBytes = 1000 },
		"sockets": func(c *Config) { c.MaxSockets = -1 },
	} {
		c := DefaultConfig()
		edit(&c)
		if err := c.Check(); err == nil {
			t.Errorf("%s: no error for %+v", name, c)
		}
	}
}
