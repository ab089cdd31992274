package ortinstall

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress is an io.Writer that counts bytes: on a terminal it redraws one bar line
// at most ten times a second; elsewhere (CI logs, pipes) it prints a line at every
// quarter, so logs stay readable.
type progress struct {
	w        io.Writer
	terminal bool
	label    string
	total    int64
	n        int64
	start    time.Time
	last     time.Time
	quarter  int64
}

func newProgress(w io.Writer, terminal bool, label string, total int64) *progress {
	p := &progress{w: w, terminal: terminal, label: label, total: total, start: time.Now()}
	if w != nil && !terminal {
		fmt.Fprintf(w, "%s (%s)\n", label, mb(total))
	}
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.w == nil || p.total <= 0 {
		return len(b), nil
	}
	if p.terminal {
		if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
			p.last = now
			p.draw()
		}
		return len(b), nil
	}
	if q := min(p.n*4/p.total, 4); q > p.quarter {
		p.quarter = q
		if q < 4 {
			fmt.Fprintf(p.w, "  %d%% (%s of %s)\n", q*25, mb(p.n), mb(p.total))
		}
	}
	return len(b), nil
}

func (p *progress) draw() {
	const width = 30
	frac := min(float64(p.n)/float64(p.total), 1)
	fill := int(frac * width)
	rate := float64(p.n) / max(time.Since(p.start).Seconds(), 1e-3) / 1e6
	fmt.Fprintf(p.w, "\r%s [%s%s] %3.0f%% %s/%s %.1f MB/s ", p.label,
		strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, mb(p.n), mb(p.total), rate)
}

// done ends the bar; ok says whether the whole download arrived.
func (p *progress) done(ok bool) {
	if p.w == nil {
		return
	}
	if p.terminal {
		p.draw()
		fmt.Fprintln(p.w)
		return
	}
	if ok {
		fmt.Fprintf(p.w, "  100%% (%s) in %.1fs\n", mb(p.n), time.Since(p.start).Seconds())
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
