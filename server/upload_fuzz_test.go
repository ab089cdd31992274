package server

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzUpload posts arbitrary files (and file names, and sample names) to the
// classify API through the whole handler stack: body limit, multipart parsing,
// CSRF, decoding, preprocessing, the models. The answer must never be a 5xx,
// and every refusal must carry a message.
// Seeds: testdata/fuzz/FuzzUpload.
// Run: go test ./server -run '^$' -fuzz FuzzUpload -fuzztime 60s
func FuzzUpload(f *testing.F) {
	fx := newFixture(f, func(c *Config) {
		c.MaxUploadBytes, c.MaxPixels = 200_000, 1<<20
		c.UploadRate, c.UploadBurst = 1e9, 1<<30 // the fuzzer is one very fast client
	})
	h := fx.srv.Handler()
	f.Add(pngBytes(f, drawShape("7", 64, 64)), "seven.png", "")
	f.Add(pngHeaderOnly(5000, 5000), "bomb.png", "")
	f.Add([]byte{}, "", "digit-1-0.png")
	f.Add([]byte("GIF89a"), "x.gif", "../manifest.json")
	f.Fuzz(func(t *testing.T, file []byte, filename, sample string) {
		var body bytes.Buffer
		w := multipart.NewWriter(&body)
		if sample != "" {
			w.WriteField("sample", sample)
		}
		if len(file) > 0 || filename != "" {
			part, err := w.CreateFormFile("image", filename)
			if err != nil {
				return
			}
			part.Write(file)
		}
		w.Close()
		req := httptest.NewRequest(http.MethodPost, "/api/classify", &body)
		req.Header.Set("Content-Type", w.FormDataContentType())
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			var r struct{ Models []any }
			if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatalf("200 with a body that is not a result: %v", err)
			}
		case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge,
			http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			var e map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e["error"] == "" {
				t.Fatalf("%d without a message: %q", rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	})
}
