package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/internal/progress"
	"gibbon/models/imagenet"
)

func cmdModels(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := "gibbon models list [--available] | pull NAME... | pull [--revision REV] [--sha256 HASH] NAME | pull --from FILE [--sha256 HASH] NAME | dir (gibbon models SUBCOMMAND -h for flags)"
	return runSubcommand(ctx, "models", usage, map[string]runFunc{
		"list": modelsList, "pull": modelsPull, "dir": modelsDir,
	}, args, stdout, stderr)
}

// modelsDirFlags are the flags both subcommands share.
type modelsDirFlags struct{ dir, catalog string }

func addModelsDirFlags(fs *flag.FlagSet) *modelsDirFlags {
	f := &modelsDirFlags{}
	fs.StringVar(&f.dir, "models", "", "your models directory (default: <user data dir>/gibbon/models, e.g. ~/.local/share/gibbon/models)")
	fs.StringVar(&f.catalog, "catalog", "", "a catalog JSON file ({\"models\": [...]}) to use instead of the built-in one, e.g. a mirror's")
	return f
}

func (f *modelsDirFlags) resolve() (string, catalog.Catalog, error) {
	dir := f.dir
	if dir == "" {
		d, err := catalog.DefaultModelsDir()
		if err != nil {
			return "", nil, err
		}
		dir = d
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	cat := catalog.Default()
	if f.catalog != "" {
		if cat, err = catalog.LoadFile(f.catalog); err != nil {
			return "", nil, err
		}
	}
	return dir, cat, nil
}

// modelsDir prints the models directory, for `gibbon serve --models "$(gibbon models dir)"`.
func modelsDir(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("models dir", stderr,
		"Usage: gibbon models dir [--models DIR]",
		"Prints the models directory `gibbon models pull` registers into.")
	df := addModelsDirFlags(fs)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	dir, _, err := df.resolve()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, dir)
	return nil
}

func modelsList(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("models list", stderr,
		"Usage: gibbon models list [--available] [--models DIR] [--catalog FILE]",
		"Lists the models registered in your models directory, or with --available the",
		"ImageNet classifiers `gibbon models pull` can fetch.")
	available := fs.Bool("available", false, "list the catalog of downloadable models instead")
	df := addModelsDirFlags(fs)
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	dir, cat, err := df.resolve()
	if err != nil {
		return err
	}
	man, err := inference.ReadManifest(dir)
	if err != nil {
		return err
	}
	if *available {
		return printCatalog(stdout, cat, man, dir)
	}
	return printInstalled(stdout, man, dir)
}

// printCatalog lists the models gibbon models pull can fetch, and which are in man.
func printCatalog(w io.Writer, cat catalog.Catalog, man *inference.Manifest, dir string) error {
	installed := map[string]bool{}
	for _, m := range man.Models {
		installed[m.Name] = true
	}
	t := newTable("NAME", "ARCHITECTURE", "INPUT", "SIZE", "OPSET", "STATUS")
	for _, e := range cat {
		var status []string
		switch {
		case installed[e.Name]:
			status = append(status, "installed")
		case e.PinRequired():
			status = append(status, "pin required: see pull")
		case e.HubPinned():
			status = append(status, "pinned by the hub on pull")
		}
		if e.Robust {
			status = append(status, "adversarially trained")
		}
		if e.Role != "" {
			status = append(status, "NIPS'17 "+e.Role)
		}
		size := "?"
		if e.Size > 0 {
			size = fmt.Sprintf("%.0f MB", float64(e.Size)/1e6)
		}
		t.add(e.Name, e.Architecture, e.Input.Describe(), size, strconv.Itoa(e.Opset), strings.Join(status, ", "))
	}
	if err := t.write(w); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nPull one with `gibbon models pull NAME` (into %s).\n", dir)
	if d, s := cat.WithRole(inference.RoleDefence), cat.WithRole(inference.RoleSurrogate); len(d) > 0 && len(s) > 0 {
		fmt.Fprintf(w, "The NIPS'17 setting: surrogates %s (attacks are crafted on them), defences %s.\n",
			strings.Join(s, ", "), strings.Join(d, ", "))
	}
	return nil
}

// printInstalled lists the models of dir's manifest.
func printInstalled(w io.Writer, man *inference.Manifest, dir string) error {
	if len(man.Models) == 0 {
		fmt.Fprintf(w, "No models in %s yet: `gibbon models list --available` shows what `gibbon models pull` can fetch.\n", dir)
		return nil
	}
	t := newTable("NAME", "ARCHITECTURE", "INPUT", "OUTPUT", "FILE")
	for _, m := range man.Models {
		out := "logits"
		if !m.OutputsLogits {
			out = "probabilities"
		}
		t.add(m.Name, m.Architecture, m.Input.Describe(), out, m.File)
	}
	if err := t.write(w); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d model(s) in %s\n", len(man.Models), filepath.Join(dir, inference.ManifestFile))
	return nil
}

func modelsPull(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("models pull", stderr,
		"Usage: gibbon models pull [--models DIR] NAME...",
		"       gibbon models pull [--revision REV] [--sha256 HASH] NAME",
		"       gibbon models pull --from FILE [--sha256 HASH] NAME",
		"Downloads a catalog model (resuming an interrupted download), checks its SHA-256,",
		"prepares it (opset upgrade, dynamic batch, Softmax detection, each checked by running",
		"it in ONNX Runtime) and registers it in DIR/manifest.json with its preprocessing and",
		"the ImageNet labels. Models \"pinned by the hub on pull\" take the commit and SHA-256",
		"the hub attests (GIBBON_HUB_URL picks the hub, HF_TOKEN is sent to it and never to",
		"its CDN); later pulls reuse the recorded commit. --from imports a file you already",
		"have; a hub file not stored with LFS, or a \"pin required\" model, needs --sha256.",
		"Names: gibbon models list --available")
	from := fs.String("from", "", "import this local .onnx file instead of downloading")
	sum := fs.String("sha256", "", "the file's SHA-256, verified by you (needed for pin-required models)")
	revision := fs.String("revision", "", "pin a hub model at this commit id, tag or branch instead of the recorded or catalog revision")
	df := addModelsDirFlags(fs)
	rf := addRuntimeFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	names := fs.Args()
	switch {
	case len(names) == 0:
		return usageError{"models pull needs a model NAME (see `gibbon models list --available`)"}
	case (*from != "" || *sum != "" || *revision != "") && len(names) != 1:
		return usageError{"--from, --sha256 and --revision apply to one model NAME"}
	case *revision != "" && *from != "":
		return usageError{"--revision picks a commit to download, --from imports a file: give one of them"}
	case *revision != "" && !catalog.ValidRevision(*revision):
		return usageError{fmt.Sprintf("--revision %q is not a commit id, tag or branch", *revision)}
	}
	dir, cat, err := df.resolve()
	if err != nil {
		return err
	}
	entries, err := cat.Pick(names)
	if err != nil {
		return err
	}
	openRT, closeRT := rf.lazy()
	defer closeRT()
	hubURL, token := catalog.HubSettingsFromEnv(os.Getenv)
	opt := catalog.Options{Dir: dir, From: *from, SHA256: *sum, Revision: *revision, HubURL: hubURL, HubToken: token,
		Labels: imagenet.Labels(), LabelsFile: imagenet.FileName,
		Progress: catalog.NewBar(stderr, progress.IsTerminal(stderr)), Log: stdout, Runtime: openRT}
	for _, e := range entries {
		res, err := catalog.Pull(ctx, *e, opt)
		if errors.Is(err, catalog.ErrPinRequired) {
			return err
		}
		if err != nil {
			return fmt.Errorf("pull %s: %w", e.Name, err)
		}
		printPulled(stdout, dir, res)
	}
	return nil
}

// printPulled says what a pull registered and how the model was prepared.
func printPulled(w io.Writer, dir string, res *catalog.Result) {
	p := res.Prepared
	out := "logits"
	if !p.OutputsLogits {
		out = "probabilities (ends in Softmax; gradients start at " + p.Logits + ")"
	}
	batch := "batch 1 only"
	if p.BatchDynamic {
		batch = "any batch"
	}
	fmt.Fprintf(w, "registered %s in %s\n", res.Entry.Name, filepath.Join(dir, inference.ManifestFile))
	fmt.Fprintf(w, "  file     %s\n", res.Entry.File)
	fmt.Fprintf(w, "  graph    %s, %s, input %q %v, output %s\n", p.Upgrade, batch, p.InputName, p.InputShape, out)
	fmt.Fprintf(w, "  input    %s\n", res.Entry.Input.Describe())
	if pin := res.Pin; pin != nil {
		at := ""
		if pin.Commit != "" {
			at = fmt.Sprintf(" at commit %s of %s (%s)", pin.Commit, pin.Repo, pin.Path)
		}
		fmt.Fprintf(w, "  pin      sha256 %s by the %s%s\n", pin.SHA256, pin.Source, at)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "  note     %s\n", n)
	}
}
