package attacknet

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/mnist"
	"gibbon/inference/train"
	"gibbon/inference/zoo"
	"gibbon/internal/progress"
	"gibbon/internal/testrt"
)

// A short training run (a few thousand images) lifts the attack success far above
// random ±ε noise at the same budget, through the exported file and the normal attack
// path (manifest entry → the zoo → attack.RunNetwork), with the bound held.
func TestShortTrainingBeatsNoiseThroughTheAttackPath(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	nets, trainSet, test := smallZoo(t)
	cnn := nets["mnist-cnn-small"]
	cfg := Config{Spec: mnistSpec, Targets: []string{"mnist-cnn-small"}, Kappa: 2, Calm: 0.01, Steps: 120, BatchSize: 32, LR: 3e-3, Seed: 1}
	tr, err := New(rt, cfg, []Target{targetOf("mnist-cnn-small", cnn)}, mnistImages(trainSet, 10000))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var log bytes.Buffer
	if err := tr.Run(ctx, RunOptions{Progress: progress.New(&log)}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "fooled eps0.1") || !strings.Contains(log.String(), "120/120") {
		t.Errorf("progress log:\n%s", log.String())
	}
	model, err := tr.Model()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sha, err := train.SaveModel(model, filepath.Join(dir, "net.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	contract := train.MNISTInput()
	entry := Entry("net", "net.onnx", sha, cfg.Spec, cfg.Targets, contract, &inference.Provenance{Command: "test", Seed: 1})
	if err := inference.UpdateManifest(dir, func(m *inference.Manifest) error { m.Put(entry); return nil }); err != nil {
		t.Fatal(err)
	}
	// The app's registry serves it as an attack network.
	reg, err := zoo.Load(ctx, rt, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if len(reg.AttackNetworks()) != 1 || len(reg.Problems()) != 0 {
		t.Fatalf("zoo: %d attack networks, problems %v", len(reg.AttackNetworks()), reg.Problems())
	}
	served, _ := reg.Model("net")
	net := served.Network()
	x, labels := batchOf(test, 0, 400)
	req := attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{{Name: "mnist-cnn-small", Net: cnn}}}
	for _, eps := range []float32{0.2, 0.3} {
		res, err := attack.RunNetwork(ctx, net, attack.Config{Eps: eps}, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.LinfMax > eps || res.Config.Method != attack.AttackNetwork || res.Forward != 0 {
			t.Errorf("ε %g: L∞ %g, method %s, %d forward passes", eps, res.LinfMax, res.Config.Method, res.Forward)
		}
		noise, err := attack.Run(ctx, attack.Config{Method: attack.Noise, Eps: eps, Seed: 1}, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, base := res.Models[0].SuccessRate, noise.Models[0].SuccessRate
		t.Logf("ε %g: attack network %.1f%%, noise %.1f%% (clean accuracy %.1f%%)", eps, 100*got, 100*base, 100*res.Models[0].CleanAccuracy)
		if got < base+0.25 {
			t.Errorf("ε %g: attack network success %.1f%% is not well above noise %.1f%%", eps, 100*got, 100*base)
		}
	}
}

// A run interrupted by a checkpoint and resumed ends with the same weights as one that
// was not.
func TestResumeMatchesAnUnbrokenRun(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	zoo, trainSet, _ := smallZoo(t)
	tg := []Target{targetOf("mnist-mlp", zoo["mnist-mlp"])}
	cfg := Config{Spec: Spec{Channels: 1, Height: 28, Width: 28, Eps: []float64{0.3}, Base: 2}, Targets: []string{"mnist-mlp"},
		Kappa: 1, Calm: 0.01, Steps: 6, BatchSize: 8, LR: 1e-2, Seed: 4}
	data := mnistImages(trainSet, 40) // 5 batches: the run crosses an epoch
	// Also with the pixel shuffle and input diversity (its random resampling
	// depends on the step only).
	shuffled := cfg
	shuffled.Spec.Shuffle, shuffled.Diversity = 2, 1
	var second *Trainer
	var ckpt string
	for _, cfg := range []Config{shuffled, cfg} {
		whole, err := New(rt, cfg, tg, data)
		if err != nil {
			t.Fatal(err)
		}
		defer whole.Close()
		if err := whole.Run(ctx, RunOptions{}); err != nil {
			t.Fatal(err)
		}
		ckpt = filepath.Join(t.TempDir(), "a.ckpt")
		first, _ := New(rt, cfg, tg, data)
		if err := first.Run(ctx, RunOptions{StopAt: 3, Checkpoint: ckpt}); err != nil {
			t.Fatal(err)
		}
		first.Close()
		second, _ = New(rt, cfg, tg, data)
		defer second.Close()
		if ok, err := second.Resume(ckpt); !ok || err != nil || second.Step() != 3 {
			t.Fatalf("resume: %v %v at step %d", ok, err, second.Step())
		}
		if err := second.Run(ctx, RunOptions{}); err != nil {
			t.Fatal(err)
		}
		for i, p := range whole.params {
			q := second.params[i]
			for j := range p.Data {
				if p.Data[j] != q.Data[j] {
					t.Fatalf("%+v: %s[%d]: %g unbroken, %g resumed", cfg.Spec, p.Name, j, p.Data[j], q.Data[j])
				}
			}
		}
	}
	// Another config's checkpoint, or a damaged file, is refused with a reason.
	other := cfg
	other.Seed = 5
	third, _ := New(rt, other, tg, data)
	defer third.Close()
	if _, err := third.Resume(ckpt); !errors.Is(err, ErrBadCheckpoint) {
		t.Errorf("other config: %v", err)
	}
	raw, _ := os.ReadFile(ckpt)
	raw[len(raw)/2] ^= 1
	os.WriteFile(ckpt, raw, 0o644)
	if _, err := second.Resume(ckpt); !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged checkpoint: %v", err)
	}
	if ok, err := second.Resume(filepath.Join(t.TempDir(), "none")); ok || err != nil {
		t.Errorf("missing checkpoint: %v %v", ok, err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	rt := testrt.Open(t)
	zoo, trainSet, _ := smallZoo(t)
	tg := []Target{targetOf("mnist-mlp", zoo["mnist-mlp"])}
	good := Config{Spec: mnistSpec, Targets: []string{"mnist-mlp"}, Kappa: 1, Steps: 5, BatchSize: 8, LR: 1e-3, Seed: 1}
	data := mnistImages(trainSet, 64)
	bright := &Images{Data: append([]float32(nil), data.Data...), Shape: data.Shape}
	bright.Data[5] = 2
	for _, c := range []struct {
		name    string
		cfg     func(Config) Config
		targets []Target
		data    *Images
		want    string
	}{
		{"no targets", func(c Config) Config { c.Targets = nil; return c }, nil, data, "no target"},
		{"name mismatch", func(c Config) Config { c.Targets = []string{"other"}; return c }, tg, data, "config says"},
		{"batch", func(c Config) Config { c.BatchSize = 0; return c }, tg, data, "batch size"},
		{"lr", func(c Config) Config { c.LR = -1; return c }, tg, data, "learning rate"},
		{"kappa", func(c Config) Config { c.Kappa = -1; return c }, tg, data, "kappa"},
		{"calm", func(c Config) Config { c.Calm = math.NaN(); return c }, tg, data, "saturation penalty"},
		{"diversity", func(c Config) Config { c.Diversity = 1.5; return c }, tg, data, "input diversity"},
		{"diversity layout", func(c Config) Config {
			c.Diversity, c.Spec.Layout = 0.5, "NHWC"
			return c
		}, tg, &Images{Data: data.Data, Shape: []int64{28, 28, 1}}, "needs NCHW"},
		{"too few", func(c Config) Config { c.BatchSize = 100; return c }, tg, data, "fewer than one batch"},
		{"shape", func(c Config) Config { return c }, tg, &Images{Data: data.Data, Shape: []int64{28, 28, 1}}, "shape"},
		{"range", func(c Config) Config { return c }, tg, bright, "outside the pixel range"},
		{"no images", func(c Config) Config { return c }, tg, &Images{Shape: data.Shape}, "no training images"},
	} {
		tr, err := New(rt, c.cfg(good), c.targets, c.data)
		if err == nil {
			tr.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one about %q", c.name, err, c.want)
		}
	}
}

// Evaluate reports success per judge and head beside the baselines, and speeds.
func TestEvaluateReportsTableAndSpeed(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	zoo, _, test := smallZoo(t)
	m, _, err := BuildGenerator(mnistSpec, 2)
	if err != nil {
		t.Fatal(err)
	}
	net, err := attack.NewNetwork(ctx, rt, m, attack.NetworkOptions{Name: "untrained", Eps: mnistSpec.Eps})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	judges := []Judge{{Name: "mnist-mlp", Role: RoleTarget, Net: zoo["mnist-mlp"]}, {Name: "mnist-cnn-small", Role: RoleHeldOut, Net: zoo["mnist-cnn-small"]}}
	x, labels := batchOf(test, 0, 60)
	res, err := Evaluate(ctx, net, judges, x, labels, EvalOptions{Batch: 25, Baselines: true, SpeedImages: 30, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.N != 60 || len(res.Rows) != 6 || res.Speed.Network <= 0 || res.Speed.PGD <= 0 || res.Speed.PGDAlone["mnist-mlp"] <= 0 {
		t.Fatalf("result %+v", res)
	}
	for _, r := range res.Rows {
		if r.Clean < 0.5 || r.Network < 0 || r.PGD < 0 || r.MIFGSM < 0 || r.Noise < 0 {
			t.Errorf("row %+v", r)
		}
		// White-box PGD-10 beats noise on the model it attacks.
		if r.Role == RoleTarget && r.Eps == 0.3 && r.PGD <= r.Noise {
			t.Errorf("PGD-10 %.2f not above noise %.2f on the target", r.PGD, r.Noise)
		}
	}
	var md bytes.Buffer
	res.Markdown(&md)
	for _, want := range []string{"| mnist-mlp | target |", "| mnist-cnn-small | held-out |", "0.3 (76.5/255)", "PGD-10 | mnist-mlp (together)", "× faster"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	if m := res.Metrics(); m["success_eps0.3_mnist-cnn-small"] < 0 || m["speedup_vs_pgd10"] <= 0 || m["eval_images"] != 60 {
		t.Errorf("metrics %v", m)
	}
	if _, err := Evaluate(ctx, net, []Judge{judges[1]}, x, labels, EvalOptions{Baselines: true}); err == nil {
		t.Error("baselines without a target judge: no error")
	}
	if _, err := Evaluate(ctx, net, judges, x, labels[:3], EvalOptions{}); err == nil {
		t.Error("labels of the wrong length: no error")
	}
}

func TestLoadImagesSkipsWhatItCannotRead(t *testing.T) {
	_, _, test := smallZoo(t)
	dir := t.TempDir()
	for i := range 3 {
		data, _ := mnist.PNG(test.Image(i))
		os.WriteFile(filepath.Join(dir, "d"+string(rune('a'+i))+".png"), data, 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	data, _ := mnist.PNG(test.Image(3))
	os.WriteFile(filepath.Join(dir, "sub", "e.png"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden.png"), []byte("x"), 0o644)
	c := train.MNISTInput()
	c.Resize = "stretch"
	imgs, skipped, err := LoadImages(dir, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	if imgs.Len() != 4 || len(skipped) != 1 || !strings.HasSuffix(skipped[0].Path, "notes.txt") {
		t.Fatalf("%d images, skipped %v", imgs.Len(), skipped)
	}
	// A stretched 28×28 digit comes back as it was, within 8-bit rounding.
	for j, v := range imgs.Data[:mnist.Pixels] {
		if d := v - test.Image(0)[j]; d > 0.003 || d < -0.003 {
			t.Fatalf("pixel %d: %g, want %g", j, v, test.Image(0)[j])
		}
	}
	if imgs, _, _ := LoadImages(dir, c, 2); imgs.Len() != 2 {
		t.Errorf("limit 2: %d images", imgs.Len())
	}
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "a.txt"), []byte("text"), 0o644)
	if _, _, err := LoadImages(empty, c, 0); err == nil || !strings.Contains(err.Error(), "no image") {
		t.Errorf("folder without images: %v", err)
	}
	if _, _, err := LoadImages(filepath.Join(dir, "da.png"), c, 0); err == nil {
		t.Error("a file instead of a folder: no error")
	}
}
