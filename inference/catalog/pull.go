package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/internal/atomicfile"
)

// DownloadsDir is where downloads wait inside a models directory: NAME-SHA.onnx.part
// while arriving, NAME-SHA.onnx once verified and until registered.
const DownloadsDir = ".downloads"

// Options configures Pull.
type Options struct {
	// Dir is the models directory (created if missing).
	Dir string
	// From imports a local file instead of downloading.
	From string
	// SHA256 is a checksum the user verified: required for pin-required entries,
	// and if given for a pinned entry it must equal the pin.
	SHA256 string
	// Labels are written to Dir/LabelsFile, which the manifest entry names; their
	// count must equal the entry's classes.
	Labels     []string
	LabelsFile string
	// Runtime opens ONNX Runtime; it is called only once a file has been verified.
	Runtime func() (*inference.Runtime, error)
	Client  *http.Client
	// Progress hears about downloads; Log gets one-line messages. Both may be nil.
	Progress Progress
	Log      io.Writer
	// Retries per URL after a cut connection (default 3) and the first wait (default 1 s).
	Retries int
	Backoff time.Duration
	// Stall cuts a connection silent this long (default 1 min) and resumes.
	Stall time.Duration
}

// Result is what Pull registered.
type Result struct {
	Entry    inference.ModelEntry
	Path     string
	Prepared *Prepared
	// Source is the URL (or file) the verified bytes came from.
	Source string
}

// Pull brings a catalog entry into opt.Dir: download (resumed from an earlier
// attempt's .part file, mirrors tried in order) or --from import, SHA-256 (and size)
// verification, Prepare, then an atomic write of the prepared model and of the
// manifest entry. A file that fails verification is deleted and nothing is registered.
func Pull(ctx context.Context, e Entry, opt Options) (*Result, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if opt.Dir == "" {
		return nil, errors.New("no models directory")
	}
	log := opt.Log
	if log == nil {
		log = io.Discard
	}
	want := e.SHA256
	if opt.SHA256 != "" {
		s, err := NormalizeSHA256(opt.SHA256)
		if err != nil {
			return nil, fmt.Errorf("--sha256: %w", err)
		}
		if want != "" && s != want {
			return nil, fmt.Errorf("--sha256 %s is not the checksum Gibbon pins for %s (%s)", s, e.Name, want)
		}
		want = s
	}
	if want == "" {
		return nil, fmt.Errorf("%w: %s has no pinned SHA-256 (%s), so Gibbon will not download it unverified.\n"+
			"Download it yourself, e.g. from %s, check its SHA-256 against a source you trust, then import it:\n"+
			"  gibbon models pull --from FILE --sha256 HASH %s", ErrPinRequired, e.Name, e.PinSource, e.URLs[0], e.Name)
	}
	classes := e.Classes
	if opt.Labels != nil && len(opt.Labels) != classes {
		return nil, fmt.Errorf("%s has %d classes but %d labels were given", e.Name, classes, len(opt.Labels))
	}
	if err := os.MkdirAll(filepath.Join(opt.Dir, DownloadsDir), 0o755); err != nil {
		return nil, fmt.Errorf("models directory: %w", err)
	}

	var src, source string
	if opt.From != "" {
		if err := verifyFile(opt.From, e.Size, want); err != nil {
			return nil, fmt.Errorf("%s is not the %s file Gibbon expects: %v; nothing was registered", opt.From, e.Name, err)
		}
		src, source = opt.From, opt.From
		fmt.Fprintf(log, "verified %s (sha256 %s)\n", opt.From, want)
	} else {
		var err error
		if src, source, err = download(ctx, e, want, opt); err != nil {
			return nil, err
		}
	}

	if opt.Runtime == nil {
		return nil, errors.New("no ONNX Runtime to prepare the model with")
	}
	rt, err := opt.Runtime()
	if err != nil {
		return nil, fmt.Errorf("%s is verified and kept for the next try, but preparing it needs ONNX Runtime: %w", src, err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, err
	}
	p, err := Prepare(ctx, rt, data, e.Input, classes)
	if err != nil {
		kept := ""
		if opt.From == "" {
			kept = fmt.Sprintf(" (the verified download stays at %s until you delete it)", src)
		}
		return nil, fmt.Errorf("prepare %s: %w; nothing was registered%s", e.Name, err, kept)
	}
	data = nil

	sum := sha256.Sum256(p.Model)
	sha := hex.EncodeToString(sum[:])
	file := fmt.Sprintf("%s-%s.onnx", e.Name, sha[:12])
	path := filepath.Join(opt.Dir, file)
	if err := atomicfile.WriteFile(path, p.Model); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if opt.Labels != nil && opt.LabelsFile != "" {
		text := strings.Join(opt.Labels, "\n") + "\n"
		lp := filepath.Join(opt.Dir, opt.LabelsFile)
		if old, err := os.ReadFile(lp); err != nil || string(old) != text {
			if err := atomicfile.WriteFile(lp, []byte(text)); err != nil {
				return nil, fmt.Errorf("write %s: %w", lp, err)
			}
		}
	}
	contract := e.Input
	contract.Name = p.InputName
	entry := inference.ModelEntry{
		Name: e.Name, File: file, SHA256: sha, Task: inference.TaskClassifier,
		Description:  describe(e, p, source, want),
		Architecture: e.Architecture, Robust: e.Robust,
		Input: contract, LabelsFile: opt.LabelsFile, OutputsLogits: p.OutputsLogits,
	}
	old, _ := inference.ReadManifest(opt.Dir)
	if err := inference.UpdateManifest(opt.Dir, func(m *inference.Manifest) error { m.Put(entry); return nil }); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("register %s: %w", e.Name, err)
	}
	// The manifest now names the new file: drop what it replaced, and the download.
	if old != nil {
		for _, me := range old.Models {
			if me.Name == e.Name && me.File != file && ValidName(strings.TrimSuffix(me.File, ".onnx")) {
				os.Remove(filepath.Join(opt.Dir, me.File))
			}
		}
	}
	if opt.From == "" {
		os.Remove(src)
	}
	return &Result{Entry: entry, Path: path, Prepared: p, Source: source}, nil
}

func describe(e Entry, p *Prepared, source, sha string) string {
	var steps []string
	if p.Upgrade != nil && p.Upgrade.From != p.Upgrade.To {
		steps = append(steps, p.Upgrade.String())
	}
	steps = append(steps, p.Notes...)
	if !p.OutputsLogits {
		steps = append(steps, "ends in Softmax (logits: "+p.Logits+")")
	}
	s := fmt.Sprintf("%s. Source: %s (sha256 %s).", e.Description, source, sha)
	if len(steps) > 0 {
		s += " Prepared: " + strings.Join(steps, "; ") + "."
	}
	return s
}

// download fetches e into the models directory's download area, trying each mirror,
// and returns the verified file. A file that fails verification is deleted.
func download(ctx context.Context, e Entry, sha string, opt Options) (path, source string, err error) {
	base := filepath.Join(opt.Dir, DownloadsDir, fmt.Sprintf("%s-%s.onnx", e.Name, sha[:16]))
	if verifyFile(base, e.Size, sha) == nil {
		return base, e.URLs[0], nil // verified by an earlier run that stopped before registering
	}
	os.Remove(base)
	part := base + ".part"
	f := &fetcher{client: opt.Client, progress: opt.Progress, retries: opt.Retries, backoff: opt.Backoff, stall: opt.Stall}
	if f.client == nil {
		f.client = http.DefaultClient
	}
	if f.progress == nil {
		f.progress = noProgress{}
	}
	if f.retries == 0 {
		f.retries = 3
	}
	if f.backoff == 0 {
		f.backoff = time.Second
	}
	var failures []string
	for _, url := range e.URLs {
		err := f.fetch(ctx, e.Name, url, part, e.Size)
		if ctx.Err() != nil {
			return "", "", fmt.Errorf("download of %s interrupted; run the same command again to resume: %w", e.Name, ctx.Err())
		}
		if err != nil {
			failures = append(failures, err.Error())
			continue
		}
		if err := verifyFile(part, e.Size, sha); err != nil {
			// Wrong bytes: never keep them, never resume from them.
			os.Remove(part)
			failures = append(failures, fmt.Sprintf("%s: %v (deleted)", url, err))
			continue
		}
		if err := os.Rename(part, base); err != nil {
			return "", "", err
		}
		return base, url, nil
	}
	if _, err := os.Stat(part); err == nil {
		failures = append(failures, "the partial download is kept: run the same command again to resume")
	}
	return "", "", fmt.Errorf("could not download %s; nothing was registered:\n  %s", e.Name, strings.Join(failures, "\n  "))
}
