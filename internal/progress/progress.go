// Package progress shows how far long work has come: on a terminal one line, redrawn
// in place at most ten times a second; elsewhere (a log, a pipe) a plain line every
// five per cent, so that logs stay readable. Training, evaluation, attacks over data
// sets, sweeps, downloads and gallery exports all report through a Bar.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// IsTerminal reports whether w is a terminal (a character device, TERM not dumb),
// where a line redrawn in place makes sense.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

// Bar is one progress line. A nil *Bar reports nothing, so work can take one
// without checking.
type Bar struct {
	w     io.Writer
	tty   bool
	width int
	// Bytes counts bytes: sizes in KB and MB, the rate in MB/s.
	Bytes bool

	label            string
	total, startDone int
	start, lastDraw  time.Time
	lastPct          int
	now              func() time.Time
}

// New writes to w, redrawing on a terminal.
func New(w io.Writer) *Bar { return NewOn(w, IsTerminal(w)) }

// NewOn writes to w, redrawing in place when terminal says so.
func NewOn(w io.Writer, terminal bool) *Bar {
	return &Bar{w: w, tty: terminal, width: 30, now: time.Now}
}

// Begin starts a phase of total steps (0: unknown), done of them already done (a
// resumed run: the speed counts only what runs now).
func (b *Bar) Begin(label string, done, total int) {
	if b == nil {
		return
	}
	b.label, b.total, b.startDone = label, total, done
	b.start = b.now()
	b.lastDraw = time.Time{}
	b.lastPct = -1
}

// Update reports done steps, with metrics shown after the count ("loss 0.31").
func (b *Bar) Update(done int, metrics string) {
	if b == nil {
		return
	}
	now := b.now()
	pct := 0
	if b.total > 0 {
		pct = 100 * done / b.total
	}
	finished := b.total > 0 && done >= b.total
	if b.tty {
		if !finished && now.Sub(b.lastDraw) < 100*time.Millisecond {
			return
		}
		fmt.Fprintf(b.w, "\r\033[K%s", b.line(done, metrics, now))
	} else {
		if !finished && pct/5 == b.lastPct/5 && now.Sub(b.lastDraw) < 30*time.Second {
			return
		}
		fmt.Fprintln(b.w, b.line(done, metrics, now))
	}
	b.lastDraw, b.lastPct = now, pct
}

// End finishes the bar's line.
func (b *Bar) End() {
	if b != nil && b.tty {
		fmt.Fprintln(b.w)
	}
}

// Printf prints a message on a line of its own (above the bar on a terminal).
func (b *Bar) Printf(format string, args ...any) {
	if b == nil {
		return
	}
	if b.tty {
		fmt.Fprint(b.w, "\r\033[K")
		b.lastDraw = time.Time{}
	}
	fmt.Fprintf(b.w, format+"\n", args...)
}

// line is "label [=====>    ]  40% 400/1000  12.3/s  metrics  ETA 5s".
func (b *Bar) line(done int, metrics string, now time.Time) string {
	ran, secs := done-b.startDone, now.Sub(b.start).Seconds()
	rate := ""
	if r := float64(ran) / secs; ran > 0 && secs > 0.2 {
		rate = fmt.Sprintf("  %.1f/s", r)
		if b.Bytes {
			rate = "  " + b.count(int(r)) + "/s"
		}
	}
	if metrics != "" {
		metrics = "  " + metrics
	}
	if b.total <= 0 {
		return fmt.Sprintf("%s %s%s%s", b.label, b.count(done), rate, metrics)
	}
	frac := min(float64(done)/float64(b.total), 1)
	fill := int(frac * float64(b.width))
	bar := strings.Repeat("=", fill)
	if fill < b.width {
		bar += ">" + strings.Repeat(" ", b.width-fill-1)
	}
	eta := "?"
	if ran > 0 {
		per := now.Sub(b.start) / time.Duration(ran)
		eta = fmtDuration(per * time.Duration(b.total-done))
	}
	return fmt.Sprintf("%s [%s] %3.0f%% %s/%s%s%s  ETA %s", b.label, bar, 100*frac, b.count(done), b.count(b.total), rate, metrics, eta)
}

// count writes a number of steps, or with Bytes a Size.
func (b *Bar) count(n int) string {
	if b.Bytes {
		return Size(int64(n))
	}
	return fmt.Sprint(n)
}

// Size writes a byte count in KB below 100 KB, else in MB, with one decimal.
func Size(n int64) string {
	if n < 100<<10 {
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%dh%02dm%02ds", h, m, s)
	}
	if m > 0 {
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}
