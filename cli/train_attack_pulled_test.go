package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/inference/onnx"
	"gibbon/inference/zoo"
)

// An attack network trained against a pulled ImageNet model (input "x", 224 px,
// crop and mean/std in its contract) registers beside it and loads in the app.
func TestTrainAttackAgainstAPulledModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 5))
	floats := func(n int, scale float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64() * scale)
		}
		return out
	}
	b := onnx.NewBuilder("tiny")
	x := b.Input("x", 1, 3, 224, 224)
	y := b.Op("Conv", []string{x, b.Init("conv_w", []int64{8, 3, 8, 8}, floats(8*3*64, 0.05))}, onnx.AttrInts("strides", 8, 8))
	y = b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{b.Op("Relu", []string{y})})}, onnx.AttrInt("axis", 1))
	y = b.Op("Gemm", []string{y, b.Init("fc_w", []int64{1000, 8}, floats(8000, 2)), b.Init("fc_b", []int64{1000}, floats(1000, 0.5))}, onnx.AttrInt("transB", 1))
	b.Output("logits", y, 1, 1000)
	data := b.Bytes()
	tmp := t.TempDir()
	file := filepath.Join(tmp, "tiny.onnx")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	dir := filepath.Join(tmp, "models")
	e := catalog.Entry{Name: "tiny-net", Architecture: "tiny conv net", Description: "test", URLs: []string{"https://example.invalid/tiny.onnx"},
		SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), PinSource: "the test", Classes: 1000, OutputsLogits: true,
		Input: inference.InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB", Range: [2]float64{0, 1},
			Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225}, Resize: "crop", CropPct: 0.875, Interp: "bicubic"}}
	doc, err := json.Marshal(map[string]any{"models": []catalog.Entry{e}})
	if err != nil {
		t.Fatal(err)
	}
	catFile := filepath.Join(tmp, "catalog.json")
	if err := os.WriteFile(catFile, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	if err := run(context.Background(), []string{"models", "pull", "--models", dir, "--catalog", catFile, "--from", file, "tiny-net"}, &out, &errw); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	imgs := filepath.Join(tmp, "photos")
	if err := os.MkdirAll(imgs, 0o755); err != nil {
		t.Fatal(err)
	}
	for k := range 8 {
		img := image.NewNRGBA(image.Rect(0, 0, 300, 200))
		for i := range img.Pix {
			img.Pix[i] = uint8(r.IntN(256)) | uint8(255*min(1, (i+1)%4))
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(imgs, fmt.Sprintf("p%d.png", k)), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := run(context.Background(), []string{"train-attack", "--dir", dir, "--targets", "tiny-net", "--images", imgs,
		"--eps", "4/255,8/255", "--steps", "2", "--batch", "2", "--holdout", "2", "--eval=false",
		"--checkpoint", filepath.Join(tmp, "ckpt")}, &out, &errw); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	rt, err := inference.OpenRuntime(inference.RuntimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	reg, err := zoo.Load(context.Background(), rt, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if p := reg.Problems(); len(p) > 0 {
		t.Fatalf("the models directory does not load: %v", p)
	}
	nets := reg.AttackNetworks()
	if len(nets) != 1 || nets[0].Input.Width != 224 || !strings.EqualFold(nets[0].Input.Resize, "crop") || len(nets[0].Input.Mean) != 0 {
		t.Fatalf("attack networks %+v", nets)
	}
}
