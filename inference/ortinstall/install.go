package ortinstall

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"gibbon/inference"
)

// Installer puts the pinned ONNX Runtime library into Dir.
type Installer struct {
	// Registry is the npm registry's base URL (see ResolveRegistry). Only Install
	// needs it.
	Registry string
	// Dir receives the library; empty means inference.CacheDir().
	Dir string
	// Client fetches from the registry; nil means a client with sane timeouts.
	Client *http.Client
	// Progress gets a progress bar when Terminal is set, else a few plain lines;
	// nil means silence.
	Progress io.Writer
	Terminal bool
	// StallTimeout gives up on a download that sends nothing for this long
	// (default one minute).
	StallTimeout time.Duration

	// release and platform replace the pinned release and this machine's platform
	// in tests; nothing else sets them.
	release  *release
	platform string
}

// Result says what Install did.
type Result struct {
	// Path is the installed library.
	Path string
	// AlreadyInstalled: the files were there and matched their pins; nothing was fetched.
	AlreadyInstalled bool
	// Replaced: a file was there but did not match its pin, and was replaced.
	Replaced bool
	// Downloaded is the tarball's size when one was fetched.
	Downloaded int64
}

const (
	tempPrefix = ".gibbon-install-"
	tempSuffix = ".part"
)

func (in *Installer) rel() *release {
	if in.release != nil {
		return in.release
	}
	return &pinned
}

func (in *Installer) files() ([]pinnedFile, string, error) {
	p := in.platform
	if p == "" {
		p = Platform()
	}
	files, ok := in.rel().platforms[p]
	if !ok {
		return nil, p, fmt.Errorf("onnxruntime-node %s has no library for %s: build ONNX Runtime %s yourself and pass --ort-lib or set GIBBON_ORT_LIB", in.rel().version, p, inference.ORTVersion)
	}
	return files, p, nil
}

func (in *Installer) dir() (string, error) {
	if in.Dir != "" {
		return in.Dir, nil
	}
	return inference.CacheDir()
}

// Check reports whether every file is in place and matches its pin, without network.
// present says some pinned file exists (matching or not).
func (in *Installer) Check() (lib string, ok, present bool, err error) {
	files, _, err := in.files()
	if err != nil {
		return "", false, false, err
	}
	dir, err := in.dir()
	if err != nil {
		return "", false, false, err
	}
	ok = true
	for _, f := range files {
		match, exists, err := fileMatches(filepath.Join(dir, f.name), f)
		if err != nil {
			return "", false, false, err
		}
		present = present || exists
		ok = ok && match
	}
	return filepath.Join(dir, files[0].name), ok, present, nil
}

func fileMatches(p string, f pinnedFile) (match, exists bool, err error) {
	st, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if !st.Mode().IsRegular() || st.Size() != f.size {
		return false, true, nil
	}
	fh, err := os.Open(p)
	if err != nil {
		return false, true, err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return false, true, fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == f.sha256, true, nil
}

// Install makes sure the library is in place: when the installed files match their
// pins it does nothing; otherwise it downloads the tarball into a temporary file,
// hashing on the way, refuses it unless size and sha512 match the pinned integrity,
// and only then extracts this platform's files (each checked against its sha256)
// and renames them into place. Every temporary file is removed on every path out.
func (in *Installer) Install(ctx context.Context) (Result, error) {
	files, platform, err := in.files()
	if err != nil {
		return Result{}, err
	}
	lib, ok, present, err := in.Check()
	if err != nil {
		return Result{}, err
	}
	if ok {
		return Result{Path: lib, AlreadyInstalled: true}, nil
	}
	if in.Registry == "" {
		return Result{}, ErrNoRegistry
	}
	dir, _ := in.dir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("create %s: %w", dir, err)
	}
	removeStaleTemps(dir)
	rel := in.rel()
	tarURL, err := in.tarballURL(ctx)
	if err != nil {
		return Result{}, err
	}
	tgz, err := in.download(ctx, tarURL, dir)
	if err != nil {
		return Result{}, err
	}
	defer os.Remove(tgz)
	if err := extract(ctx, tgz, dir, platform, files); err != nil {
		return Result{}, fmt.Errorf("extract %s@%s: %w", rel.pkg, rel.version, err)
	}
	return Result{Path: lib, Replaced: present, Downloaded: rel.size}, nil
}

// tarballURL reads the version's metadata from the registry and checks the
// integrity it announces against the pin before anything large is fetched.
func (in *Installer) tarballURL(ctx context.Context) (string, error) {
	rel := in.rel()
	metaURL := in.Registry + "/" + rel.pkg + "/" + rel.version
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metaURL, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := in.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("registry metadata: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("registry metadata: GET %s: %s", metaURL, resp.Status)
	}
	var meta struct {
		Dist struct {
			Tarball   string `json:"tarball"`
			Integrity string `json:"integrity"`
		} `json:"dist"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&meta); err != nil {
		return "", fmt.Errorf("registry metadata from %s: %w", metaURL, err)
	}
	if meta.Dist.Integrity != "" && meta.Dist.Integrity != rel.integrity {
		return "", fmt.Errorf("the registry announces integrity %s for %s@%s, Gibbon pins %s: refusing to install", meta.Dist.Integrity, rel.pkg, rel.version, rel.integrity)
	}
	if u, err := url.Parse(meta.Dist.Tarball); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		return meta.Dist.Tarball, nil
	}
	return in.Registry + "/" + rel.pkg + "/-/" + rel.pkg + "-" + rel.version + ".tgz", nil
}

func (in *Installer) client() *http.Client {
	if in.Client != nil {
		return in.Client
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: tr}
}

var errStalled = errors.New("download stalled")

// download streams the tarball into a temporary file in dir, hashing as it goes,
// and returns the file only when its size and sha512 match the pin.
func (in *Installer) download(ctx context.Context, tarURL, dir string) (_ string, err error) {
	rel := in.rel()
	wantSum, err := parseIntegrity(rel.integrity)
	if err != nil {
		return "", err
	}
	stall := in.StallTimeout
	if stall <= 0 {
		stall = time.Minute
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer timer.Stop()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tarURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := in.client().Do(req)
	if err != nil {
		return "", downloadErr(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download: GET %s: %s", tarURL, resp.Status)
	}
	if resp.ContentLength >= 0 && resp.ContentLength != rel.size {
		return "", fmt.Errorf("download: %s is %d bytes, the pinned %s@%s is %d: refusing", tarURL, resp.ContentLength, rel.pkg, rel.version, rel.size)
	}
	tmp, err := os.CreateTemp(dir, tempPrefix+rel.pkg+"-"+rel.version+"-*.tgz"+tempSuffix)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	sum := sha512.New()
	bar := newProgress(in.Progress, in.Terminal, fmt.Sprintf("downloading %s %s", rel.pkg, rel.version), rel.size)
	body := &stallReader{r: resp.Body, timer: timer, d: stall}
	// One byte past the pinned size is enough to know the body is too long.
	n, err := io.Copy(io.MultiWriter(tmp, sum, bar), io.LimitReader(body, rel.size+1))
	bar.done()
	if err != nil {
		return "", downloadErr(ctx, err)
	}
	if n != rel.size {
		return "", fmt.Errorf("download: got %d bytes, the pinned %s@%s is %d: refusing", n, rel.pkg, rel.version, rel.size)
	}
	if got := sum.Sum(nil); string(got) != string(wantSum) {
		return "", fmt.Errorf("download: sha512 of %s is %s, the pinned integrity is %s: refusing", tarURL, "sha512-"+base64.StdEncoding.EncodeToString(got), rel.integrity)
	}
	if err := tmp.Sync(); err != nil {
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return tmp.Name(), nil
}

func downloadErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		if errors.Is(cause, errStalled) {
			return fmt.Errorf("download: no data for too long: %w", cause)
		}
		return fmt.Errorf("download interrupted: %w", cause)
	}
	return fmt.Errorf("download: %w", err)
}

// stallReader pushes the stall deadline back on every read that brings data.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.timer.Reset(s.d)
	}
	return n, err
}

func parseIntegrity(sri string) ([]byte, error) {
	b64, ok := strings.CutPrefix(sri, "sha512-")
	if !ok {
		return nil, fmt.Errorf("pinned integrity %q is not sha512", sri)
	}
	sum, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sum) != sha512.Size {
		return nil, fmt.Errorf("pinned integrity %q is not a sha512 digest", sri)
	}
	return sum, nil
}

// extract takes the platform's files out of a verified tarball into temporary files
// in dir, checks each against its pin, then renames them into place, the library
// (files[0]) last so that its presence means its companions are there too.
func extract(ctx context.Context, tgz, dir, platform string, files []pinnedFile) (err error) {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	want := map[string]pinnedFile{}
	for _, pf := range files {
		want[path.Join("package/bin/napi-v6", platform, pf.name)] = pf
	}
	temps := map[string]string{} // file name -> temp path
	defer func() {
		if err != nil {
			for _, t := range temps {
				os.Remove(t)
			}
		}
	}()
	tr := tar.NewReader(zr)
	for len(temps) < len(files) {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tarball: %w", err)
		}
		pf, ok := want[path.Clean(hdr.Name)]
		if !ok || hdr.Typeflag != tar.TypeReg || temps[pf.name] != "" {
			continue
		}
		tmp, err := writeTemp(dir, tr, pf)
		if tmp != "" {
			temps[pf.name] = tmp
		}
		if err != nil {
			return err
		}
	}
	for _, pf := range files {
		if temps[pf.name] == "" {
			return fmt.Errorf("the tarball has no package/bin/napi-v6/%s/%s", platform, pf.name)
		}
	}
	for i := len(files) - 1; i >= 0; i-- {
		name := files[i].name
		if err := os.Rename(temps[name], filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
		delete(temps, name)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the renames durable where the OS allows
		d.Close()
	}
	return nil
}

// writeTemp copies one tar entry into a temporary file, checking size and sha256.
func writeTemp(dir string, r io.Reader, pf pinnedFile) (string, error) {
	tmp, err := os.CreateTemp(dir, tempPrefix+pf.name+"-*"+tempSuffix)
	if err != nil {
		return "", err
	}
	var h hash.Hash = sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, pf.size+1))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && (n != pf.size || hex.EncodeToString(h.Sum(nil)) != pf.sha256) {
		err = fmt.Errorf("%s in the tarball does not match its pinned size and sha256", pf.name)
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o755)
	}
	return tmp.Name(), err
}

// removeStaleTemps deletes temporary files an install killed outright (SIGKILL,
// power loss) left behind; a running install's files are younger than an hour.
func removeStaleTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) || !strings.HasSuffix(e.Name(), tempSuffix) {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Hour {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
