package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultHubURL is the hub the catalog's Hub entries live on. Options.HubURL (the
// CLI: GIBBON_HUB_URL) points Gibbon at another one: a mirror, or a test server.
const DefaultHubURL = "https://huggingface.co"

// What Gibbon relies on from the hub (README, "Pinning by the hub"):
//
//	GET {hub}/api/models/{repo}/revision/{revision}?blobs=true
//	    JSON: "sha" is the commit the revision resolves to; "siblings" lists the files
//	    at that commit, each with "rfilename", "size" and, for a file stored with Git
//	    LFS, "lfs": {"sha256", "size"}. 404 with X-Error-Code RepoNotFound or
//	    RevisionNotFound; 401/403 for private or gated repositories.
//	GET {hub}/{repo}/resolve/{commit}/{path}
//	    an LFS file: 302 to a CDN host, with X-Repo-Commit (the commit), X-Linked-Etag
//	    (the quoted SHA-256) and X-Linked-Size; any other file: 200 with the bytes and
//	    X-Repo-Commit. Range requests resume a download.
//	429 or 503 with Retry-After (seconds or an HTTP date) when the hub is busy.
//
// A token goes as "Authorization: Bearer" to the hub's own scheme and host only;
// a redirect elsewhere (the CDN) never sees it.
const (
	headerRepoCommit  = "X-Repo-Commit"
	headerLinkedEtag  = "X-Linked-Etag"
	headerLinkedSize  = "X-Linked-Size"
	headerErrorCode   = "X-Error-Code"
	defaultRevision   = "main"
	maxRetryAfterWait = time.Minute
)

// HubSettingsFromEnv reads the hub's base URL (GIBBON_HUB_URL, default
// DefaultHubURL) and token (HF_TOKEN) from getenv (os.Getenv).
func HubSettingsFromEnv(getenv func(string) string) (baseURL, token string) {
	baseURL = strings.TrimSpace(getenv("GIBBON_HUB_URL"))
	if baseURL == "" {
		baseURL = DefaultHubURL
	}
	return baseURL, strings.TrimSpace(getenv("HF_TOKEN"))
}

var (
	hubRepoRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$`)
	hubRevRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$`)
	commitRE  = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

func (f *HubFile) validate() error {
	if !hubRepoRE.MatchString(f.Repo) || strings.Contains(f.Repo, "..") {
		return fmt.Errorf("hub repo %q is not owner/name", f.Repo)
	}
	if f.Path == "" || strings.HasPrefix(f.Path, "/") || strings.Contains(f.Path, "..") || strings.Contains(f.Path, "\\") {
		return fmt.Errorf("hub path %q is not a relative file path", f.Path)
	}
	if f.Revision != "" && !ValidRevision(f.Revision) {
		return fmt.Errorf("hub revision %q is not a branch, tag or commit", f.Revision)
	}
	return nil
}

// ValidRevision reports whether s can name a branch, tag or commit on the hub.
func ValidRevision(s string) bool { return hubRevRE.MatchString(s) && !strings.Contains(s, "..") }

// hubAttest is what the hub says about a file at a commit.
type hubAttest struct {
	Commit string
	// SHA256 is the Git LFS object id; empty when the file is not stored with LFS.
	SHA256 string
	Size   int64
}

// hubClient talks to one hub.
type hubClient struct {
	base    *url.URL
	token   string
	client  *http.Client
	retries int
	backoff time.Duration
}

func newHubClient(opt Options) (*hubClient, error) {
	raw := opt.HubURL
	if raw == "" {
		raw = DefaultHubURL
	}
	base, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("hub URL %q is not an http(s) URL: fix GIBBON_HUB_URL", raw)
	}
	h := &hubClient{base: base, token: opt.HubToken, retries: opt.Retries, backoff: opt.Backoff}
	if h.retries == 0 {
		h.retries = 3
	}
	if h.backoff == 0 {
		h.backoff = time.Second
	}
	c := http.DefaultClient
	if opt.Client != nil {
		c = opt.Client
	}
	cc := *c
	inner := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !h.isHub(req.URL) {
			req.Header.Del("Authorization") // the CDN gets no credentials
		}
		if inner != nil {
			return inner(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	h.client = &cc
	return h, nil
}

// isHub reports whether u is on the hub's own scheme and host (port included).
func (h *hubClient) isHub(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, h.base.Scheme) && strings.EqualFold(u.Host, h.base.Host)
}

// authorize adds the token to a request bound for the hub itself.
func (h *hubClient) authorize(req *http.Request) {
	req.Header.Set("User-Agent", "gibbon")
	if h.token != "" && h.isHub(req.URL) {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
}

func (h *hubClient) revisionURL(repo, rev string) string {
	return h.base.String() + "/api/models/" + repo + "/revision/" + url.PathEscape(rev) + "?blobs=true"
}

// resolveURL is the download URL of path at commit.
func (h *hubClient) resolveURL(repo, commit, path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return h.base.String() + "/" + repo + "/resolve/" + commit + "/" + strings.Join(parts, "/")
}

// stat resolves rev to a commit and reads what the hub attests about f at it.
func (h *hubClient) stat(ctx context.Context, f HubFile, rev string) (*hubAttest, error) {
	var info struct {
		SHA      string `json:"sha"`
		Siblings []struct {
			Name string `json:"rfilename"`
			Size int64  `json:"size"`
			LFS  *struct {
				SHA256 string `json:"sha256"`
				Size   int64  `json:"size"`
			} `json:"lfs"`
		} `json:"siblings"`
	}
	what := fmt.Sprintf("%s at revision %s", f.Repo, rev)
	if err := h.getJSON(ctx, h.revisionURL(f.Repo, rev), what, &info); err != nil {
		return nil, err
	}
	commit := strings.ToLower(info.SHA)
	if !commitRE.MatchString(commit) {
		return nil, fmt.Errorf("the hub's answer for %s names no commit (sha %q): is GIBBON_HUB_URL a hub?", what, info.SHA)
	}
	var onnx []string
	for _, s := range info.Siblings {
		if s.Name != f.Path {
			if strings.HasSuffix(s.Name, ".onnx") {
				onnx = append(onnx, s.Name)
			}
			continue
		}
		a := &hubAttest{Commit: commit, Size: s.Size}
		if s.LFS != nil {
			sum, err := NormalizeSHA256(s.LFS.SHA256)
			if err != nil {
				return nil, fmt.Errorf("the hub's LFS metadata for %s at commit %s is malformed: %v", f.Path, commit, err)
			}
			a.SHA256, a.Size = sum, s.LFS.Size
		}
		return a, nil
	}
	others := "no .onnx files"
	if len(onnx) > 0 {
		if len(onnx) > 5 {
			onnx = append(onnx[:5], "…")
		}
		others = "its .onnx files: " + strings.Join(onnx, ", ")
	}
	return nil, fmt.Errorf("%s at commit %s has no file %s (renamed or removed? %s): pull an older commit with --revision, or use a catalog that names the new file", f.Repo, commit[:12], f.Path, others)
}

// getJSON GETs an API route into v, retrying when the hub is busy.
func (h *hubClient) getJSON(ctx context.Context, u, what string, v any) error {
	wait := h.backoff
	for attempt := 0; ; attempt++ {
		err := h.getJSONOnce(ctx, u, what, v)
		var busy throttled
		if err == nil || ctx.Err() != nil || !errors.As(err, &busy) {
			return err
		}
		if attempt >= h.retries {
			return fmt.Errorf("%v; gave up after %d tries: try again later (HF_TOKEN raises the hub's limits)", busy.err, attempt+1)
		}
		d := wait
		if busy.after > 0 {
			if busy.after > maxRetryAfterWait {
				return fmt.Errorf("%v and asks to wait %s: try again then (HF_TOKEN raises the hub's limits)", busy.err, busy.after.Round(time.Second))
			}
			d = busy.after
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		wait *= 2
	}
}

func (h *hubClient) getJSONOnce(ctx context.Context, u, what string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	h.authorize(req)
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if isTransient(err) {
			return throttled{err: netError(h.base.Host, err)}
		}
		return netError(h.base.Host, err)
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("the hub refused access to %s (HTTP %d): it may be private or gated; set HF_TOKEN to a token that can read it", what, code)
	case code == http.StatusNotFound:
		if resp.Header.Get(headerErrorCode) == "RevisionNotFound" {
			return fmt.Errorf("the hub has no %s (HTTP 404): check --revision or the catalog's revision", what)
		}
		return fmt.Errorf("the hub has no %s (HTTP 404): check the name, or set HF_TOKEN if the repository is private", what)
	case code == http.StatusTooManyRequests || code >= 500:
		return throttled{err: fmt.Errorf("the hub answered HTTP %d for %s", code, what), after: retryAfter(resp.Header)}
	default:
		return fmt.Errorf("the hub answered HTTP %d for %s: check GIBBON_HUB_URL and try again", code, what)
	}
	if isHTML(resp.Header) {
		return fmt.Errorf("%s answered %s with an HTML page, not the hub's JSON: a proxy or login page is in the way; check HTTPS_PROXY or GIBBON_HUB_URL", h.base.Host, what)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return throttled{err: fmt.Errorf("reading the hub's answer for %s: %w", what, err)}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s answered %s with something that is not the hub's JSON (%v): check GIBBON_HUB_URL and any proxy", h.base.Host, what, err)
	}
	return nil
}

// checkDownload returns the check a hub download's response must pass: the hub's
// headers (on the redirect or on the answer itself) must name the commit asked for
// and, for an LFS file, the SHA-256 and size expected.
func checkDownload(commit, sha string, size int64) func(*http.Response) error {
	return func(resp *http.Response) error {
		h := hubHeaders(resp)
		if got := strings.ToLower(h.Get(headerRepoCommit)); got != "" && got != commit {
			return fmt.Errorf("the hub served commit %s for a request of commit %s: refusing it", got, commit)
		}
		if etag := h.Get(headerLinkedEtag); etag != "" {
			got := strings.ToLower(strings.Trim(strings.TrimPrefix(etag, "W/"), `"`))
			if got != sha {
				return fmt.Errorf("the hub's download names SHA-256 %s (%s), not the pinned %s: refusing it; try again later or report it", got, headerLinkedEtag, sha)
			}
		}
		if s := h.Get(headerLinkedSize); s != "" && size > 0 {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n != size {
				return fmt.Errorf("the hub's download is %d bytes (%s), the pinned file has %d: refusing it", n, headerLinkedSize, size)
			}
		}
		return nil
	}
}

// hubHeaders finds the hub's own answer in a redirect chain: the first response that
// carries X-Repo-Commit, else the final one.
func hubHeaders(resp *http.Response) http.Header {
	for r := resp; r != nil; {
		if r.Header.Get(headerRepoCommit) != "" {
			return r.Header
		}
		if r.Request == nil {
			break
		}
		r = r.Request.Response
	}
	return resp.Header
}

// throttled is a failure worth retrying, after a wait the server may name.
type throttled struct {
	err   error
	after time.Duration
}

func (t throttled) Error() string { return t.err.Error() }
func (t throttled) Unwrap() error { return t.err }

// retryAfter reads Retry-After (seconds or an HTTP date); 0 when absent.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func isHTML(h http.Header) bool {
	return strings.Contains(strings.ToLower(h.Get("Content-Type")), "text/html")
}
