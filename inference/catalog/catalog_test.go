package catalog_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/inference/catalog"
)

func TestDefaultCatalogIsWellFormed(t *testing.T) {
	c := catalog.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	arch := map[string]bool{}
	var vit, defences int
	for _, e := range c {
		for _, u := range e.URLs {
			if !strings.HasPrefix(u, "https://") || !strings.HasSuffix(u, ".onnx") {
				t.Errorf("%s: URL %s", e.Name, u)
			}
		}
		if e.Classes != 1000 || e.PinSource == "" || e.Description == "" {
			t.Errorf("%s: incomplete entry %+v", e.Name, e)
		}
		if !e.PinRequired() {
			arch[e.Architecture] = true
			if strings.Contains(e.PinSource, "ONNX_HUB_MANIFEST") && e.Size == 0 {
				t.Errorf("%s: the hub manifest gives sizes", e.Name)
			}
		}
		if strings.Contains(e.Architecture, "transformer") {
			vit++
		}
		if e.Robust {
			defences++
			if e.Input.Height != 299 || e.Input.Mean[0] != 0.5 || e.Input.Std[0] != 0.5 {
				t.Errorf("%s: NIPS'17 defences take 299 px in [-1, 1]: %+v", e.Name, e.Input)
			}
		}
	}
	if len(arch) < 5 {
		t.Errorf("only %d pinned architectures: %v", len(arch), arch)
	}
	if vit < 2 || defences != 2 {
		t.Errorf("%d vision transformers, %d defences", vit, defences)
	}
	// Each entry owns its contract slices.
	c[0].Input.Mean[0] = 42
	if catalog.Default()[0].Input.Mean[0] == 42 || c[1].Input.Mean[0] == 42 {
		t.Error("entries share mean slices")
	}
}

func TestLoadFileValidates(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.json")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `{"models": [{"name": "m1", "architecture": "a", "description": "d",
		"urls": ["https://mirror.example/m1.onnx"], "sha256": "` + strings.Repeat("AB", 32) + `", "size": 10,
		"pin_source": "me", "classes": 1000, "outputs_logits": true,
		"input": {"name": "x", "layout": "NCHW", "channels": 3, "height": 224, "width": 224, "color": "RGB",
		"range": [0, 1], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "resize": "crop", "crop_pct": 0.875}}]}`
	c, err := catalog.LoadFile(write(good))
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := c.Lookup("m1"); !ok || e.SHA256 != strings.Repeat("ab", 32) {
		t.Fatalf("loaded %+v", c)
	}
	for _, bad := range []struct{ from, to, want string }{
		{`"sha256": "` + strings.Repeat("AB", 32) + `"`, `"sha256": "abc"`, "SHA-256"},
		{`"https://mirror.example/m1.onnx"`, `"ftp://x/m1.onnx"`, "http(s)"},
		{`"name": "m1"`, `"name": "../m1"`, "model name"},
		{`"layout": "NCHW"`, `"layout": "CHW"`, "layout"},
		{`"crop_pct": 0.875`, `"crop_pct": 1.5`, "crop_pct"},
		{`"std": [0.5, 0.5, 0.5]`, `"std": [0.5, 0, 0.5]`, "std"},
		{`"classes": 1000`, `"classes": 1000, "colour": 1`, "unknown field"},
	} {
		_, err := catalog.LoadFile(write(strings.Replace(good, bad.from, bad.to, 1)))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s -> %s: %v", bad.from, bad.to, err)
		}
	}
	if _, err := catalog.LoadFile(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing catalog file was accepted")
	}
}

func TestDefaultModelsDir(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", "/data/home")
	d, err := catalog.DefaultModelsDir()
	if err != nil || d != "/data/home/gibbon/models" {
		t.Fatalf("DefaultModelsDir = %q, %v", d, err)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "/home/u")
	if d, err := catalog.DefaultModelsDir(); err != nil || d != "/home/u/.local/share/gibbon/models" {
		t.Fatalf("DefaultModelsDir = %q, %v", d, err)
	}
}
