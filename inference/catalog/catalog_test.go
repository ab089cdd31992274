package catalog_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/inference"
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
		if e.PinRequired() {
			t.Errorf("%s: neither a stored checksum nor a hub to attest one", e.Name)
		}
		if e.Hub != nil && (!strings.HasPrefix(e.Hub.Repo, "onnxmodelzoo/") || e.Hub.Path != strings.TrimPrefix(e.Hub.Repo, "onnxmodelzoo/")+".onnx") {
			t.Errorf("%s: hub file %+v is not a zoo export's own repository", e.Name, e.Hub)
		}
		if e.SHA256 != "" {
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

// The NIPS'17 competition's setting: two adversarially trained defences, Inception v3
// and a ResNet as surrogates; the hub pins the ones without a stored checksum.
func TestCatalogKeepsTheNIPS17Pairing(t *testing.T) {
	c := catalog.Default()
	defences, surrogates := c.WithRole(inference.RoleDefence), c.WithRole(inference.RoleSurrogate)
	if strings.Join(defences, ",") != "adv_inception_v3-opset17,ens_adv_inception_resnet_v2-opset17" {
		t.Errorf("defences %v", defences)
	}
	if strings.Join(surrogates, ",") != "resnet50-v1-12,inception_v3-opset17" {
		t.Errorf("surrogates %v", surrogates)
	}
	for _, n := range append(defences, surrogates...) {
		e, _ := c.Lookup(n)
		if e.Robust != (e.Role == inference.RoleDefence) {
			t.Errorf("%s: robust %v but role %s", n, e.Robust, e.Role)
		}
		if strings.Contains(e.Architecture, "Inception") && (e.Input.Height != 299 || e.Input.Mean[0] != 0.5 || e.Input.Std[0] != 0.5) {
			t.Errorf("%s: the Inception family takes 299 px with mean and std 0.5: %+v", n, e.Input)
		}
		if !strings.Contains(e.Description, "NIPS'17 "+e.Role) {
			t.Errorf("%s: the description does not name its NIPS'17 role: %s", n, e.Description)
		}
	}
	for _, n := range []string{"adv_inception_v3-opset17", "ens_adv_inception_resnet_v2-opset17", "inception_v3-opset17", "deit_tiny_patch16_224-opset16"} {
		if e, _ := c.Lookup(n); e == nil || !e.HubPinned() {
			t.Errorf("%s is not pinned by the hub at pull time: %+v", n, e)
		}
	}
	bad := c[0]
	bad.Role = "attacker"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "role") {
		t.Errorf("role %q accepted: %v", bad.Role, err)
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
	// A hub file instead of URLs, no stored hash: pinned by the hub when pulled.
	hub := strings.Replace(strings.Replace(good, `"urls": ["https://mirror.example/m1.onnx"], "sha256": "`+strings.Repeat("AB", 32)+`", "size": 10,`,
		`"hub": {"repo": "org/m1", "path": "onnx/m1.onnx", "revision": "v1.0"},`, 1), `"pin_source": "me"`, `"pin_source": "the hub"`, 1)
	c, err = catalog.LoadFile(write(hub))
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := c.Lookup("m1"); !e.HubPinned() || e.Hub.Revision != "v1.0" || e.Hub.Path != "onnx/m1.onnx" {
		t.Fatalf("hub entry loaded as %+v", e)
	}
	for _, bad := range []struct{ from, to, want string }{
		{`"repo": "org/m1"`, `"repo": "m1"`, "owner/name"},
		{`"path": "onnx/m1.onnx"`, `"path": "../m1.onnx"`, "relative file path"},
		{`"revision": "v1.0"`, `"revision": "a b"`, "branch, tag or commit"},
		{`"hub": {"repo": "org/m1", "path": "onnx/m1.onnx", "revision": "v1.0"},`, ``, "no URLs and no hub file"},
	} {
		_, err := catalog.LoadFile(write(strings.Replace(hub, bad.from, bad.to, 1)))
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
