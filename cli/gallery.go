package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/internal/progress"
)

// cmdGallery backs up, restores and checks a gallery: the file DATA/gallery.db,
// or the one --db names (a file or a postgres:// URL). Export from one and
// import into the other moves a gallery between SQLite and PostgreSQL.
func cmdGallery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := []string{"Usage: gibbon gallery export [--data DIR | --db DB] OUTDIR   write every entry and image to a new directory",
		"       gibbon gallery import [--data DIR | --db DB] INDIR    add the entries of an export (existing slugs are kept)",
		"       gibbon gallery check  [--data DIR | --db DB] [--reproduce [--models DIR]]",
		"                                                             verify the gallery and that every entry is whole;",
		"                                                             --reproduce also replays every run from its plan",
		"DB is a gallery file or a postgres:// URL; export from one and import into the other to move a gallery."}
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
	db := fs.String("db", "", "the gallery: a file path or a postgres:// URL (default: "+gallery.FileName+" in --data)")
	reproduce := fs.Bool("reproduce", false, "check: replay every run from its recorded plan and compare the results")
	modelsDir := fs.String("models", "", "check --reproduce: a folder of your models, besides the built-in ones")
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
	store, err := gallery.Open(ctx, galleryTarget(*db, *data))
	if err != nil {
		return err
	}
	defer store.Close()
	where := store.Location()

	switch sub {
	case "export":
		st, err := store.Export(ctx, dir, entriesBar(stderr, "exporting"))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "exported %d entries and %d images from %s to %s\n", st.Entries, st.Images, where, dir)
	case "import":
		st, err := store.Import(ctx, dir, entriesBar(stderr, "importing"))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported %d entries (%d already present) from %s into %s\n", st.Entries, st.Skipped, dir, where)
	case "check":
		if err := store.Check(ctx); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok\n", where)
		if *reproduce {
			return reproduceGallery(ctx, store, *modelsDir, stdout, stderr)
		}
	}
	return nil
}

// reproduceGallery replays every run of the gallery and reports each: reproduced,
// not reproduced (what differs), or not replayable here (which model is missing).
func reproduceGallery(ctx context.Context, store *gallery.Store, modelsDir string, stdout, stderr io.Writer) error {
	rt, err := inference.OpenRuntime(inference.RuntimeConfig{Logger: cliLogger(stderr)})
	if err != nil {
		return err
	}
	defer rt.Close()
	z, err := replayZoo(rt, modelsDir)
	if err != nil {
		return err
	}
	defer z.Close()
	var ok, bad, skipped int
	opt := gallery.ListOptions{Filter: gallery.Filter{Kind: gallery.KindRun}, Limit: gallery.MaxPageSize}
	for {
		page, err := store.List(ctx, opt)
		if err != nil {
			return err
		}
		for _, s := range page.Entries {
			e, err := store.Get(ctx, s.Slug)
			if err != nil {
				return err
			}
			orig, adv, err := store.Images(ctx, e)
			if err != nil {
				return err
			}
			v, err := engine.Verify(ctx, z, e, orig, adv, engine.CLILimits)
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				skipped++
				fmt.Fprintf(stdout, "%s: %v\n", s.Slug, err)
			case v.Reproduced:
				ok++
				fmt.Fprintf(stdout, "%s: reproduced bit-for-bit\n", s.Slug)
			default:
				bad++
				printVerification(stdout, s.Slug, v)
			}
		}
		if page.Next == "" {
			break
		}
		opt.Cursor = page.Next
	}
	fmt.Fprintf(stdout, "%d run(s) reproduced, %d not reproduced, %d could not be replayed here\n", ok, bad, skipped)
	if bad > 0 {
		return fmt.Errorf("%d run(s) not reproduced", bad)
	}
	return nil
}

// galleryTarget is the gallery a command opens: db (a file or a postgres://
// URL) when given, else the gallery file in the data directory.
func galleryTarget(db, dataDir string) string {
	if db != "" {
		return db
	}
	return filepath.Join(dataDir, gallery.FileName)
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
