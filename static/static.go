// Package static holds the site's CSS, JavaScript and images, embedded, and serves
// them under content-hashed URLs (/static/app.3f2a9c1e.css) so browsers may cache
// them for a year and still never run a stale file.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed *.css *.js *.svg
var files embed.FS

// Prefix is where assets are served.
const Prefix = "/static/"

// Assets maps asset names to hashed URLs and serves them.
type Assets struct {
	byURL map[string]*asset // hashed or plain file name → asset
	urls  map[string]string // plain name → hashed URL
}

type asset struct {
	data   []byte
	ctype  string
	etag   string
	hashed bool
}

// New reads every embedded file once.
func New() (*Assets, error) {
	a := &Assets{byURL: map[string]*asset{}, urls: map[string]string{}}
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		h := hex.EncodeToString(sum[:])[:10]
		ext := path.Ext(name)
		hashedName := strings.TrimSuffix(name, ext) + "." + h + ext
		ctype := mime.TypeByExtension(ext)
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		plain := &asset{data: data, ctype: ctype, etag: `"` + h + `"`}
		a.byURL[name] = plain
		a.byURL[hashedName] = &asset{data: data, ctype: ctype, etag: plain.etag, hashed: true}
		a.urls[name] = Prefix + hashedName
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("static assets: %w", err)
	}
	return a, nil
}

// URL is the hashed URL of a named asset ("app.css"). An unknown name is a bug in
// a template; it gets the plain path, which then 404s visibly.
func (a *Assets) URL(name string) string {
	if u, ok := a.urls[name]; ok {
		return u
	}
	return Prefix + name
}

// ServeHTTP serves GET/HEAD /static/NAME: hashed names are immutable, plain names
// must be revalidated.
func (a *Assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	as, ok := a.byURL[name]
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", as.ctype)
	h.Set("ETag", as.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if as.hashed {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && match == as.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(as.data)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(as.data)
	}
}

// Has reports whether the named asset exists.
func (a *Assets) Has(name string) bool { _, ok := a.urls[name]; return ok }
