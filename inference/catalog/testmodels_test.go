package catalog_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/inference/onnx"
)

// tinyModel describes an ImageNet-shaped test classifier: 3x224x224 in, 1000 scores
// out, batch fixed at 1, as exporters write them.
type tinyModel struct {
	opset   int64
	softmax bool
	nhwc    bool
	seed    uint64
	classes int64
}

// build makes the graph: (Transpose) -> Conv 8x8/8 -> Relu -> GlobalAveragePool ->
// Squeeze -> Reshape([1,-1]) -> Gemm -> (Softmax). Below opset 13 Squeeze and
// Softmax use their old forms, which the upgrade must rewrite.
func (tm tinyModel) build() []byte {
	r := rand.New(rand.NewPCG(tm.seed, 7))
	floats := func(n int, scale float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64() * scale)
		}
		return out
	}
	classes := tm.classes
	if classes == 0 {
		classes = 1000
	}
	b := onnx.NewBuilder("tiny-imagenet")
	b.SetOpset(tm.opset)
	var x string
	if tm.nhwc {
		x = b.Op("Transpose", []string{b.Input("images:0", 1, 224, 224, 3)}, onnx.AttrInts("perm", 0, 3, 1, 2))
	} else {
		x = b.Input("data", 1, 3, 224, 224)
	}
	w := b.Init("conv_w", []int64{8, 3, 8, 8}, floats(8*3*64, 0.05))
	y := b.Op("Conv", []string{x, w}, onnx.AttrInts("strides", 8, 8))
	y = b.Op("GlobalAveragePool", []string{b.Op("Relu", []string{y})})
	if tm.opset < 13 {
		y = b.Op("Squeeze", []string{y}, onnx.AttrInts("axes", 3))
	} else {
		y = b.Op("Squeeze", []string{y, b.Ints(3)})
	}
	y = b.Op("Reshape", []string{y, b.Ints(1, -1)})
	fc := b.Init("fc_w", []int64{classes, 8}, floats(int(classes)*8, 2))
	bias := b.Init("fc_b", []int64{classes}, floats(int(classes), 0.5))
	y = b.Op("Gemm", []string{y, fc, bias}, onnx.AttrInt("transB", 1))
	name := "logits"
	if tm.softmax {
		y = b.Op("Softmax", []string{y}, onnx.AttrInt("axis", 1))
		name = "prob"
	}
	b.Output(name, y, 1, classes)
	return b.Bytes()
}

func contractFor(nhwc bool) inference.InputContract {
	if nhwc {
		return inference.InputContract{Layout: "NHWC", Channels: 3, Height: 224, Width: 224, Color: "RGB",
			Range: [2]float64{0, 255}, Mean: []float64{127, 127, 127}, Std: []float64{128, 128, 128},
			Resize: "crop", CropPct: 0.875, Interp: "bilinear"}
	}
	return inference.InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB",
		Range: [2]float64{0, 1}, Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225},
		Resize: "crop", CropPct: 0.875, Interp: "bicubic"}
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// zooServer serves files by path, records every request and can cut a response.
type zooServer struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	cutAfter map[string]int64 // path -> bytes sent before the first response is cut
	log      []served
}

type served struct {
	path, rangeHeader string
}

func newZooServer(t *testing.T) *zooServer {
	z := &zooServer{files: map[string][]byte{}, cutAfter: map[string]int64{}}
	z.Server = httptest.NewServer(http.HandlerFunc(z.serve))
	t.Cleanup(z.Close)
	return z
}

func (z *zooServer) put(path string, data []byte) string {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.files[path] = data
	return z.URL + path
}

func (z *zooServer) serve(w http.ResponseWriter, r *http.Request) {
	z.mu.Lock()
	z.log = append(z.log, served{r.URL.Path, r.Header.Get("Range")})
	data, ok := z.files[r.URL.Path]
	cut, cutting := z.cutAfter[r.URL.Path]
	delete(z.cutAfter, r.URL.Path)
	z.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if cutting {
		// Promise the whole file, send part of it, then drop the connection.
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(data))
}

func (z *zooServer) requests() []served {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]served(nil), z.log...)
}

// entryFor makes a catalog entry for bytes served at path.
func (z *zooServer) entryFor(name, path string, data []byte, nhwc bool) catalog.Entry {
	return catalog.Entry{
		Name: name, Architecture: "tiny test net", Description: "test classifier " + name,
		URLs: []string{z.put(path, data)}, SHA256: sha(data), Size: int64(len(data)), PinSource: "test",
		Input: contractFor(nhwc), OutputsLogits: true, Classes: 1000,
	}
}

func labels(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("class %d", i)
	}
	return out
}

func lines(s string) int { return strings.Count(s, "\n") }
