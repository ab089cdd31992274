package train

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressLinesAndETA(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf)
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
	var nilP *Progress
	nilP.Begin("x", 0, 1)
	nilP.Update(1, "")
	nilP.Printf("quiet")
	nilP.End()
}
