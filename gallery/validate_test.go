package gallery_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

// hugePNG is a valid PNG header claiming w×h pixels, with no pixel data.
func hugePNG(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 0 // 8-bit grey
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestSaveRejectsBadEntries(t *testing.T) { eachBackend(t, testSaveRejectsBadEntries) }

func testSaveRejectsBadEntries(t *testing.T, be backend) {
	ctx := context.Background()
	s, path := openStore(t, be)
	cases := []struct {
		name    string
		mutate  func(e *gallery.Entry)
		tooBig  bool
		inError string
	}{
		{"no kind", func(e *gallery.Entry) { e.Kind = "" }, false, "kind"},
		{"unknown kind", func(e *gallery.Entry) { e.Kind = "<b>x</b>" }, false, "kind"},
		{"no version", func(e *gallery.Entry) { e.GibbonVersion = "" }, false, "gibbon_version"},
		{"no attack", func(e *gallery.Entry) { e.Attack = "" }, false, "attack"},
		{"no models", func(e *gallery.Entry) { e.Models = nil }, false, "models"},
		{"duplicate model", func(e *gallery.Entry) { e.Models[1].Name = e.Models[0].Name }, false, "listed twice"},
		{"bad checksum", func(e *gallery.Entry) { e.Models[0].SHA256 = "abc" }, false, "sha256"},
		{"title too long", func(e *gallery.Entry) { e.Title = strings.Repeat("é", gallery.MaxTitleRunes+1) }, true, "title"},
		{"title with newline", func(e *gallery.Entry) { e.Title = "a\nb" }, false, "control"},
		{"title with bidi override", func(e *gallery.Entry) { e.Title = "gpj.\u202eexe" }, false, "control"},
		{"title not utf-8", func(e *gallery.Entry) { e.Title = "\xff\xfe" }, false, "UTF-8"},
		{"params not object", func(e *gallery.Entry) { e.Params = json.RawMessage(`[1,2]`) }, false, "params"},
		{"params broken", func(e *gallery.Entry) { e.Params = json.RawMessage(`{"a":`) }, false, "params"},
		{"params trailing", func(e *gallery.Entry) { e.Params = json.RawMessage(`{"a":1} {}`) }, false, "params"},
		{"params huge", func(e *gallery.Entry) {
			e.Params = json.RawMessage(`{"x":"` + strings.Repeat("a", gallery.MaxParamsBytes) + `"}`)
		}, true, "params"},
		{"eps unit", func(e *gallery.Entry) { e.EpsUnit = "px" }, false, "eps_unit"},
		{"eps negative", func(e *gallery.Entry) { e.Eps = -1 }, false, "eps"},
		{"eps NaN", func(e *gallery.Entry) { e.Eps = math.NaN() }, false, "eps"},
		{"eps over range", func(e *gallery.Entry) { e.EpsUnit = gallery.Unit1; e.Eps = 8 }, false, "eps"},
		{"linf inf", func(e *gallery.Entry) { e.LInf = math.Inf(1) }, false, "linf"},
		{"loss NaN", func(e *gallery.Entry) { e.Steps[3].Loss = math.NaN() }, false, "steps[3].loss"},
		{"steps out of order", func(e *gallery.Entry) { e.Steps[2].Step = 0 }, false, "steps[2]"},
		{"too many steps", func(e *gallery.Entry) { e.Steps = make([]gallery.Step, gallery.MaxSteps+1) }, true, "steps"},
		{"top1 unknown model", func(e *gallery.Entry) { e.Steps[0].Top1[0].Model = "ghost" }, false, "not among"},
		{"prob over 1", func(e *gallery.Entry) { e.Steps[0].Top1[0].Prob = 1.5 }, false, "prob"},
		{"prediction unknown model", func(e *gallery.Entry) { e.Predictions[0].Model = "ghost" }, false, "not among"},
		{"prediction label control", func(e *gallery.Entry) { e.Predictions[0].Adversarial[0].Label = "3\x00" }, false, "control"},
		{"negative class", func(e *gallery.Entry) { e.Predictions[0].Original[0].Index = -1 }, false, "index"},
		{"top-k too long", func(e *gallery.Entry) { e.Predictions[0].Original = make([]gallery.Prediction, gallery.MaxTopK+1) }, true, "top-"},
		{"timing negative", func(e *gallery.Entry) { e.Timings["total"] = -3 }, false, "timings_ms"},
		{"run with payload", func(e *gallery.Entry) { e.Payload = json.RawMessage(`{}`) }, false, "payload"},
		{"sweep without payload", func(e *gallery.Entry) { e.Kind = gallery.KindSweep }, false, "payload"},
		{"no adversarial", func(e *gallery.Entry) { e.Adversarial = nil }, false, "images"},
		{"jpeg instead of png", func(e *gallery.Entry) { e.Original = []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00") }, false, "not a PNG"},
		{"truncated png", func(e *gallery.Entry) { e.Original = e.Original[:len(e.Original)/2] }, false, "original"},
		{"png bomb header", func(e *gallery.Entry) { e.Original = hugePNG(100000, 100000) }, true, "pixels"},
		{"png too many bytes", func(e *gallery.Entry) { e.Original = make([]byte, gallery.MaxImageBytes+1) }, true, "bytes"},
		{"sizes differ", func(e *gallery.Entry) { e.Adversarial = gallerytest.PNG(29, 28, 0) }, false, "28x28"},
		{"defence twice", func(e *gallery.Entry) { e.Predictions[1].Model = e.Predictions[0].Model }, false, "listed twice"},
		{"defence name control", func(e *gallery.Entry) { e.Predictions[0].Name = "a\x07" }, false, "control"},
		{"top1 unknown defence", func(e *gallery.Entry) { e.Steps[0].Top1[0].Defence = "mnist-cnn + ghost" }, false, "defences"},
		{"true prob over 1", func(e *gallery.Entry) { v := 2.0; e.Steps[0].Top1[0].TrueProb = &v }, false, "true_prob"},
		{"l2 negative", func(e *gallery.Entry) { e.L2 = -1 }, false, "l2"},
		{"provider too long", func(e *gallery.Entry) { e.Provider = strings.Repeat("x", gallery.MaxVersionRunes+1) }, true, "provider"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := gallerytest.Run(1, gallerytest.Options{})
			tc.mutate(e)
			_, err := s.Save(ctx, e)
			want := gallery.ErrInvalid
			if tc.tooBig {
				want = gallery.ErrTooLarge
			}
			if !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
			var ve *gallery.ValidationError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.inError) {
				t.Fatalf("err = %q, want a ValidationError mentioning %q", err, tc.inError)
			}
			if e.Slug != "" {
				t.Fatalf("refused entry got slug %q", e.Slug)
			}
		})
	}
	if n := countRows(t, path, "entries"); n != 0 {
		t.Fatalf("%d entries stored from refused saves", n)
	}
	if n := countRows(t, path, "images"); n != 0 {
		t.Fatalf("%d images stored from refused saves", n)
	}
}

func TestTransformDefencesAndProvenanceRoundTrip(t *testing.T) {
	eachBackend(t, testTransformDefencesAndProvenanceRoundTrip)
}

func testTransformDefencesAndProvenanceRoundTrip(t *testing.T, be backend) {
	// A run's record keeps every defence, transforms included, each step's guesses
	// keyed by defence, and what computed it.
	ctx := context.Background()
	s, _ := openStore(t, be)
	e := gallerytest.Run(7, gallerytest.Options{})
	model := e.Predictions[0].Model
	jpeg := e.Predictions[0]
	jpeg.Name, jpeg.Transform, jpeg.Param = model+" + JPEG q75", "jpeg", 75
	e.Predictions = append(e.Predictions, jpeg)
	tp := 0.25
	e.Steps[0].Top1 = append(e.Steps[0].Top1, gallery.Top1{Defence: jpeg.Name, Model: model, Label: "7", Prob: 0.5, TrueProb: &tp})
	e.L2, e.Runtime, e.Provider = 1.75, "ONNX Runtime 1.24.1", "cpu"
	rec := mustSave(t, s, e)
	got, err := s.Get(ctx, rec.Slug)
	if err != nil {
		t.Fatal(err)
	}
	last := got.Predictions[len(got.Predictions)-1]
	if last.DefenceName() != jpeg.Name || last.Transform != "jpeg" || last.Param != 75 {
		t.Fatalf("transform defence came back as %+v", last)
	}
	g := got.Steps[0].Top1[len(got.Steps[0].Top1)-1]
	if g.Name() != jpeg.Name || g.TrueProb == nil || *g.TrueProb != tp {
		t.Fatalf("step guess came back as %+v", g)
	}
	if got.L2 != 1.75 || got.Runtime != "ONNX Runtime 1.24.1" || got.Provider != "cpu" || got.Imported {
		t.Fatalf("provenance came back as l2 %v runtime %q provider %q imported %v", got.L2, got.Runtime, got.Provider, got.Imported)
	}
}

func TestHostileTextIsStoredVerbatim(t *testing.T) { eachBackend(t, testHostileTextIsStoredVerbatim) }

func testHostileTextIsStoredVerbatim(t *testing.T, be backend) {
	// The store keeps user text exactly (views escape it); it must not break SQL.
	ctx := context.Background()
	s, _ := openStore(t, be)
	hostile := []string{
		`<script>alert(1)</script>`,
		`"><img src=x onerror=alert(1)>`,
		`'; DROP TABLE entries; --`,
		`{{.}} ${x} %s %n`,
		`名前 🐒 ∞`,
	}
	for i, h := range hostile {
		e := gallerytest.Run(uint64(i), gallerytest.Options{Title: h, Attack: h, Models: []string{h, "other"}})
		e.Predictions[0].Adversarial[0].Label = h
		e.Params = json.RawMessage(`{"note": ` + mustJSON(h) + `}`)
		rec := mustSave(t, s, e)
		got, err := s.Get(ctx, rec.Slug)
		if err != nil {
			t.Fatal(err)
		}
		if got.Title != h || got.Attack != h || got.Models[0].Name != h || got.Predictions[0].Adversarial[0].Label != h {
			t.Fatalf("hostile text changed on the way: %+v", got)
		}
		p, err := s.List(ctx, gallery.ListOptions{Filter: gallery.Filter{Attack: h, Model: h}})
		if err != nil || len(p.Entries) != 1 || p.Entries[0].Title != h {
			t.Fatalf("filter by hostile name: %+v %v", p, err)
		}
	}
	mustCheck(t, s)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
