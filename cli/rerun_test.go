package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/gallery"
)

// A run saved by gibbon attack --save replays bit for bit from the gallery and
// from a gallery export; an entry whose stored image was altered is reported as
// not reproduced (exit code 1), and one naming a model this machine lacks says so.
func TestRerunAndReproduceGallery(t *testing.T) {
	dir := attackModels(t)
	in, _ := grayPNG(t, t.TempDir(), 4)
	data := t.TempDir()
	stdout, stderr, err := attackCmd("--models", dir, "--model", "lin-a", "--attack", "pgd", "--eps", "0.2", "--steps", "6", "--seed", "2",
		"--save", "--data", data, "--json", in)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var rep imageRunReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}

	out, errw, err := runCmd(t, "gallery", "check", "--data", data, "--reproduce", "--models", dir)
	if err != nil || !strings.Contains(out, rep.Slug+": reproduced bit-for-bit") || !strings.Contains(out, "1 run(s) reproduced, 0 not reproduced") {
		t.Fatalf("check --reproduce: %v\n%s%s", err, out, errw)
	}
	// Without the user's models, the run cannot be replayed here, and says why.
	out, _, err = runCmd(t, "gallery", "check", "--data", data, "--reproduce")
	if err != nil || !strings.Contains(out, "model lin-a is not loaded here") || !strings.Contains(out, "1 could not be replayed here") {
		t.Fatalf("check --reproduce without the models: %v\n%s", err, out)
	}

	export := filepath.Join(t.TempDir(), "export")
	if _, errw, err := runCmd(t, "gallery", "export", "--data", data, export); err != nil {
		t.Fatalf("export: %v\n%s", err, errw)
	}
	entryFile := filepath.Join(export, "entries", rep.Slug+".json")
	out, errw, err = runCmd(t, "rerun", "--models", dir, entryFile)
	if err != nil || !strings.Contains(out, "reproduced bit-for-bit") {
		t.Fatalf("rerun of the export: %v\n%s%s", err, out, errw)
	}

	// An entry whose adversarial image is not what its plan makes.
	raw, err := os.ReadFile(entryFile)
	if err != nil {
		t.Fatal(err)
	}
	var e gallery.Entry
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	advFile := filepath.Join(export, "images", e.AdversarialSHA+".png")
	adv, err := os.ReadFile(advFile)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(adv))
	if err != nil {
		t.Fatal(err)
	}
	g := image.NewGray(img.Bounds())
	for i := range g.Pix {
		g.Pix[i] = img.(*image.Gray).Pix[i]
	}
	g.Pix[100] ^= 0x10
	g.Pix[200] ^= 0x10
	var buf bytes.Buffer
	png.Encode(&buf, g)
	altered := t.TempDir()
	os.WriteFile(filepath.Join(altered, "adversarial.png"), buf.Bytes(), 0o644)
	orig, _ := os.ReadFile(filepath.Join(export, "images", e.OriginalSHA+".png"))
	os.WriteFile(filepath.Join(altered, "original.png"), orig, 0o644)
	e.AdversarialSHA = gallery.SHA256(buf.Bytes())
	b, _ := json.Marshal(e)
	os.WriteFile(filepath.Join(altered, "entry.json"), b, 0o644)
	out, _, err = runCmd(t, "rerun", "--models", dir, filepath.Join(altered, "entry.json"))
	if !errors.Is(err, errNotReproduced) || !strings.Contains(out, "Not reproduced: 2 of 784 pixel values differ") {
		t.Fatalf("altered entry: %v\n%s", err, out)
	}

	for _, bad := range [][]string{{"rerun"}, {"rerun", "nope.txt"}, {"rerun", "--data", data, "0000000000"}} {
		if _, _, err := runCmd(t, bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
