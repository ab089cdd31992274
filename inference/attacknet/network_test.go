package attacknet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/onnx"
	"gibbon/inference/train"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
)

// The attack package's adapter for attack networks: every head from one pass, the
// bound after quantisation, and a clear error for each misuse.
func TestNetworkAdapter(t *testing.T) {
	rt := testrt.Open(t)
	ctx := context.Background()
	nets, _, test := smallZoo(t)
	m, _, err := BuildGenerator(mnistSpec, 9)
	if err != nil {
		t.Fatal(err)
	}
	net, err := attack.NewNetwork(ctx, rt, m, attack.NetworkOptions{Name: "g", Eps: mnistSpec.Eps})
	if err != nil {
		t.Fatal(err)
	}
	defer net.Close()
	x, labels := batchOf(test, 0, 20)
	mlp := attack.Model{Name: "mnist-mlp", Net: nets["mnist-mlp"]}
	cnn := attack.Model{Name: "mnist-cnn-small", Net: nets["mnist-cnn-small"]}

	heads, err := attack.RunNetworkHeads(ctx, net, attack.Config{}, attack.Request{Images: x, Surrogates: []attack.Model{mlp}, Others: []attack.Model{cnn}})
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != 3 {
		t.Fatalf("%d results, want one per head", len(heads))
	}
	for k, r := range heads {
		eps := float32(mnistSpec.Eps[k])
		if r.Config.Eps != eps || r.LinfMax > eps || r.N() != 20 || len(r.Models) != 2 || !r.Models[0].Surrogate || r.Models[1].Surrogate {
			t.Errorf("head %d: ε %g, L∞ %g, %d images, models %+v", k, r.Config.Eps, r.LinfMax, r.N(), r.Models)
		}
		// On the 8-bit grid.
		for _, v := range r.Adv.Data {
			if q := float32(int(v*255+0.5)) / 255; q != v {
				t.Fatalf("head %d: value %g is off the 8-bit grid", k, v)
			}
		}
		// Labels default to the surrogate's clean predictions.
		for i, l := range r.Labels {
			if l != r.Models[0].Clean[i] {
				t.Fatalf("label %d is %d, the surrogate predicted %d", i, l, r.Models[0].Clean[i])
			}
		}
	}
	steps := 0
	one, err := attack.RunNetwork(ctx, net, attack.Config{Eps: 0.2, NoQuantize: true}, attack.Request{Images: x, Labels: labels, Surrogates: []attack.Model{mlp}},
		func(s attack.Step) error {
			steps++
			if !s.Final || len(s.Loss) != 20 || len(s.Pred) != 20 {
				t.Errorf("step %+v", s)
			}
			return nil
		})
	if err != nil || steps != 1 || one.Config.Eps != 0.2 || one.Config.Method != attack.AttackNetwork {
		t.Fatalf("RunNetwork: %v, %d steps, %+v", err, steps, one.Config)
	}

	for _, c := range []struct {
		name string
		run  func() error
		want string
	}{
		{"no such head", func() error {
			_, err := attack.RunNetwork(ctx, net, attack.Config{Eps: 0.25}, attack.Request{Images: x, Surrogates: []attack.Model{mlp}}, nil)
			return err
		}, "no head for ε 0.25"},
		{"targeted", func() error {
			_, err := attack.RunNetwork(ctx, net, attack.Config{Eps: 0.3, Target: attack.LeastLikely}, attack.Request{Images: x, Surrogates: []attack.Model{mlp}}, nil)
			return err
		}, "untargeted"},
		{"range", func() error {
			_, err := attack.RunNetwork(ctx, net, attack.Config{Eps: 0.3, Range: [2]float32{0, 255}}, attack.Request{Images: x, Surrogates: []attack.Model{mlp}}, nil)
			return err
		}, "works on [0,1]"},
		{"no models", func() error {
			_, err := attack.RunNetwork(ctx, net, attack.Config{Eps: 0.3}, attack.Request{Images: x}, nil)
			return err
		}, "no model"},
		{"wrong size", func() error {
			_, err := net.Generate(ctx, inference.NewTensor(2, 1, 27, 28))
			return err
		}, "takes"},
		{"out of range", func() error {
			y := x.Clone()
			y.Data[0] = 3
			_, err := attack.RunNetwork(ctx, net, attack.Config{Eps: 0.3}, attack.Request{Images: y, Surrogates: []attack.Model{mlp}}, nil)
			return err
		}, "outside"},
		{"labels", func() error {
			_, err := attack.RunNetwork(ctx, net, attack.Config{Eps: 0.3}, attack.Request{Images: x, Labels: labels[:2], Surrogates: []attack.Model{mlp}}, nil)
			return err
		}, "labels for"},
	} {
		if err := c.run(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one about %q", c.name, err, c.want)
		}
	}

	// A graph with two outputs is not an attack network.
	two, _, _ := BuildGenerator(mnistSpec, 9)
	b := onnx.BuilderOn(two.Graph, onnx.DefaultOpset)
	b.Output("extra", Input, -1, 1, 28, 28)
	if _, err := attack.NewNetwork(ctx, rt, two, attack.NetworkOptions{Name: "two", Eps: mnistSpec.Eps}); err == nil || !strings.Contains(err.Error(), "2 outputs") {
		t.Errorf("two outputs: %v", err)
	}
	// Heads the graph does not have.
	if _, err := attack.NewNetwork(ctx, rt, m, attack.NetworkOptions{Name: "g", Eps: []float64{0.3}}); err == nil || !strings.Contains(err.Error(), "heads") {
		t.Errorf("one head declared, three in the graph: %v", err)
	}

	// The zoo serves it from a manifest entry, checking the checksum and the heads.
	data, _ := onnx.Encode(m)
	sum := sha256.Sum256(data)
	entry := Entry("g", "g.onnx", hex.EncodeToString(sum[:]), mnistSpec, []string{"mnist-mlp"}, train.MNISTInput(), nil)
	serve := func(e inference.ModelEntry) error {
		man, _ := json.Marshal(inference.Manifest{Models: []inference.ModelEntry{e}})
		z := zoo.Open(rt, inference.ModelSource{Name: "test", FS: fstest.MapFS{"g.onnx": {Data: data}, inference.ManifestFile: {Data: man}}})
		defer z.Close()
		_, err := z.Get(ctx, e.Name)
		return err
	}
	if err := serve(entry); err != nil {
		t.Errorf("load: %v", err)
	}
	bad := entry
	bad.SHA256 = strings.Repeat("0", 64)
	if err := serve(bad); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("checksum: %v", err)
	}
	bad = entry
	bad.Attack = nil
	if err := serve(bad); err == nil || !strings.Contains(err.Error(), "eps") {
		t.Errorf("no heads: %v", err)
	}
	bad = entry
	bad.File = "missing.onnx"
	if err := serve(bad); err == nil {
		t.Error("missing file: no error")
	}
}
