package ortinstall

import (
	"fmt"
	"io"

	"gibbon/internal/progress"
)

// counter is an io.Writer that counts the bytes through it on a progress bar: on a
// terminal one line redrawn in place; elsewhere (CI logs, pipes) a line when the
// download starts and every few per cent, so logs stay readable.
type counter struct {
	bar *progress.Bar // nil: nothing shown
	n   int64
}

func newProgress(w io.Writer, terminal bool, label string, total int64) *counter {
	if w == nil {
		return &counter{}
	}
	if !terminal {
		fmt.Fprintf(w, "%s (%s)\n", label, progress.Size(total))
	}
	c := &counter{bar: progress.NewOn(w, terminal)}
	c.bar.Bytes = true
	c.bar.Begin(label, 0, int(total))
	return c
}

func (c *counter) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	c.bar.Update(int(c.n), "")
	return len(b), nil
}

// done ends the bar.
func (c *counter) done() { c.bar.End() }
