package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gibbon/inference/onnx"
)

func gradCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	err := run(context.Background(), append([]string{"grad"}, args...), &out, &errw)
	return out.String(), err
}

func writeTinyClassifier(t *testing.T, dir string) string {
	t.Helper()
	b := onnx.NewBuilder("tiny")
	x := b.Input("image", -1, 1, 4, 4)
	w := b.Init("conv.w", []int64{2, 1, 3, 3}, []float32{.1, -.2, .3, -.1, .2, .1, 0, .1, -.3, .2, .1, -.1, .3, 0, -.2, .1, .1, .2})
	h := b.Op("Flatten", []string{b.Op("Relu", []string{b.Op("Conv", []string{x, w})})})
	fc := b.Init("fc.w", []int64{8, 3}, []float32{1, 0, -1, 0, 1, 0, -1, 0, 1, .5, .5, .5, 0, 0, 1, 1, 0, 0, -1, 1, 0, .2, .3, .4})
	b.Output("probs", b.Op("Softmax", []string{b.Op("MatMul", []string{h, fc})}, onnx.AttrInt("axis", 1)), -1, 3)
	path := filepath.Join(dir, "tiny.onnx")
	if err := onnx.Save(b.Model(), path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGradWritesGradientModel(t *testing.T) {
	dir := t.TempDir()
	in := writeTinyClassifier(t, dir)
	out := filepath.Join(dir, "grad.onnx")
	stdout, err := gradCmd(t, in, "-o", out, "--params", "conv.w, fc.w", "--loss", "seed")
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Load(out)
	if err != nil {
		t.Fatalf("written model does not load: %v", err)
	}
	var ins, outs []string
	for _, v := range m.Graph.Input {
		ins = append(ins, v.GetName())
	}
	for _, v := range m.Graph.Output {
		outs = append(outs, v.GetName())
	}
	if got, want := strings.Join(ins, " "), "image logit_seed conv.w fc.w"; got != want {
		t.Errorf("inputs %q, want %q", got, want)
	}
	if got, want := strings.Join(outs, " "), "logits loss input_grad grad_conv.w grad_fc.w"; got != want {
		t.Errorf("outputs %q, want %q", got, want)
	}
	if !strings.Contains(stdout, "output input_grad [N,1,4,4]") {
		t.Errorf("summary lacks the input gradient's shape:\n%s", stdout)
	}
}

func TestGradBadCommandLinesAndFiles(t *testing.T) {
	dir := t.TempDir()
	in := writeTinyClassifier(t, dir)
	junk := filepath.Join(dir, "junk.onnx")
	if err := os.WriteFile(junk, []byte("this is not a protobuf \x00\xff\x12"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.onnx")
	cases := []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{in}, true, "-o"},
		{[]string{"-o", out}, true, "MODEL.onnx"},
		{[]string{in, "-o", out, "--loss", "hinge"}, true, "ce or seed"},
		{[]string{junk, "-o", out}, false, "not an ONNX model"},
		{[]string{filepath.Join(dir, "missing.onnx"), "-o", out}, false, "no such file"},
		{[]string{in, "-o", out, "--params", "nope"}, false, `"nope" is not an initializer`},
	}
	for _, c := range cases {
		_, err := gradCmd(t, c.args...)
		if err == nil {
			t.Errorf("grad %v: no error", c.args)
			continue
		}
		var u usageError
		if errors.As(err, &u) != c.usage || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("grad %v: error %q (usage error: %v), want one line mentioning %q", c.args, err, errors.As(err, &u), c.want)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed grad left %s behind", out)
	}
}
