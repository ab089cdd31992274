package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkClassifyAPI is one drawing classified by the test models through the
// whole handler stack (multipart parsing, CSRF, decode, preprocess, ONNX Runtime,
// JSON with the input images as data: URLs).
func BenchmarkClassifyAPI(b *testing.B) {
	f := newFixture(b, func(c *Config) { c.UploadRate, c.UploadBurst = 1e9, 1<<30 })
	h := f.srv.Handler()
	body, ctype := upload{file: pngBytes(b, drawShape("7", 280, 280)), filename: "d.png"}.encode(b)
	data := body.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/classify", bytes.NewReader(data))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	}
}
