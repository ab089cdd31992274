package catalog

import (
	"fmt"
	"io"
	"time"

	"gibbon/internal/progress"
)

// Bar is a Progress on a progress bar: on a terminal one line redrawn in place;
// elsewhere (a log, a pipe) a line when a transfer starts, every few per cent, and
// when it ends.
type Bar struct {
	w        io.Writer
	terminal bool
	bar      *progress.Bar
	name     string
	done     int64
	start    time.Time
}

// NewBar makes a Bar writing to w.
func NewBar(w io.Writer, terminal bool) *Bar {
	b := &Bar{w: w, terminal: terminal, bar: progress.NewOn(w, terminal)}
	b.bar.Bytes = true
	return b
}

func (b *Bar) Start(name, url string, total, have int64) {
	b.name, b.done, b.start = name, have, time.Now()
	if !b.terminal {
		size := "size unknown"
		if total > 0 {
			size = progress.Size(total)
		}
		msg := fmt.Sprintf("downloading %s (%s) from %s", name, size, url)
		if have > 0 {
			msg += ", resuming at " + progress.Size(have)
		}
		fmt.Fprintln(b.w, msg)
	}
	b.bar.Begin(name, int(have), int(total))
}

func (b *Bar) Add(n int64) {
	b.done += n
	b.bar.Update(int(b.done), "")
}

func (b *Bar) Done(err error) {
	b.bar.End()
	switch {
	case err != nil:
		fmt.Fprintf(b.w, "download of %s stopped at %s: %v\n", b.name, progress.Size(b.done), err)
	case !b.terminal:
		fmt.Fprintf(b.w, "downloaded %s: %s in %.1f s\n", b.name, progress.Size(b.done), time.Since(b.start).Seconds())
	}
}
