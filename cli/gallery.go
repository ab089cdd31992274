package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gibbon/gallery"
	"gibbon/internal/progress"
)

// cmdGallery backs up, restores and checks the gallery file (DATA/gallery.db).
func cmdGallery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := []string{"Usage: gibbon gallery export [--data DIR] OUTDIR   write every entry and image to a new directory",
		"       gibbon gallery import [--data DIR] INDIR    add the entries of an export (existing slugs are kept)",
		"       gibbon gallery check  [--data DIR]          verify the file and that every entry is whole"}
	printUsage := func() { fmt.Fprintln(stderr, strings.Join(usage, "\n")) }
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage()
		if len(args) == 0 {
			return usageError{"gallery needs a subcommand: export, import or check"}
		}
		return nil
	}
	sub := args[0]
	switch sub {
	case "export", "import", "check":
	default:
		printUsage()
		return usageError{fmt.Sprintf("unknown gallery subcommand %q (export, import or check)", sub)}
	}
	fs := newFlagSet("gallery "+sub, stderr, usage...)
	data := fs.String("data", "data", "Gibbon's data directory (the gallery is "+gallery.FileName+" inside)")
	var dir string
	var err error
	if sub == "check" {
		err = parseNoArgs(fs, args[1:])
	} else {
		dir, err = parseOneArg(fs, args[1:], "directory")
	}
	if err != nil {
		return err
	}
	path := filepath.Join(*data, gallery.FileName)
	store, err := gallery.Open(ctx, path)
	if err != nil {
		return err
	}
	defer store.Close()

	switch sub {
	case "export":
		st, err := store.Export(ctx, dir, entriesBar(stderr, "exporting"))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "exported %d entries and %d images from %s to %s\n", st.Entries, st.Images, path, dir)
	case "import":
		st, err := store.Import(ctx, dir, entriesBar(stderr, "importing"))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported %d entries (%d already present) from %s into %s\n", st.Entries, st.Skipped, dir, path)
	case "check":
		if err := store.Check(ctx); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return nil
}

// entriesBar shows an export's or import's progress, entry by entry.
func entriesBar(w io.Writer, verb string) gallery.Progress {
	bar := progress.New(w)
	begun := false
	return func(done, total int) {
		if !begun {
			bar.Begin(verb+" entries", 0, total)
			begun = true
		}
		bar.Update(done, "")
		if done == total {
			bar.End()
		}
	}
}
