package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"io"
	"net/http"
	"strings"
	"testing"
)

// pngHeaderOnly is a PNG signature and IHDR chunk declaring w×h and no pixels.
func pngHeaderOnly(w, h uint32) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8] = 8
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	binary.Write(&b, binary.BigEndian, uint32(13))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func blankPNG(t testing.TB) []byte {
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	for i := range img.Pix {
		img.Pix[i] = 250
	}
	img.Set(3, 3, color.Gray{Y: 245})
	return pngBytes(t, img)
}

// Every bad input gets a 4xx and a sentence that says what to do, both on the
// page (form post) and from the API; never a 500.
func TestBadInputsGetClearMessages(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxUploadBytes = 20_000 })
	s := newSession(t, f)
	seven := pngBytes(t, drawShape("7", 100, 100))
	big := append(append([]byte(nil), seven...), make([]byte, 30_000)...) // a PNG with trailing bytes, 30 kB over
	for _, tc := range []struct {
		name   string
		up     upload
		status int
		says   string
	}{
		{"text named .png", upload{file: []byte("just some text, really\n"), filename: "digit.png"}, 415, "This file is text, not an image Gibbon reads: use PNG, JPEG, GIF and WebP."},
		{"pdf", upload{file: []byte("%PDF-1.4\n%âãÏÓ\n1 0 obj"), filename: "scan.jpg"}, 415, "a PDF document"},
		{"bmp", upload{file: append([]byte("BM"), make([]byte, 100)...), filename: "d.bmp"}, 415, "a BMP image"},
		{"decompression bomb", upload{file: pngHeaderOnly(30000, 30000), filename: "bomb.png"}, 413, "The image is 30000×30000 pixels (900.0 MP); the limit is 40.0 MP."},
		{"too many bytes", upload{file: big, filename: "big.png"}, 413, "larger than the 20.0 kB upload limit"},
		{"damaged png", upload{file: seven[:len(seven)/2], filename: "half.png"}, 422, "This PNG file is damaged"},
		{"empty file", upload{file: []byte{}, filename: "empty.png"}, 415, "an empty file"},
		{"nothing chosen", upload{}, 400, "Choose an image file, draw a digit or pick a sample first."},
		{"no file name, no data", upload{filename: "", file: nil, fields: map[string]string{"other": "x"}}, 400, "Choose an image file"},
	} {
		// The page, without JavaScript: the message is shown above the form, which is still there.
		resp := s.post("/classify", tc.up, http.Header{})
		if resp.StatusCode != tc.status {
			t.Errorf("%s (form): status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		d := doc(t, resp)
		if msg := strings.TrimSpace(d.Find(`[data-testid="error"]`).Text()); !strings.Contains(msg, tc.says) {
			t.Errorf("%s (form): message %q, want %q", tc.name, msg, tc.says)
		}
		if d.Find(`[data-testid="upload-form"]`).Length() != 1 {
			t.Errorf("%s (form): the upload form is gone", tc.name)
		}
		// The API.
		resp = s.post("/api/classify", tc.up, http.Header{"X-Csrf-Token": {s.token}})
		var e map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("%s (api): %v", tc.name, err)
		}
		if resp.StatusCode != tc.status || !strings.Contains(e["error"], tc.says) {
			t.Errorf("%s (api): %d %q, want %d %q", tc.name, resp.StatusCode, e["error"], tc.status, tc.says)
		}
	}
	if strings.Contains(f.logs.String(), "status=500") {
		t.Errorf("a bad input caused a 500:\n%s", f.logs.String())
	}
}

// The size limit holds while the body is read, also when no Content-Length says
// how large it is.
func TestUploadLimitWithoutContentLength(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxUploadBytes = 20_000 })
	s := newSession(t, f)
	body, ctype := upload{file: make([]byte, 200_000), filename: "big.png", fields: map[string]string{"_csrf": s.token}}.encode(t)
	req, _ := http.NewRequest(http.MethodPost, f.ts.URL+"/api/classify", io.MultiReader(body)) // unknown length: chunked
	req.Header.Set("Content-Type", ctype)
	resp, err := s.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e map[string]string
	json.NewDecoder(resp.Body).Decode(&e)
	if req.ContentLength != 0 && req.ContentLength != -1 {
		t.Fatalf("request has a length: %d", req.ContentLength)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(e["error"], "20.0 kB upload limit") {
		t.Fatalf("status %d %q", resp.StatusCode, e["error"])
	}
}

func TestMissingCSRFTokenIsRefused(t *testing.T) {
	f := newFixture(t, nil)
	s := newSession(t, f)
	seven := pngBytes(t, drawShape("7", 100, 100))
	for name, fields := range map[string]map[string]string{
		"no token":    {"_csrf": ""},
		"wrong token": {"_csrf": "forged"},
	} {
		resp := s.post("/classify", upload{file: seven, filename: "7.png", fields: fields}, http.Header{})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d", name, resp.StatusCode)
			continue
		}
		if msg := doc(t, resp).Find(`[data-testid="error-message"]`).Text(); !strings.Contains(msg, "Reload the page") {
			t.Errorf("%s: message %q", name, msg)
		}
	}
}

func TestUploadsAreRateLimitedPerClient(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.UploadRate, c.UploadBurst = 0.01, 2 })
	s := newSession(t, f)
	seven := pngBytes(t, drawShape("7", 60, 60))
	var statuses []int
	for range 3 {
		resp := s.post("/api/classify", upload{file: seven, filename: "7.png"}, http.Header{"X-Csrf-Token": {s.token}})
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			var e map[string]string
			json.NewDecoder(resp.Body).Decode(&e)
			if !strings.Contains(e["error"], "Too many uploads") || resp.Header.Get("Retry-After") == "" {
				t.Errorf("429: %q, Retry-After %q", e["error"], resp.Header.Get("Retry-After"))
			}
		}
	}
	if statuses[0] != 200 || statuses[1] != 200 || statuses[2] != http.StatusTooManyRequests {
		t.Fatalf("statuses %v, want 200 200 429", statuses)
	}
	// Pages are not uploads.
	resp, err := s.c.Get(f.ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET / after the limit: %d", resp.StatusCode)
	}
}

// A blank image is a problem for MNIST-style models only: their cards say so and
// the others answer. When every model is MNIST-style, it is the request's answer.
func TestBlankImages(t *testing.T) {
	f := newFixture(t, nil)
	s := newSession(t, f)
	resp := s.post("/api/classify", upload{file: blankPNG(t), filename: "white.png"}, http.Header{"X-Csrf-Token": {s.token}})
	r := decodeResult(t, resp)
	if resp.StatusCode != 200 || len(r.Models) != 2 {
		t.Fatalf("status %d, %d models", resp.StatusCode, len(r.Models))
	}
	if !strings.Contains(r.Models[0].Error, "looks blank") || len(r.Models[0].Top) != 0 {
		t.Errorf("templates: %+v", r.Models[0])
	}
	if r.Models[1].Error != "" || len(r.Models[1].Top) != 3 {
		t.Errorf("colours: %+v", r.Models[1])
	}

	only := newFixtureWith(t, nil, []string{"templates"})
	s = newSession(t, only)
	resp = s.post("/classify", upload{file: blankPNG(t), filename: "white.png"}, http.Header{})
	if msg := doc(t, resp).Find(`[data-testid="error"]`).Text(); resp.StatusCode != 422 || !strings.Contains(msg, "looks blank") {
		t.Errorf("only MNIST models: %d %q", resp.StatusCode, msg)
	}
}
