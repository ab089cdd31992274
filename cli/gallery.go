package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"gibbon/gallery"
)

// cmdGallery backs up, restores and checks the gallery file (DATA/gallery.db).
func cmdGallery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, "Usage: gibbon gallery export [--data DIR] OUTDIR   write every entry and image to a new directory")
		fmt.Fprintln(stderr, "       gibbon gallery import [--data DIR] INDIR    add the entries of an export (existing slugs are kept)")
		fmt.Fprintln(stderr, "       gibbon gallery check  [--data DIR]          verify the file and that every entry is whole")
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return usageError{"gallery needs a subcommand: export, import or check"}
		}
		return nil
	}
	sub := args[0]
	fs := newFlagSet("gallery "+sub, stderr)
	fs.Usage = func() { usage(); fs.PrintDefaults() }
	data := fs.String("data", "data", "Gibbon's data directory (the gallery is "+gallery.FileName+" inside)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	wantArgs := 1
	switch sub {
	case "export", "import":
	case "check":
		wantArgs = 0
	default:
		usage()
		return usageError{fmt.Sprintf("unknown gallery subcommand %q (export, import or check)", sub)}
	}
	if fs.NArg() != wantArgs {
		if wantArgs == 0 {
			return usageError{"gallery check takes no arguments"}
		}
		return usageError{fmt.Sprintf("gallery %s needs exactly one directory", sub)}
	}
	path := filepath.Join(*data, gallery.FileName)
	store, err := gallery.Open(ctx, path)
	if err != nil {
		return err
	}
	defer store.Close()

	switch sub {
	case "export":
		st, err := store.Export(ctx, fs.Arg(0), progress(stderr, "exporting"))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "exported %d entries and %d images from %s to %s\n", st.Entries, st.Images, path, fs.Arg(0))
	case "import":
		st, err := store.Import(ctx, fs.Arg(0), progress(stderr, "importing"))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported %d entries (%d already present) from %s into %s\n", st.Entries, st.Skipped, fs.Arg(0), path)
	case "check":
		if err := store.Check(ctx); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return nil
}

// progress prints "verb done/total" on one line, at most a few times a second.
func progress(w io.Writer, verb string) gallery.Progress {
	var last time.Time
	return func(done, total int) {
		if done < total && time.Since(last) < 250*time.Millisecond {
			return
		}
		last = time.Now()
		fmt.Fprintf(w, "\r%s %d/%d entries", verb, done, total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
}
