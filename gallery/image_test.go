package gallery_test

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image/png"
	"io"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"

	"gibbon/gallery"
	"gibbon/gallery/gallerytest"
)

// readNPY parses a version-1.0 .npy the way NumPy does (header dict, then data).
func readNPY(t *testing.T, b []byte) (shape []int, data []float32) {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("\x93NUMPY\x01\x00")) {
		t.Fatalf("bad magic %q", b[:8])
	}
	hl := int(binary.LittleEndian.Uint16(b[8:10]))
	if (10+hl)%64 != 0 {
		t.Fatalf("header end %d is not 64-byte aligned", 10+hl)
	}
	header := string(b[10 : 10+hl])
	m := regexp.MustCompile(`^\{'descr': '<f4', 'fortran_order': False, 'shape': \((\d+), (\d+), (\d+)\), \} *\n$`).FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("header %q", header)
	}
	for _, s := range m[1:] {
		n, _ := strconv.Atoi(s)
		shape = append(shape, n)
	}
	body := b[10+hl:]
	if len(body) != 4*shape[0]*shape[1]*shape[2] {
		t.Fatalf("%d data bytes for shape %v", len(body), shape)
	}
	for i := 0; i < len(body); i += 4 {
		data = append(data, math.Float32frombits(binary.LittleEndian.Uint32(body[i:])))
	}
	return shape, data
}

func TestPerturbation(t *testing.T) {
	for _, rgb := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(3, 4))
		orig, adv := gallerytest.Images(rng, 5, 3, rgb, 8)
		p, err := gallery.NewPerturbation(orig, adv)
		if err != nil {
			t.Fatal(err)
		}
		wantC := 1
		if rgb {
			wantC = 3
		}
		shape, data := readNPY(t, p.NPY())
		if shape[0] != wantC || shape[1] != 3 || shape[2] != 5 {
			t.Fatalf("rgb=%v: shape %v", rgb, shape)
		}
		// Check each value against the pixels themselves, channel-first.
		oi, _ := png.Decode(bytes.NewReader(orig))
		ai, _ := png.Decode(bytes.NewReader(adv))
		for c := range wantC {
			for y := range 3 {
				for x := range 5 {
					o := [3]uint32{}
					a := [3]uint32{}
					o[0], o[1], o[2], _ = oi.At(x, y).RGBA()
					a[0], a[1], a[2], _ = ai.At(x, y).RGBA()
					want := (float64(a[c]) - float64(o[c])) / 65535
					got := float64(data[c*15+y*5+x])
					if math.Abs(got-want) > 1e-6 {
						t.Fatalf("rgb=%v [%d,%d,%d] = %v, want %v", rgb, c, y, x, got, want)
					}
				}
			}
		}
		if math.Abs(p.MaxAbs()-8.0/255) > 1e-6 {
			t.Fatalf("max |delta| %v, want 8/255", p.MaxAbs())
		}
	}
	// Same images: zero perturbation, mid-grey picture.
	g := gallerytest.PNG(4, 4, 100)
	p, err := gallery.NewPerturbation(g, g)
	if err != nil || p.MaxAbs() != 0 {
		t.Fatalf("identical images: %v %v", p, err)
	}
	if _, err := gallery.NewPerturbation(g, gallerytest.PNG(5, 4, 100)); err == nil {
		t.Fatal("images of different sizes accepted")
	}
	if _, err := gallery.NewPerturbation([]byte("nope"), g); err == nil {
		t.Fatal("non-PNG accepted")
	}
}

func TestWriteZip(t *testing.T) {
	e := gallerytest.Run(5, gallerytest.Options{Title: "<b>zip</b>"})
	var buf bytes.Buffer
	if err := gallery.WriteZip(&buf, e, e.Original, e.Adversarial, []byte("map")); err != nil {
		t.Fatal(err)
	}
	z, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range z.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name], _ = io.ReadAll(r)
		r.Close()
	}
	if !bytes.Equal(files["original.png"], e.Original) || !bytes.Equal(files["adversarial.png"], e.Adversarial) {
		t.Fatal("zip images differ from the entry's")
	}
	var back gallery.Entry
	if err := json.Unmarshal(files["entry.json"], &back); err != nil || back.Title != e.Title || len(back.Steps) != len(e.Steps) {
		t.Fatalf("entry.json: %v %+v", err, back)
	}
	if bytes.Contains(files["entry.json"], []byte("delete")) {
		t.Fatal("entry.json mentions a delete secret")
	}
	shape, _ := readNPY(t, files["perturbation.npy"])
	if shape[0] != 1 || shape[1] != 28 || shape[2] != 28 {
		t.Fatalf("npy shape %v", shape)
	}
	// The perturbation picture is the caller's (the map Gibbon draws everywhere).
	if string(files["perturbation.png"]) != "map" {
		t.Fatalf("perturbation.png holds %q, not the picture given", files["perturbation.png"])
	}
}
