package catalog

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Bar is a Progress that draws a one-line bar on a terminal, redrawn in place at most
// ten times a second; elsewhere (a log, a pipe) it writes one line when a transfer
// starts and one when it ends.
type Bar struct {
	W        io.Writer
	Terminal bool
	now      func() time.Time

	name        string
	total, done int64
	resumed     int64
	start, last time.Time
}

// NewBar makes a Bar writing to w.
func NewBar(w io.Writer, terminal bool) *Bar { return &Bar{W: w, Terminal: terminal, now: time.Now} }

func (b *Bar) Start(name, url string, total, have int64) {
	b.name, b.total, b.done, b.resumed = name, total, have, have
	b.start = b.now()
	b.last = time.Time{}
	if !b.Terminal {
		size := "size unknown"
		if total > 0 {
			size = sizeText(total)
		}
		msg := fmt.Sprintf("downloading %s (%s) from %s", name, size, url)
		if have > 0 {
			msg += fmt.Sprintf(", resuming at %s", sizeText(have))
		}
		fmt.Fprintln(b.W, msg)
		return
	}
	b.draw(true)
}

func (b *Bar) Add(n int64) {
	b.done += n
	if b.Terminal {
		b.draw(false)
	}
}

func (b *Bar) Done(err error) {
	secs := b.now().Sub(b.start).Seconds()
	if b.Terminal {
		b.draw(true)
		fmt.Fprintln(b.W)
	}
	if err != nil {
		fmt.Fprintf(b.W, "download of %s stopped at %s: %v\n", b.name, sizeText(b.done), err)
		return
	}
	if !b.Terminal {
		fmt.Fprintf(b.W, "downloaded %s: %s in %.1f s\n", b.name, sizeText(b.done), secs)
	}
}

func (b *Bar) draw(force bool) {
	t := b.now()
	if !force && t.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last = t
	rate := ""
	if secs := t.Sub(b.start).Seconds(); secs > 0.2 {
		rate = fmt.Sprintf(" %s/s", sizeText(int64(float64(b.done-b.resumed)/secs)))
	}
	const width = 30
	if b.total <= 0 {
		fmt.Fprintf(b.W, "\r%-28s %s%s   ", b.name, sizeText(b.done), rate)
		return
	}
	frac := min(float64(b.done)/float64(b.total), 1)
	fill := int(frac * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	if fill < width {
		bar = bar[:fill] + ">" + bar[fill+1:]
	}
	fmt.Fprintf(b.W, "\r%-28s %5.1f%% [%s] %s / %s%s   ", b.name, 100*frac, bar, sizeText(b.done), sizeText(b.total), rate)
}

// sizeText writes a byte count in MB with one decimal (KB below 100 KB).
func sizeText(n int64) string {
	switch {
	case n < 100<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	default:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
}
