package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"gibbon/internal/atomicfile"
	"gibbon/internal/progress"
)

// writeJSON writes v as indented JSON: the --json form of a command's result.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// outputFlags choose the form of a command's result: text for people (the default),
// --json, and for tabular results --csv FILE (or - for stdout).
type outputFlags struct {
	json bool
	csv  string
}

// addOutputFlags registers --json, and --csv when the result has a CSV form.
func addOutputFlags(fs *flag.FlagSet, csv bool) *outputFlags {
	o := &outputFlags{}
	fs.BoolVar(&o.json, "json", false, "print the result as JSON instead of text")
	if csv {
		fs.StringVar(&o.csv, "csv", "", "also write the results as CSV to this file (- for stdout)")
	}
	return o
}

// text reports whether the result is printed for people: neither JSON nor the CSV
// takes stdout.
func (o *outputFlags) text() bool { return !o.json && o.csv != "-" }

// write writes result v: its CSV where --csv says (csv is nil for results without
// one), then JSON or text, unless the CSV went to stdout.
func (o *outputFlags) write(stdout io.Writer, v any, csv func(io.Writer) error, text func(io.Writer)) error {
	if o.csv != "" {
		if err := writeCSVFile(o.csv, stdout, csv); err != nil {
			return err
		}
	}
	switch {
	case o.json:
		return writeJSON(stdout, v)
	case o.text():
		text(stdout)
	}
	return nil
}

// table is rows of cells written as columns two spaces apart, each as wide as its
// widest cell counted in runes (ε and × take one column).
type table struct {
	rows [][]string
	// numbers right-aligns every column but the first (the names), for tables of
	// numbers.
	numbers bool
}

func newTable(header ...string) *table { return &table{rows: [][]string{header}} }

// newNumberTable is a table whose columns after the first are right-aligned.
func newNumberTable(header ...string) *table {
	return &table{rows: [][]string{header}, numbers: true}
}

// add appends a row.
func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// addf appends a row formatted from a tab-separated format: "%s\t%d\t%.1f".
func (t *table) addf(format string, args ...any) {
	t.add(strings.Split(fmt.Sprintf(format, args...), "\t")...)
}

func (t *table) write(w io.Writer) error {
	var width []int
	for _, r := range t.rows {
		for i, c := range r {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		var line strings.Builder
		for i, c := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if t.numbers && i > 0 {
				line.WriteString(pad + c)
			} else {
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n") // no trailing blanks
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeCSVFile writes a report's CSV to path ("-": stdout), atomically.
func writeCSVFile(path string, stdout io.Writer, write func(io.Writer) error) error {
	switch path {
	case "":
		return nil
	case "-":
		return write(stdout)
	}
	if err := atomicfile.Write(path, write); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// newBar starts a progress bar of total steps on w.
func newBar(w io.Writer, label string, total int) *progress.Bar {
	b := progress.New(w)
	b.Begin(label, 0, total)
	return b
}
