package train

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Progress draws a progress bar (with loss, accuracy, speed and ETA) on a terminal, or
// prints a plain line every few percent when the output is a file or pipe.
type Progress struct {
	w     io.Writer
	tty   bool
	width int

	label     string
	total     int
	startStep int
	start     time.Time
	lastDraw  time.Time
	lastPct   int
	now       func() time.Time
}

// NewProgress writes to w; a terminal gets a redrawn bar, anything else log lines.
func NewProgress(w io.Writer) *Progress {
	return &Progress{w: w, tty: isTerminal(w), width: 30, now: time.Now}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Begin starts a phase of total steps, of which done are already done (a resumed run).
func (p *Progress) Begin(label string, done, total int) {
	if p == nil {
		return
	}
	p.label, p.total, p.startStep = label, total, done
	p.start = p.now()
	p.lastDraw = time.Time{}
	p.lastPct = -1
}

// Update reports step done of total, with metrics shown as "name value" pairs.
func (p *Progress) Update(done int, metrics string) {
	if p == nil || p.total <= 0 {
		return
	}
	now := p.now()
	pct := 100 * done / p.total
	if p.tty {
		if done < p.total && now.Sub(p.lastDraw) < 100*time.Millisecond {
			return
		}
		fmt.Fprintf(p.w, "\r\033[K%s", p.line(done, metrics, now))
	} else {
		if done < p.total && pct/5 == p.lastPct/5 && now.Sub(p.lastDraw) < 30*time.Second {
			return
		}
		fmt.Fprintln(p.w, p.line(done, metrics, now))
	}
	p.lastDraw, p.lastPct = now, pct
}

// End finishes the bar's line.
func (p *Progress) End() {
	if p != nil && p.tty {
		fmt.Fprintln(p.w)
	}
}

// Printf prints a message on its own line (above the bar on a terminal).
func (p *Progress) Printf(format string, args ...any) {
	if p == nil {
		return
	}
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
		p.lastDraw = time.Time{}
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *Progress) line(done int, metrics string, now time.Time) string {
	frac := float64(done) / float64(p.total)
	fill := int(frac * float64(p.width))
	bar := strings.Repeat("=", fill)
	if fill < p.width {
		bar += ">" + strings.Repeat(" ", p.width-fill-1)
	}
	eta := "?"
	if ran := done - p.startStep; ran > 0 {
		per := now.Sub(p.start) / time.Duration(ran)
		eta = fmtDuration(per * time.Duration(p.total-done))
	}
	s := fmt.Sprintf("%s [%s] %3.0f%% %d/%d", p.label, bar, 100*frac, done, p.total)
	if metrics != "" {
		s += "  " + metrics
	}
	return s + "  ETA " + eta
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
