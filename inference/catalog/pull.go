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
	// HubURL is the hub's base URL for entries with a Hub file (default
	// DefaultHubURL; HubSettingsFromEnv reads GIBBON_HUB_URL).
	HubURL string
	// HubToken goes as "Authorization: Bearer" to the hub's host only, never to a
	// host a download redirects to (HubSettingsFromEnv reads HF_TOKEN).
	HubToken string
	// Revision pins a Hub entry at this branch, tag or commit instead of the
	// catalog's revision or the commit an earlier pull recorded.
	Revision string
}

// Result is what Pull registered.
type Result struct {
	Entry    inference.ModelEntry
	Path     string
	Prepared *Prepared
	// Source is the URL (or file) the verified bytes came from.
	Source string
	// Pin is what the manifest records about those bytes (also Entry.Pin).
	Pin *inference.Pin
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
	if opt.Revision != "" && (e.Hub == nil || opt.From != "") {
		return nil, fmt.Errorf("--revision applies to models pulled from the hub, and %s is not one here: drop --revision", e.Name)
	}
	want, user := e.SHA256, ""
	if opt.SHA256 != "" {
		s, err := NormalizeSHA256(opt.SHA256)
		if err != nil {
			return nil, fmt.Errorf("--sha256: %w", err)
		}
		if want != "" && s != want {
			return nil, fmt.Errorf("--sha256 %s is not the checksum Gibbon pins for %s (%s)", s, e.Name, want)
		}
		want, user = s, s
	}
	prev := recordedPin(opt.Dir, e.Name)
	pin := &inference.Pin{Source: inference.PinByCatalog, SHA256: want, Size: e.Size}
	if user != "" {
		pin.Source = inference.PinByUser
	}
	var hub *hubPlan
	if e.Hub != nil && opt.From == "" {
		var err error
		if hub, err = planHub(ctx, e, user, prev, opt, log); err != nil {
			return nil, err
		}
		want, pin = hub.pin.SHA256, &hub.pin
	} else if want == "" && prev != nil && prev.SHA256 != "" {
		want = prev.SHA256 // an earlier pull's pin vouches for an import of the same file
		pin = &inference.Pin{Source: prev.Source, Repo: prev.Repo, Path: prev.Path, Commit: prev.Commit, SHA256: prev.SHA256, Size: prev.Size}
	}
	if want == "" {
		return nil, fmt.Errorf("%w: %s has no pinned SHA-256 (%s), so Gibbon will not download it unverified: "+
			"download it yourself (e.g. from %s), check its SHA-256 against a source you trust, then run "+
			"gibbon models pull --from FILE --sha256 HASH %s", ErrPinRequired, e.Name, e.PinSource, e.where(), e.Name)
	}
	classes := e.Classes
	if opt.Labels != nil && len(opt.Labels) != classes {
		return nil, fmt.Errorf("%s has %d classes but %d labels were given", e.Name, classes, len(opt.Labels))
	}
	if err := os.MkdirAll(filepath.Join(opt.Dir, DownloadsDir), 0o755); err != nil {
		return nil, fmt.Errorf("models directory: %w", diskError(opt.Dir, err))
	}

	var src, source string
	if opt.From != "" {
		if err := verifyFile(opt.From, pin.Size, want); err != nil {
			return nil, fmt.Errorf("%s is not the %s file Gibbon expects (%v): an incomplete or another file; download it again, nothing was registered", opt.From, e.Name, err)
		}
		src, source = opt.From, opt.From
		fmt.Fprintf(log, "verified %s (sha256 %s)\n", opt.From, want)
	} else {
		var err error
		if hub != nil {
			src, source, err = download(ctx, e.Name, []string{hub.url}, pin.Size, want, opt, hub.client, hub.check)
		} else {
			src, source, err = download(ctx, e.Name, e.URLs, e.Size, want, opt, nil, nil)
		}
		if err != nil {
			return nil, err
		}
	}
	pin.URL = source

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
		return nil, fmt.Errorf("%v; nothing was registered", diskError(path, err))
	}
	if opt.Labels != nil && opt.LabelsFile != "" {
		text := strings.Join(opt.Labels, "\n") + "\n"
		lp := filepath.Join(opt.Dir, opt.LabelsFile)
		if old, err := os.ReadFile(lp); err != nil || string(old) != text {
			if err := atomicfile.WriteFile(lp, []byte(text)); err != nil {
				os.Remove(path)
				return nil, fmt.Errorf("%v; nothing was registered", diskError(lp, err))
			}
		}
	}
	contract := e.Input
	contract.Name = p.InputName
	entry := inference.ModelEntry{
		Name: e.Name, File: file, SHA256: sha, Task: inference.TaskClassifier,
		Description:  describe(e, p, source, want),
		Architecture: e.Architecture, Robust: e.Robust, Role: e.Role,
		Input: contract, LabelsFile: opt.LabelsFile, OutputsLogits: p.OutputsLogits,
		Pin: pin,
	}
	old, _ := inference.ReadManifest(opt.Dir)
	if err := inference.UpdateManifest(opt.Dir, func(m *inference.Manifest) error { m.Put(entry); return nil }); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("register %s: %v; nothing was registered", e.Name, diskError(filepath.Join(opt.Dir, inference.ManifestFile), err))
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
	return &Result{Entry: entry, Path: path, Prepared: p, Source: source, Pin: pin}, nil
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

// download fetches name into the models directory's download area, trying each of
// urls (mirrors of the same bytes), and returns the verified file. A file that fails
// verification is deleted. A hub download passes its client and header check.
func download(ctx context.Context, name string, urls []string, size int64, sha string, opt Options, hub *hubClient, check func(*http.Response) error) (path, source string, err error) {
	base := filepath.Join(opt.Dir, DownloadsDir, fmt.Sprintf("%s-%s.onnx", name, sha[:16]))
	if verifyFile(base, size, sha) == nil {
		return base, urls[0], nil // verified by an earlier run that stopped before registering
	}
	os.Remove(base)
	part := base + ".part"
	f := &fetcher{client: opt.Client, progress: opt.Progress, retries: opt.Retries, backoff: opt.Backoff, stall: opt.Stall, check: check}
	if hub != nil {
		f.client, f.authorize = hub.client, hub.authorize
	}
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
	for _, url := range urls {
		err := f.fetch(ctx, name, url, part, size)
		if ctx.Err() != nil {
			return "", "", fmt.Errorf("download of %s interrupted; run the same command again to resume: %w", name, ctx.Err())
		}
		if err != nil {
			failures = append(failures, err.Error())
			continue
		}
		if err := verifyFile(part, size, sha); err != nil {
			// Wrong bytes: never keep them, never resume from them.
			os.Remove(part)
			failures = append(failures, fmt.Sprintf("%s: %v (deleted)", url, err))
			continue
		}
		if err := os.Rename(part, base); err != nil {
			return "", "", diskError(base, err)
		}
		return base, url, nil
	}
	if fi, err := os.Stat(part); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		failures = append(failures, "the partial download is kept: run the same command again to resume")
	}
	return "", "", fmt.Errorf("could not download %s, nothing was registered: %s", name, strings.Join(failures, "; "))
}
