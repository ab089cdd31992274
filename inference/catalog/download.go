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
	"strconv"
	"strings"
	"time"
)

// Progress hears about a download. Implementations must be cheap: Add is called for
// every buffer written.
type Progress interface {
	// Start announces a transfer from url of total bytes (0 if unknown), have of which
	// are already on disk from an earlier, interrupted attempt.
	Start(name, url string, total, have int64)
	Add(n int64)
	// Done ends the transfer; err is nil on success.
	Done(err error)
}

type noProgress struct{}

func (noProgress) Start(string, string, int64, int64) {}
func (noProgress) Add(int64)                          {}
func (noProgress) Done(error)                         {}

// permanentError stops retries on this URL (a 404, a size that cannot match).
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// fetcher downloads into a .part file, resuming with HTTP Range requests.
type fetcher struct {
	client   *http.Client
	progress Progress
	retries  int           // extra attempts per URL after a cut connection
	backoff  time.Duration // before the first retry; doubles
	stall    time.Duration // a connection silent this long is cut (and resumed)
	// authorize (may be nil) adds headers to each first request (a hub's token).
	authorize func(*http.Request)
	// check (may be nil) vets a response before any byte is written (a hub's headers).
	check func(*http.Response) error
}

// fetch brings url into part until it holds size bytes (to the end of the body when
// size is 0), retrying and resuming after transient failures.
func (f *fetcher) fetch(ctx context.Context, name, url, part string, size int64) error {
	wait := f.backoff
	var err error
	for attempt := 0; attempt <= f.retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait *= 2
		}
		err = f.fetchOnce(ctx, name, url, part, size)
		if err == nil || ctx.Err() != nil {
			return err
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return err
		}
		var busy throttled
		if errors.As(err, &busy) && busy.after > 0 && attempt < f.retries {
			if busy.after > maxRetryAfterWait {
				return permanentError{fmt.Errorf("%v and asks to wait %s: try again then (HF_TOKEN raises the hub's limits)", busy.err, busy.after.Round(time.Second))}
			}
			wait = max(wait, busy.after)
		}
	}
	return err
}

func (f *fetcher) fetchOnce(ctx context.Context, name, url, part string, size int64) (err error) {
	have := int64(0)
	if fi, statErr := os.Stat(part); statErr == nil {
		have = fi.Size()
	}
	if size > 0 && have > size {
		if err := os.Truncate(part, 0); err != nil {
			return permanentError{err}
		}
		have = 0
	}
	if size > 0 && have == size {
		return nil
	}
	// A watchdog cancels an attempt whose connection goes silent; the retry resumes it.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	stall := f.stall
	if stall <= 0 {
		stall = time.Minute
	}
	watchdog := time.AfterFunc(stall, cancel)
	defer watchdog.Stop()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, url, nil)
	if err != nil {
		return permanentError{err}
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	if f.authorize != nil {
		f.authorize(req)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		host := req.URL.Host
		if !isTransient(err) {
			return permanentError{netError(host, err)}
		}
		return netError(host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent {
		if isHTML(resp.Header) {
			return permanentError{fmt.Errorf("%s answered with an HTML page, not the model file: a proxy or login page is in the way; check HTTPS_PROXY or GIBBON_HUB_URL", resp.Request.URL.Host)}
		}
		if f.check != nil {
			if err := f.check(resp); err != nil {
				return permanentError{err}
			}
		}
	}

	flags := os.O_WRONLY | os.O_CREATE
	total := size
	switch resp.StatusCode {
	case http.StatusOK: // the whole file (the server may ignore Range)
		have = 0
		flags |= os.O_TRUNC
		if resp.ContentLength >= 0 {
			if size > 0 && resp.ContentLength != size {
				return permanentError{fmt.Errorf("%s offers %d bytes, the pinned file has %d", url, resp.ContentLength, size)}
			}
			total = resp.ContentLength
		}
	case http.StatusPartialContent:
		start, whole, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			// Not the range asked for: start again from zero next attempt.
			_ = os.Truncate(part, 0)
			return fmt.Errorf("%s answered range %q to a request from byte %d", url, resp.Header.Get("Content-Range"), have)
		}
		if whole > 0 {
			if size > 0 && whole != size {
				return permanentError{fmt.Errorf("%s holds %d bytes, the pinned file has %d", url, whole, size)}
			}
			total = whole
		}
		flags |= os.O_APPEND
	case http.StatusRequestedRangeNotSatisfiable:
		if have > 0 && size == 0 {
			return nil // the part already holds the whole file; the checksum decides
		}
		_ = os.Truncate(part, 0)
		return fmt.Errorf("%s: HTTP %s for a resume from byte %d", url, resp.Status, have)
	default:
		err := fmt.Errorf("GET %s: HTTP %s", url, resp.Status)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return throttled{err: err, after: retryAfter(resp.Header)}
		}
		return permanentError{err}
	}

	out, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return permanentError{diskError(part, err)}
	}
	f.progress.Start(name, url, total, have)
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		f.progress.Done(err)
	}()
	buf := make([]byte, 256<<10)
	got := have
	for {
		n, rerr := resp.Body.Read(buf)
		watchdog.Reset(stall)
		if n > 0 {
			if size > 0 && got+int64(n) > size {
				_ = out.Truncate(0)
				return permanentError{fmt.Errorf("%s sent more than the pinned %d bytes", url, size)}
			}
			if _, werr := out.Write(buf[:n]); werr != nil {
				return permanentError{diskError(part, werr)}
			}
			got += int64(n)
			f.progress.Add(int64(n))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			_ = out.Sync()
			if actx.Err() != nil {
				rerr = fmt.Errorf("no data for %s", stall)
			}
			return fmt.Errorf("download from %s cut at byte %d: %w", url, got, rerr)
		}
	}
	if err := out.Sync(); err != nil {
		return permanentError{diskError(part, err)}
	}
	if total > 0 && got < total {
		return fmt.Errorf("download from %s ended at byte %d of %d", url, got, total)
	}
	return nil
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", returned as 0).
func parseContentRange(s string) (start, total int64, ok bool) {
	s, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, whole, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	first, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if whole != "*" {
		if total, err = strconv.ParseInt(whole, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// FileSHA256 hashes a file and returns its hex digest and size.
func FileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// verifyFile checks a file's size (when size > 0) and SHA-256.
func verifyFile(path string, size int64, sha string) error {
	got, n, err := FileSHA256(path)
	if err != nil {
		return err
	}
	if size > 0 && n != size {
		return fmt.Errorf("size is %d bytes, the pinned file has %d", n, size)
	}
	if got != sha {
		return fmt.Errorf("SHA-256 is %s, expected %s", got, sha)
	}
	return nil
}
