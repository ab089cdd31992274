// Package hubtest is a fake model hub for tests without the internet. It answers the
// routes and headers Gibbon's pulls rely on (inference/catalog/hub.go): the model API's
// revision route with LFS metadata, and resolve downloads that redirect LFS files to a
// second server standing in for the CDN (which fails the test if it ever receives an
// Authorization header). Faults on demand: rate limiting with Retry-After, an HTML page
// in place of an answer, a download cut once, bytes that are not the attested ones.
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gibbon/inference/onnx"
)

// File is a file in a commit; LFS files are served through the CDN with their
// SHA-256 attested, the others straight from the hub with no SHA-256.
type File struct {
	Path string
	Data []byte
	LFS  bool
}

// Request is one request either server saw.
type Request struct {
	Server        string // "hub" or "cdn"
	Path          string // unescaped
	Query         string
	Range         string
	Authorization string
}

// Hub is the fake hub (its embedded Server) and its CDN.
type Hub struct {
	*httptest.Server
	CDN *httptest.Server

	t        testing.TB
	mu       sync.Mutex
	commits  map[string]map[string][]File // repo -> commit -> files
	refs     map[string]map[string]string // repo -> branch -> commit
	blobs    map[string][]byte            // sha256 -> bytes the CDN serves
	log      []Request
	n        int
	token    string
	throttle int
	after    string
	htmlHub  bool
	htmlCDN  bool
	cut      map[string]int64 // sha256 -> bytes the CDN sends before cutting its next answer
}

// New starts a hub and its CDN, closed when the test ends.
func New(t testing.TB) *Hub {
	h := &Hub{t: t, commits: map[string]map[string][]File{}, refs: map[string]map[string]string{},
		blobs: map[string][]byte{}, cut: map[string]int64{}}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serveHub))
	h.CDN = httptest.NewServer(http.HandlerFunc(h.serveCDN))
	t.Cleanup(h.CDN.Close)
	t.Cleanup(h.Server.Close)
	return h
}

// SHA256 is the hex SHA-256 of data.
func SHA256(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// gitBlobID is a file's git object id, which the hub gives as a non-LFS file's ETag.
func gitBlobID(data []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// Commit records a commit of files in repo ("owner/name"), moves branch to it and
// returns its 40-hex id.
func (h *Hub) Commit(repo, branch string, files ...File) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	id := sha1.New()
	fmt.Fprintf(id, "%s %d", repo, h.n)
	for _, f := range files {
		fmt.Fprintf(id, " %s %s", f.Path, SHA256(f.Data))
		if f.LFS {
			h.blobs[SHA256(f.Data)] = f.Data
		}
	}
	commit := hex.EncodeToString(id.Sum(nil))
	if h.commits[repo] == nil {
		h.commits[repo], h.refs[repo] = map[string][]File{}, map[string]string{}
	}
	h.commits[repo][commit] = append([]File(nil), files...)
	h.refs[repo][branch] = commit
	return commit
}

// RequireToken makes the hub answer 401 to requests without "Bearer token".
func (h *Hub) RequireToken(token string) { h.mu.Lock(); h.token = token; h.mu.Unlock() }

// Throttle answers the hub's next n requests with 429 and this Retry-After ("" for none).
func (h *Hub) Throttle(n int, retryAfter string) {
	h.mu.Lock()
	h.throttle, h.after = n, retryAfter
	h.mu.Unlock()
}

// ServeHTML makes the hub and/or the CDN answer every request with a 200 HTML page,
// as a captive portal or a misconfigured proxy does.
func (h *Hub) ServeHTML(hub, cdn bool) {
	h.mu.Lock()
	h.htmlHub, h.htmlCDN = hub, cdn
	h.mu.Unlock()
}

// CutOnce makes the CDN's next answer for data promise the whole file, send after
// bytes, then drop the connection.
func (h *Hub) CutOnce(data []byte, after int64) {
	h.mu.Lock()
	h.cut[SHA256(data)] = after
	h.mu.Unlock()
}

// Tamper makes the CDN serve other bytes under data's SHA-256 (the hub's metadata
// still attests data).
func (h *Hub) Tamper(data, served []byte) {
	h.mu.Lock()
	h.blobs[SHA256(data)] = served
	h.mu.Unlock()
}

// Requests returns every request seen so far, in order.
func (h *Hub) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.log...)
}

// Count counts the requests of server whose path contains part.
func (h *Hub) Count(server, part string) int {
	n := 0
	for _, r := range h.Requests() {
		if r.Server == server && strings.Contains(r.Path, part) {
			n++
		}
	}
	return n
}

func (h *Hub) record(server string, r *http.Request) {
	h.mu.Lock()
	h.log = append(h.log, Request{Server: server, Path: r.URL.Path, Query: r.URL.RawQuery,
		Range: r.Header.Get("Range"), Authorization: r.Header.Get("Authorization")})
	h.mu.Unlock()
}

const htmlPage = "<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>"

func hubError(w http.ResponseWriter, code int, errCode, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if errCode != "" {
		w.Header().Set("X-Error-Code", errCode)
	}
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (h *Hub) serveHub(w http.ResponseWriter, r *http.Request) {
	h.record("hub", r)
	h.mu.Lock()
	html, token := h.htmlHub, h.token
	throttled, after := h.throttle > 0, h.after
	if throttled {
		h.throttle--
	}
	h.mu.Unlock()
	switch {
	case html:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(htmlPage))
		return
	case throttled:
		if after != "" {
			w.Header().Set("Retry-After", after)
		}
		hubError(w, http.StatusTooManyRequests, "", "rate limited")
		return
	case token != "" && r.Header.Get("Authorization") != "Bearer "+token:
		hubError(w, http.StatusUnauthorized, "", "invalid credentials")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	unescape := func(s []string) string {
		p, err := url.PathUnescape(strings.Join(s, "/"))
		if err != nil {
			return "\x00"
		}
		return p
	}
	switch {
	case len(parts) >= 6 && parts[0] == "api" && parts[1] == "models" && parts[4] == "revision":
		h.serveRevision(w, r, parts[2]+"/"+parts[3], unescape(parts[5:]))
	case len(parts) >= 5 && parts[2] == "resolve":
		h.serveResolve(w, r, parts[0]+"/"+parts[1], unescape(parts[3:4]), unescape(parts[4:]))
	default:
		hubError(w, http.StatusNotFound, "", "no such route")
	}
}

// lookup finds repo's files at rev (a branch or a commit id).
func (h *Hub) lookup(w http.ResponseWriter, repo, rev string) (string, []File, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	commits, ok := h.commits[repo]
	if !ok {
		hubError(w, http.StatusNotFound, "RepoNotFound", "Repository not found")
		return "", nil, false
	}
	commit := rev
	if c, ok := h.refs[repo][rev]; ok {
		commit = c
	}
	files, ok := commits[commit]
	if !ok {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev)
		return "", nil, false
	}
	return commit, files, true
}

func (h *Hub) serveRevision(w http.ResponseWriter, r *http.Request, repo, rev string) {
	commit, files, ok := h.lookup(w, repo, rev)
	if !ok {
		return
	}
	blobs := r.URL.Query().Get("blobs") == "true"
	type lfs struct {
		SHA256      string `json:"sha256"`
		Size        int    `json:"size"`
		PointerSize int    `json:"pointerSize"`
	}
	type sibling struct {
		Name   string `json:"rfilename"`
		Size   int    `json:"size,omitempty"`
		BlobID string `json:"blobId,omitempty"`
		LFS    *lfs   `json:"lfs,omitempty"`
	}
	sibs := []sibling{}
	for _, f := range files {
		s := sibling{Name: f.Path}
		if blobs {
			s.Size, s.BlobID = len(f.Data), gitBlobID(f.Data)
			if f.LFS {
				s.LFS = &lfs{SHA256: SHA256(f.Data), Size: len(f.Data), PointerSize: 134}
			}
		}
		sibs = append(sibs, s)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{"id": repo, "modelId": repo, "sha": commit, "private": false, "siblings": sibs})
}

func (h *Hub) serveResolve(w http.ResponseWriter, r *http.Request, repo, rev, path string) {
	commit, files, ok := h.lookup(w, repo, rev)
	if !ok {
		return
	}
	for _, f := range files {
		if f.Path != path {
			continue
		}
		w.Header().Set("X-Repo-Commit", commit)
		if f.LFS {
			sum := SHA256(f.Data)
			w.Header().Set("X-Linked-Etag", `"`+sum+`"`)
			w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.Data)))
			w.Header().Set("ETag", `"`+gitBlobID(f.Data)+`"`)
			http.Redirect(w, r, h.CDN.URL+"/repos/"+sum[:2]+"/"+sum+"?expires="+strconv.FormatInt(time.Now().Unix()+3600, 10), http.StatusFound)
			return
		}
		w.Header().Set("ETag", `"`+gitBlobID(f.Data)+`"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.Data))
		return
	}
	hubError(w, http.StatusNotFound, "EntryNotFound", path+" does not exist on "+rev)
}

func (h *Hub) serveCDN(w http.ResponseWriter, r *http.Request) {
	h.record("cdn", r)
	if a := r.Header.Get("Authorization"); a != "" {
		h.t.Errorf("the CDN received credentials: Authorization %q", a)
		http.Error(w, "credentials forwarded to the CDN", http.StatusBadRequest)
		return
	}
	sum := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	h.mu.Lock()
	data, ok := h.blobs[sum]
	cut, cutting := h.cut[sum]
	delete(h.cut, sum)
	html := h.htmlCDN
	h.mu.Unlock()
	switch {
	case html:
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(htmlPage))
		return
	case !ok:
		http.NotFound(w, r)
		return
	case cutting:
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		w.Write(data[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

// Classifier builds a tiny ImageNet-shaped ONNX classifier (opset 17): input "x"
// [1, 3, size, size] (batch fixed at 1, as exporters write it), 1000 logits out.
// Different seeds give different weights.
func Classifier(seed uint64, size int64) []byte {
	r := rand.New(rand.NewPCG(seed, 11))
	floats := func(n int, scale float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64() * scale)
		}
		return out
	}
	b := onnx.NewBuilder("hubtest-classifier")
	b.SetOpset(17)
	x := b.Input("x", 1, 3, size, size)
	y := b.Op("Conv", []string{x, b.Init("conv_w", []int64{8, 3, 8, 8}, floats(8*3*64, 0.05))}, onnx.AttrInts("strides", 8, 8))
	y = b.Op("GlobalAveragePool", []string{b.Op("Relu", []string{y})})
	y = b.Op("Squeeze", []string{y, b.Ints(3)})
	y = b.Op("Reshape", []string{y, b.Ints(1, -1)})
	fc := b.Init("fc_w", []int64{1000, 8}, floats(8000, 2))
	bias := b.Init("fc_b", []int64{1000}, floats(1000, 0.5))
	y = b.Op("Gemm", []string{y, fc, bias}, onnx.AttrInt("transB", 1))
	b.Output("logits", y, 1, 1000)
	return b.Bytes()
}
