package server

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/chromedp/chromedp"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/inference/engine"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
	"gibbon/models/imagenet"
)

// The explorer on ImageNet-shaped classifiers, registered the way users get them:
// exported files (fixed batch 1, opset 17 or 12, with or without a terminal
// Softmax) imported with `gibbon models pull --from FILE` into a models directory.

// tinyImageNet builds a small classifier of ImageNet shape: side×side RGB in,
// 1000 scores out. Conv 8×8/8 → ReLU → global average pool → fc 1000.
type tinyImageNet struct {
	side    int64
	nhwc    bool
	softmax bool
	opset   int64
	seed    uint64
}

func (tm tinyImageNet) build() []byte {
	r := rand.New(rand.NewPCG(tm.seed, 5))
	floats := func(n int, scale float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64() * scale)
		}
		return out
	}
	b := onnx.NewBuilder("tiny-imagenet")
	b.SetOpset(tm.opset)
	var x string
	if tm.nhwc {
		x = b.Op("Transpose", []string{b.Input("images:0", 1, tm.side, tm.side, 3)}, onnx.AttrInts("perm", 0, 3, 1, 2))
	} else {
		x = b.Input("x", 1, 3, tm.side, tm.side)
	}
	y := b.Op("Conv", []string{x, b.Init("conv_w", []int64{8, 3, 8, 8}, floats(8*3*64, 0.05))}, onnx.AttrInts("strides", 8, 8))
	y = b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{b.Op("Relu", []string{y})})}, onnx.AttrInt("axis", 1))
	y = b.Op("Gemm", []string{y, b.Init("fc_w", []int64{1000, 8}, floats(8000, 2)), b.Init("fc_b", []int64{1000}, floats(1000, 0.5))},
		onnx.AttrInt("transB", 1))
	name := "logits"
	if tm.softmax {
		y, name = b.Op("Softmax", []string{y}, onnx.AttrInt("axis", 1)), "prob"
	}
	b.Output(name, y, 1, 1000)
	return b.Bytes()
}

// imagenetDir imports the models into a fresh models directory with catalog.Pull
// (as `gibbon models pull NAME --from FILE` does) and adds an empty samples/.
func imagenetDir(t *testing.T) string {
	t.Helper()
	dir, files := t.TempDir(), t.TempDir()
	torchvision := inference.InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB",
		Range: [2]float64{0, 1}, Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225},
		Resize: "crop", CropPct: 0.875, Interp: "bicubic"}
	tf := inference.InputContract{Layout: "NHWC", Channels: 3, Height: 224, Width: 224, Color: "RGB",
		Range: [2]float64{0, 255}, Mean: []float64{127, 127, 127}, Std: []float64{128, 128, 128},
		Resize: "crop", CropPct: 0.875, Interp: "bilinear"}
	inception := inference.InputContract{Layout: "NCHW", Channels: 3, Height: 299, Width: 299, Color: "RGB",
		Range: [2]float64{0, 1}, Mean: []float64{0.5, 0.5, 0.5}, Std: []float64{0.5, 0.5, 0.5},
		Resize: "crop", CropPct: 0.875, Interp: "bicubic"}
	for _, m := range []struct {
		name     string
		model    tinyImageNet
		contract inference.InputContract
		robust   bool
	}{
		{"tiny-torch", tinyImageNet{side: 224, opset: 17, seed: 1}, torchvision, false},
		{"tiny-tf-nhwc", tinyImageNet{side: 224, nhwc: true, softmax: true, opset: 12, seed: 2}, tf, false},
		{"tiny-inception-299", tinyImageNet{side: 299, opset: 17, seed: 3}, inception, true},
	} {
		data := m.model.build()
		path := filepath.Join(files, m.name+".onnx")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		e := catalog.Entry{Name: m.name, Architecture: "tiny conv net", Description: "test classifier",
			URLs: []string{"https://example.invalid/" + m.name + ".onnx"}, SHA256: shaHex(data), Size: int64(len(data)),
			PinSource: "built in the test", Robust: m.robust, Input: m.contract, OutputsLogits: !m.model.softmax, Classes: 1000}
		if _, err := catalog.Pull(context.Background(), e, catalog.Options{Dir: dir, From: path,
			Labels: imagenet.Labels(), LabelsFile: "imagenet_labels.txt",
			Runtime: func() (*inference.Runtime, error) { return testrt.Open(t), nil }}); err != nil {
			t.Fatalf("import %s: %v", m.name, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "samples"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// photo is a 320×240 picture: red bars at the left and right edges (which the
// centre crop of a 224 model at crop_pct 0.875 leaves out) around colour ramps.
func photo() image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, 320, 240))
	for y := range 240 {
		for x := range 320 {
			c := color.NRGBA{uint8(20 + x/4), uint8(40 + y*2/3), uint8(200 - (x+y)/4), 255}
			if x < 40 || x >= 280 {
				c = color.NRGBA{255, 0, 0, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

func decodeRGB(t testing.TB, data []byte) *image.NRGBA {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("frame image: %v", err)
	}
	switch img.(type) {
	case *image.NRGBA, *image.RGBA: // opaque PNGs decode as RGBA
	default:
		t.Fatalf("frame image is %T, want 8-bit RGB", img)
	}
	n := image.NewNRGBA(img.Bounds())
	draw.Draw(n, n.Bounds(), img, img.Bounds().Min, draw.Src)
	return n
}

// startedMsg's fields this test reads beyond wsMsg's.
type imagenetStarted struct {
	SourceWidth  int      `json:"source_width"`
	SourceHeight int      `json:"source_height"`
	Crop         []string `json:"crop"`
	Defences     []struct {
		Name  string `json:"name"`
		Input string `json:"input"`
	} `json:"defences"`
	Providers []engine.PassProvider `json:"providers"`
}

type frameTimingMsg struct {
	Timing frameTiming `json:"timing"`
}

// A pulled ImageNet model as the attacked one, the others (another layout and
// range, another resolution) as defences: the clean image is the centre crop the
// attacked model sees, every frame is at its 224×224 resolution inside the ε-ball,
// the watchers get it converted, and each frame says where the passes ran.
func TestExplorerImageNetModels(t *testing.T) {
	f := serveExplorerDir(t, imagenetDir(t), nil)
	upload := pngBytes(t, photo())
	for _, tc := range []struct {
		surrogate string
		watch     []string
		eps       int
	}{
		{"tiny-torch", []string{"tiny-torch", "tiny-tf-nhwc", "tiny-inception-299"}, 8},
		{"tiny-tf-nhwc", []string{"tiny-tf-nhwc", "tiny-torch"}, 6},
	} {
		t.Run(tc.surrogate, func(t *testing.T) {
			var watch []map[string]any
			for _, w := range tc.watch {
				watch = append(watch, map[string]any{"model": w})
			}
			c := dial(t, f)
			const steps = 10
			c.send(map[string]any{"type": "start", "attack": "pgd", "eps": tc.eps, "steps": steps, "surrogates": []string{tc.surrogate},
				"watch": watch, "source": "upload", "image_bytes": len(upload), "seed": 5})
			c.sendBinary(upload)
			started, _ := c.until("started", 60*time.Second)
			clean := decodeRGB(t, started.images["clean"])
			if b := clean.Bounds(); b.Dx() != 224 || b.Dy() != 224 {
				t.Fatalf("clean image %v, want the model's 224×224 input", b)
			}
			// The clean image is exactly the attacked model's crop of the upload.
			m, _ := f.reg.Model(tc.surrogate)
			dec, err := inference.DecodeImage(upload, 1<<24)
			if err != nil {
				t.Fatal(err)
			}
			pre, err := inference.Preprocess(dec.Image, m.Input.Unnormalized())
			if err != nil {
				t.Fatal(err)
			}
			want := pre.Display.(*image.NRGBA)
			if !bytes.Equal(want.Pix, clean.Pix) {
				t.Fatal("the clean image is not the model's preprocessed crop of the upload")
			}
			for p := 0; p < len(clean.Pix); p += 4 {
				if clean.Pix[p] > 200 && clean.Pix[p+1] < 40 {
					t.Fatalf("the crop holds a red edge pixel at %d: it was not centre-cropped", p/4)
				}
			}
			var st imagenetStarted
			if _, _, err := unpackBinary(started.raw, &st); err != nil {
				t.Fatal(err)
			}
			if st.SourceWidth != 320 || st.SourceHeight != 240 || !strings.Contains(strings.Join(st.Crop, "; "), "centre 224×224 px cropped") {
				t.Fatalf("started: source %d×%d, crop %q", st.SourceWidth, st.SourceHeight, st.Crop)
			}
			for i, d := range st.Defences {
				converted := d.Name != tc.surrogate
				if converted == (d.Input == "") {
					t.Fatalf("defence %s: input note %q", d.Name, d.Input)
				}
				if strings.Contains(d.Name, "299") && !strings.Contains(d.Input, "resized to 299×299") {
					t.Fatalf("defence %d %s: input note %q", i, d.Name, d.Input)
				}
			}
			for _, d := range started.Defences {
				if len(d.Clean) != 5 || d.Error != "" {
					t.Fatalf("defence %s on the clean crop: %+v", d.Name, d)
				}
			}

			done, msgs := c.until("done", 120*time.Second)
			frames := 0
			for _, fr := range msgs {
				if fr.Type != "frame" {
					continue
				}
				frames++
				adv := decodeRGB(t, fr.images["adv"])
				if b := adv.Bounds(); b.Dx() != 224 || b.Dy() != 224 {
					t.Fatalf("frame %d is %v, want 224×224", fr.Seq, b)
				}
				worst := 0
				for p := range adv.Pix {
					if p%4 == 3 {
						continue
					}
					d := int(adv.Pix[p]) - int(clean.Pix[p])
					worst = max(worst, d, -d)
				}
				if worst > tc.eps || worst != fr.Linf {
					t.Fatalf("frame %d: L∞ %d/255 in the PNG, frame says %d, ε %d", fr.Seq, worst, fr.Linf, tc.eps)
				}
				if len(fr.Defences) != len(tc.watch) {
					t.Fatalf("frame %d has %d defences", fr.Seq, len(fr.Defences))
				}
				for _, d := range fr.Defences {
					if d.Error != "" || len(d.Top) != 5 {
						t.Fatalf("frame %d: defence %+v", fr.Seq, d)
					}
				}
				var tm frameTimingMsg
				if _, _, err := unpackBinary(fr.raw, &tm); err != nil {
					t.Fatal(err)
				}
				if tm.Timing.StepMS <= 0 || tm.Timing.ElapsedMS <= 0 {
					t.Fatalf("frame %d timing %+v", fr.Seq, tm.Timing)
				}
				checkProviders(t, tm.Timing.Providers, tc.surrogate, tc.watch)
			}
			if frames == 0 || done.Stopped {
				t.Fatalf("%d frames; done %+v", frames, done)
			}
			last := lastFrame(msgs)
			if !last.Final || !last.Defences[0].Flipped {
				t.Fatalf("PGD-%d at ε %d/255 did not flip %s: %+v", steps, tc.eps, tc.surrogate, last.Defences[0])
			}
			t.Logf("%s: %d frames, %d of %d defences flipped, timings %v", tc.surrogate, frames, done.Flipped, done.Watched, done.Timings)
		})
	}

	// /models says where each model runs, the gradient graph once an attack built it.
	resp, err := http.Get(f.ts.URL + "/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	runs := func(model string) string {
		var facts []string
		doc.Find(`[data-model="` + model + `"] [data-testid="facts-runs"] dt`).Each(func(_ int, dt *goquery.Selection) {
			facts = append(facts, dt.Text()+": "+dt.Next().Text())
		})
		return strings.Join(facts, "; ")
	}
	if got := runs("tiny-torch"); !strings.Contains(got, "Forward: CPU") || !strings.Contains(got, "Gradient graph: CPU") {
		t.Fatalf("/models, tiny-torch runs on: %q", got)
	}
	if got := runs("tiny-inception-299"); !strings.Contains(got, "Gradient graph: not built yet") {
		t.Fatalf("/models, a model only watched: %q", got)
	}
	if got := doc.Find(`[data-model="tiny-inception-299"] [data-testid="facts-input"]`).Text(); !strings.Contains(got, "shorter side scaled to 341") {
		t.Fatalf("/models, the 299 px model's resize: %q", got)
	}
}

// checkProviders wants the attacked model's gradient graph and every watched
// model's forward pass listed, all on the CPU (the test runtime's provider).
func checkProviders(t *testing.T, ps []engine.PassProvider, surrogate string, watch []string) {
	t.Helper()
	want := map[engine.PassProvider]bool{{Model: surrogate, Pass: "gradient", EP: inference.EPCPU}: true}
	for _, w := range watch {
		want[engine.PassProvider{Model: w, Pass: "forward", EP: inference.EPCPU}] = true
	}
	got := map[engine.PassProvider]bool{}
	for _, p := range ps {
		got[p] = true
	}
	for p := range want {
		if !got[p] {
			t.Fatalf("frame providers %+v lack %+v", ps, p)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("frame providers %+v, want %v", ps, want)
	}
}

func lastFrame(msgs []wsMsg) wsMsg {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Type == "frame" {
			return msgs[i]
		}
	}
	return wsMsg{}
}

// The explorer page on ImageNet models in headless Chromium: an uploaded photo is
// shown as the 224×224 crop the attacked model sees, at that size, with a caption
// saying how it was made; watchers of another size say how they are fed; the
// status says where the passes ran.
func TestAttackBrowserImageNet(t *testing.T) {
	f := serveExplorerDir(t, imagenetDir(t), nil)
	file := filepath.Join(t.TempDir(), "photo.png")
	if err := os.WriteFile(file, pngBytes(t, photo()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, exceptions := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/attack"), chromedp.WaitVisible(`#ax-start`),
		chromedp.SetUploadFiles(`#ax-file`, []string{file})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the upload chosen", `document.getElementById("ax-source-label").textContent.includes("photo.png")`)
	// Every colour model may watch, whatever its size, layout or range.
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-testid="attack-watch"]:not(:disabled)').length`); n != 3 {
		t.Fatalf("%d watch boxes enabled, want all 3 colour models", n)
	}
	eval[any](t, ctx, `(() => { const e = document.getElementById("ax-steps"); e.value = "5"; e.dispatchEvent(new Event("input")); return 0; })()`)
	if err := chromedp.Do(ctx, chromedp.Click(`#ax-start`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the run to finish", `document.getElementById("explorer").dataset.state === "done"`)
	crop := eval[string](t, ctx, `document.getElementById("ax-crop").textContent`)
	for _, want := range []string{"224×224 px image", "320×240 px original", "scaled to 341×256 px (aspect kept)", "centre 224×224 px cropped"} {
		if !strings.Contains(crop, want) {
			t.Errorf("the crop caption lacks %q: %q", want, crop)
		}
	}
	for _, id := range []string{"ax-clean", "ax-adv"} {
		got := eval[string](t, ctx, `(() => { const i = document.getElementById("`+id+`"); const r = i.getBoundingClientRect();
			return i.naturalWidth + "x" + i.naturalHeight + " shown " + Math.round(r.width) + "x" + Math.round(r.height) + " " + i.classList.contains("pixelated"); })()`)
		if got != "224x224 shown 224x224 false" {
			t.Errorf("%s: %s, want the 224×224 crop shown at its size, smoothed", id, got)
		}
	}
	note := eval[string](t, ctx, `document.querySelector('[data-testid="defence"][data-name="tiny-inception-299"] [data-testid="defence-input"]').textContent`)
	if !strings.Contains(note, "resized to 299×299") {
		t.Errorf("the 299 px watcher's note: %q", note)
	}
	if s := eval[string](t, ctx, `document.getElementById("ax-speed").textContent`); !strings.Contains(s, "all passes on CPU") {
		t.Errorf("the result's timing line %q does not say where the passes ran", s)
	}
	if p := eval[string](t, ctx, `document.getElementById("explorer").dataset.providers`); !strings.Contains(p, `"pass":"gradient"`) {
		t.Errorf("the last frame's providers: %s", p)
	}
	if v := eval[[]string](t, ctx, `window.__csp`); len(v) > 0 {
		t.Errorf("Content-Security-Policy violations: %v", v)
	}
	if ex := exceptions(); len(ex) > 0 {
		t.Errorf("script errors: %v", ex)
	}
}
