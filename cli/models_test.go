package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/catalog"
	"gibbon/inference/onnx"
	"gibbon/internal/hubtest"
)

func modelsCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	err := run(context.Background(), append([]string{"models"}, args...), &out, &errw)
	return out.String(), errw.String(), err
}

func TestModelsListAvailableShowsTheCatalog(t *testing.T) {
	dir := t.TempDir()
	out, _, err := modelsCmd(t, "list", "--available", "--models", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mobilenetv2-12", "resnet50-v1-12", "efficientnet-lite4-11", "224×224 RGB images on [0,255] (NHWC, crop 0.875",
		"convit_tiny-opset17", "ens_adv_inception_resnet_v2-opset17", "pinned by the hub on pull", "adversarially trained",
		"NIPS'17 defence", "NIPS'17 surrogate", "surrogates resnet50-v1-12, inception_v3-opset17", dir} {
		if !strings.Contains(out, want) {
			t.Errorf("list --available lacks %q:\n%s", want, out)
		}
	}
	out, _, err = modelsCmd(t, "list", "--models", dir)
	if err != nil || !strings.Contains(out, "No models in") {
		t.Fatalf("list of an empty directory: %q %v", out, err)
	}
	t.Setenv("XDG_DATA_HOME", dir)
	out, _, err = modelsCmd(t, "dir")
	if err != nil || out != filepath.Join(dir, "gibbon", "models")+"\n" {
		t.Fatalf("models dir: %q %v", out, err)
	}
}

func TestModelsPullRefusals(t *testing.T) {
	dir := t.TempDir()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	t.Setenv("GIBBON_HUB_URL", closed.URL) // no hub: the pull must say so, in one line
	for _, c := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"pull"}, true, "needs a model NAME"},
		{[]string{"pull", "--models", dir, "no-such-model"}, true, "unknown model"},
		{[]string{"pull", "--models", dir, "--from", "a.onnx", "mobilenetv2-12", "resnet50-v1-12"}, true, "one model NAME"},
		{[]string{"pull", "--models", dir, "adv_inception_v3-opset17"}, false, "cannot connect to " + strings.TrimPrefix(closed.URL, "http://")},
		{[]string{"pull", "--models", dir, "--revision", "main", "mobilenetv2-12"}, false, "--revision applies to models pulled from the hub"},
		{[]string{"pull", "--models", dir, "--revision", "main", "adv_inception_v3-opset17", "inception_v3-opset17"}, true, "one model NAME"},
		{[]string{"pull", "--models", dir, "--revision", "main", "--from", "a.onnx", "adv_inception_v3-opset17"}, true, "give one of them"},
		{[]string{"pull", "--models", dir, "--revision", "no such", "adv_inception_v3-opset17"}, true, "not a commit id"},
		{[]string{"pull", "--models", dir, "--sha256", "xyz", "mobilenetv2-12"}, false, "not a SHA-256"},
		{[]string{"pull", "--models", dir, "--sha256", strings.Repeat("0", 64), "mobilenetv2-12"}, false, "not the checksum Gibbon pins"},
		{[]string{"frobnicate"}, true, "unknown models subcommand"},
	} {
		_, _, err := modelsCmd(t, c.args...)
		var u usageError
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error of several lines:\n%v", c.args, err)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || errors.As(err, &u) != c.usage {
			t.Errorf("%v: %v (usage error: %v)", c.args, err, errors.As(err, &u))
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused pulls left files: %v", entries)
	}
}

// A catalog file pointing at a local server: the whole command, download to registry.
func TestModelsPullFromACatalogFile(t *testing.T) {
	b := onnx.NewBuilder("tiny")
	b.SetOpset(12)
	x := b.Input("data", 1, 3, 224, 224)
	y := b.Op("Flatten", []string{b.Op("GlobalAveragePool", []string{x})})
	w := make([]float32, 3000)
	for i := range w {
		w[i] = float32(i%7) - 3
	}
	b.Output("prob", b.Op("Softmax", []string{b.Op("Gemm", []string{y, b.Init("w", []int64{1000, 3}, w)}, onnx.AttrInt("transB", 1))}), 1, 1000)
	model := b.Bytes()
	sum := sha256.Sum256(model)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(model)
	}))
	defer srv.Close()

	e := catalog.Entry{Name: "tiny-12", Architecture: "test net", Description: "served by the test",
		URLs: []string{srv.URL + "/tiny.onnx"}, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(model)),
		PinSource: "test", Classes: 1000,
		Input: inference.InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB",
			Range: [2]float64{0, 1}, Resize: "crop", CropPct: 0.875}}
	doc, _ := json.Marshal(map[string]any{"models": []catalog.Entry{e}})
	catFile := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(catFile, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "models")
	out, errs, err := modelsCmd(t, "pull", "--models", dir, "--catalog", catFile, "tiny-12")
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	for _, want := range []string{"registered tiny-12", "opset 12 -> 17", "any batch", "ends in Softmax"} {
		if !strings.Contains(out, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "downloading tiny-12") {
		t.Errorf("no progress on stderr: %q", errs)
	}
	m, err := inference.ReadManifest(dir)
	if err != nil || len(m.Models) != 1 || m.Models[0].OutputsLogits || m.Models[0].LabelsFile != "imagenet_labels.txt" {
		t.Fatalf("manifest %+v, %v", m, err)
	}
	out, _, err = modelsCmd(t, "list", "--models", dir, "--catalog", catFile)
	if err != nil || !strings.Contains(out, "tiny-12") || !strings.Contains(out, "probabilities") {
		t.Fatalf("list after pull: %q %v", out, err)
	}
	out, _, _ = modelsCmd(t, "list", "--available", "--models", dir, "--catalog", catFile)
	if !strings.Contains(out, "installed") {
		t.Errorf("list --available does not mark the pulled model installed:\n%s", out)
	}
}

// A catalog entry without a stored hash, pulled through the whole command from a fake
// hub: pinned by the hub (GIBBON_HUB_URL, HF_TOKEN), the recorded pin reused, --revision re-pins.
func TestModelsPullPinnedByTheHub(t *testing.T) {
	h := hubtest.New(t)
	h.RequireToken("hf_cli_token")
	data := hubtest.Classifier(21, 224)
	c1 := h.Commit("zoo/tiny_Opset17", "main", hubtest.File{Path: "tiny_Opset17.onnx", Data: data, LFS: true})
	t.Setenv("GIBBON_HUB_URL", h.URL)
	t.Setenv("HF_TOKEN", "hf_cli_token")

	e := catalog.Entry{Name: "tiny-hub", Architecture: "test net", Description: "served by the fake hub",
		Hub: &catalog.HubFile{Repo: "zoo/tiny_Opset17", Path: "tiny_Opset17.onnx"}, PinSource: "the hub", Classes: 1000,
		OutputsLogits: true, Role: inference.RoleDefence,
		Input: inference.InputContract{Layout: "NCHW", Channels: 3, Height: 224, Width: 224, Color: "RGB",
			Range: [2]float64{0, 1}, Resize: "crop", CropPct: 0.875}}
	doc, _ := json.Marshal(map[string]any{"models": []catalog.Entry{e}})
	catFile := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(catFile, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out, errs, err := modelsCmd(t, "pull", "--models", dir, "--catalog", catFile, "tiny-hub")
	if err != nil {
		t.Fatalf("%v\n%s", err, errs)
	}
	for _, want := range []string{"tiny-hub: pinned by the hub at commit " + c1, "registered tiny-hub",
		"pin      sha256 " + hubtest.SHA256(data) + " by the hub at commit " + c1 + " of zoo/tiny_Opset17"} {
		if !strings.Contains(out, want) {
			t.Errorf("pull output lacks %q:\n%s", want, out)
		}
	}
	m, err := inference.ReadManifest(dir)
	if err != nil || len(m.Models) != 1 || m.Models[0].Pin == nil || m.Models[0].Pin.Commit != c1 || m.Models[0].Role != inference.RoleDefence {
		t.Fatalf("manifest %+v, %v", m, err)
	}

	c2 := h.Commit("zoo/tiny_Opset17", "main", hubtest.File{Path: "tiny_Opset17.onnx", Data: hubtest.Classifier(22, 224), LFS: true})
	out, _, err = modelsCmd(t, "pull", "--models", dir, "--catalog", catFile, "tiny-hub")
	if err != nil || !strings.Contains(out, "using the pin recorded at commit "+c1) {
		t.Fatalf("second pull: %v\n%s", err, out)
	}
	out, _, err = modelsCmd(t, "pull", "--models", dir, "--catalog", catFile, "--revision", "main", "tiny-hub")
	if err != nil || !strings.Contains(out, "re-pinned from commit "+c1+" to "+c2) {
		t.Fatalf("--revision main: %v\n%s", err, out)
	}
	for _, r := range h.Requests() {
		if r.Server == "hub" && r.Authorization != "Bearer hf_cli_token" {
			t.Errorf("HF_TOKEN did not reach the hub on %s", r.Path)
		}
	}
}
