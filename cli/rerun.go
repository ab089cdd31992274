package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gibbon/gallery"
	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/inference/zoo"
	"gibbon/models"
)

// errNotReproduced is a replay that did not give the stored result (exit code 1).
var errNotReproduced = errors.New("not reproduced")

// cmdRerun replays a saved run from its recorded plan and says whether it gives
// the stored result bit for bit.
func cmdRerun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rerun", stderr,
		"Usage: gibbon rerun [--data DIR] [--models DIR] SLUG     a gallery entry",
		"       gibbon rerun [--models DIR] DIR/entry.json         an exported entry (original.png and adversarial.png beside it,",
		"                                                          or images/SHA.png of a gallery export)",
		"Replays the recorded plan on the stored original with the same models (by checksum) and seed, and",
		"compares the adversarial image and every defence's verdict with the stored ones.")
	data := fs.String("data", "data", "Gibbon's data directory (the gallery is "+gallery.FileName+" inside)")
	modelsDir := fs.String("models", "", "a folder of your models (manifest.json), besides the built-in ones")
	out := addOutputFlags(fs, false)
	rf := addRuntimeFlags(fs)
	what, err := parseOneArg(fs, args, "SLUG or entry.json")
	if err != nil {
		return err
	}
	e, orig, adv, err := loadReplayable(ctx, *data, what)
	if err != nil {
		return err
	}
	rt, err := rf.open(1)
	if err != nil {
		return err
	}
	defer rt.Close()
	z, err := replayZoo(rt, *modelsDir)
	if err != nil {
		return err
	}
	defer z.Close()
	v, err := engine.Verify(ctx, z, e, orig, adv, engine.CLILimits)
	if err != nil {
		return err
	}
	if err := out.write(stdout, verificationReport(v), nil, func(w io.Writer) { printVerification(w, what, v) }); err != nil {
		return err
	}
	if !v.Reproduced {
		return errNotReproduced
	}
	return nil
}

// replayZoo is the built-in models and, when given, the user's folder: the zoo a
// server with --models DIR would serve.
func replayZoo(rt *inference.Runtime, dir string) (*zoo.Zoo, error) {
	sources := []inference.ModelSource{{Name: "built-in", FS: models.FS()}}
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, usageError{fmt.Sprintf("--models %s is not a directory", dir)}
		}
		sources = append(sources, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	}
	return zoo.Open(rt, sources...), nil
}

// loadReplayable reads an entry and its two images: from the gallery by slug, or
// from an exported entry file.
func loadReplayable(ctx context.Context, dataDir, what string) (*gallery.Entry, []byte, []byte, error) {
	if gallery.ValidSlug(what) {
		store, err := gallery.Open(ctx, filepath.Join(dataDir, gallery.FileName))
		if err != nil {
			return nil, nil, nil, err
		}
		defer store.Close()
		e, err := store.Get(ctx, what)
		if errors.Is(err, gallery.ErrNotFound) {
			return nil, nil, nil, usageError{fmt.Sprintf("the gallery in %s has no entry %s", dataDir, what)}
		}
		if err != nil {
			return nil, nil, nil, err
		}
		orig, adv, err := store.Images(ctx, e)
		return e, orig, adv, err
	}
	if !strings.HasSuffix(what, ".json") {
		return nil, nil, nil, usageError{fmt.Sprintf("%q is neither a gallery slug nor an entry .json file", what)}
	}
	raw, err := os.ReadFile(what)
	if err != nil {
		return nil, nil, nil, err
	}
	var e gallery.Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: not a gallery entry: %w", what, err)
	}
	dir := filepath.Dir(what)
	read := func(name, sha string) ([]byte, error) {
		for _, p := range []string{filepath.Join(dir, name), filepath.Join(dir, "..", "images", sha+".png")} {
			b, err := os.ReadFile(p)
			if err == nil {
				if gallery.SHA256(b) != sha {
					return nil, fmt.Errorf("%s does not match the entry's %s (SHA-256 %s…): not this entry's image", p, name, sha[:min(12, len(sha))])
				}
				return b, nil
			}
		}
		return nil, fmt.Errorf("%s: no %s beside it (or images/%s.png of a gallery export)", what, name, sha)
	}
	orig, err := read("original.png", e.OriginalSHA)
	if err != nil {
		return nil, nil, nil, err
	}
	adv, err := read("adversarial.png", e.AdversarialSHA)
	if err != nil {
		return nil, nil, nil, err
	}
	return &e, orig, adv, nil
}

// verificationJSON is a replay's outcome as --json prints it.
type verificationJSON struct {
	Slug          string                `json:"slug"`
	Reproduced    bool                  `json:"reproduced"`
	Summary       string                `json:"summary"`
	Values        int                   `json:"values"`
	Changed       int                   `json:"changed"`
	MaxDiff       int                   `json:"max_diff_255"`
	Differences   []string              `json:"differences,omitempty"`
	Deterministic bool                  `json:"deterministic"`
	Providers     []engine.PassProvider `json:"providers"`
}

func verificationReport(v *engine.Verification) verificationJSON {
	return verificationJSON{Slug: v.Slug, Reproduced: v.Reproduced, Summary: v.Summary(), Values: v.Values, Changed: v.Changed,
		MaxDiff: v.MaxDiff, Differences: v.Differences, Deterministic: v.Deterministic, Providers: v.Providers}
}

func printVerification(w io.Writer, what string, v *engine.Verification) {
	if v.Reproduced {
		fmt.Fprintf(w, "%s: reproduced bit-for-bit (the same adversarial image and verdicts; runs on %s)\n", what, providersText(v.Providers))
		return
	}
	fmt.Fprintf(w, "%s: %s\n", what, v.Summary())
	for _, d := range v.Differences {
		fmt.Fprintf(w, "  %s\n", d)
	}
}
