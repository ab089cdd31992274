package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressLinesAndETA(t *testing.T) {
	var buf bytes.Buffer
	p := New(&buf)
	clock := time.Unix(0, 0)
	p.now = func() time.Time { return clock }
	p.Begin("mlp", 0, 100)
	for i := 1; i <= 100; i++ {
		clock = clock.Add(time.Second)
		p.Update(i, "loss 0.5")
	}
	p.End()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 15 || len(lines) > 25 {
		t.Fatalf("%d lines for 100 steps on a pipe, want one every 5%%:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "mlp [") || !strings.Contains(lines[0], "loss 0.5") || !strings.Contains(lines[0], "ETA 1m39s") {
		t.Errorf("first line %q: want label, bar, metrics and ETA 1m39s", lines[0])
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, "100% 100/100") || !strings.Contains(last, "ETA 0s") || strings.Contains(last, "\r") {
		t.Errorf("last line %q", last)
	}

	// A resumed run estimates from the steps it ran itself.
	buf.Reset()
	p.Begin("mlp", 50, 100)
	clock = clock.Add(10 * time.Second)
	p.Update(60, "")
	if !strings.Contains(buf.String(), "ETA 40s") {
		t.Errorf("resumed ETA: %q, want 40s", buf.String())
	}
	var nilP *Bar
	nilP.Begin("x", 0, 1)
	nilP.Update(1, "")
	nilP.Printf("quiet")
	nilP.End()
}

// Downloads count bytes, on a terminal: one line redrawn in place, full at the end.
func TestBytesOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	b := NewOn(&buf, true)
	b.Bytes = true
	clock := time.Unix(0, 0)
	b.now = func() time.Time { return clock }
	b.Begin("downloading x", 0, 2_000_000)
	for done := 0; done <= 2_000_000; done += 100_000 {
		clock = clock.Add(50 * time.Millisecond)
		b.Update(done, "")
	}
	b.End()
	s := buf.String()
	if strings.Count(s, "\r") < 5 || strings.Count(s, "\n") != 1 {
		t.Fatalf("want a line redrawn in place, ended once:\n%q", s)
	}
	last := s[strings.LastIndex(s, "\r"):]
	for _, want := range []string{"[==============================]", "100%", "2.0 MB/2.0 MB", "1.9 MB/s"} {
		if !strings.Contains(last, want) {
			t.Errorf("last drawing %q lacks %q", last, want)
		}
	}
	buf.Reset()
	b.Begin("size unknown", 0, 0)
	clock = clock.Add(time.Second)
	b.Update(50_000, "")
	if got := strings.TrimSpace(strings.TrimPrefix(buf.String(), "\r\033[K")); got != "size unknown 50.0 KB  50.0 KB/s" {
		t.Errorf("unknown total: %q", got)
	}
}
