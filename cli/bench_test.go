package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gibbon/inference/onnx"
)

func TestBenchGradUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench"}, "needs a subcommand"},
		{[]string{"bench", "speed"}, "unknown bench subcommand"},
		{[]string{"bench", "grad", "--arch", "alexnet"}, `unknown architecture "alexnet"`},
		{[]string{"bench", "grad", "--arch", " , "}, "name a MODEL"},
		{[]string{"bench", "grad", "--batch", "0"}, "--batch"},
		{[]string{"bench", "grad", "--reps", "0"}, "--reps"},
		{[]string{"bench", "grad", "--threads", "0"}, "--threads"},
		{[]string{"bench", "grad", "--nope"}, "not defined"},
		{[]string{"bench", "grad", "--target", "cpu,tpu"}, "--target"},
		{[]string{"bench", "grad", "--kernels", "5"}, "add --profile"},
		{[]string{"bench", "grad", "--profile", "--kernels", "-1"}, "--kernels"},
	} {
		var out, errw bytes.Buffer
		err := run(context.Background(), c.args, &out, &errw)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want a usage error mentioning %q", c.args, err, c.want)
		}
	}
}

func TestBenchGradRuns(t *testing.T) {
	var out, errw bytes.Buffer
	if err := run(context.Background(), []string{"bench", "grad", "--arch", "mnist-cnn", "--reps", "2", "--profile", "--top", "3", "--kernels", "4"}, &out, &errw); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	s := out.String()
	for _, want := range []string{"fwd+bwd ms", "ratio (kernels)", "mnist-cnn", "kernel time per run by op type", "Conv"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "kernel time per run by op type") != 1 {
		t.Errorf("want one profile table:\n%s", s)
	}
	// --top 3: three op rows and the total under the profile's header
	prof, kernels, ok := strings.Cut(s[strings.Index(s, "kernel time per run"):], "\n\n")
	if rows := strings.Count(strings.TrimSpace(prof), "\n"); rows != 5 {
		t.Errorf("profile table has %d lines after its title, want a header, 3 ops and the total:\n%s", rows, prof)
	}
	// --kernels 4: the four slowest kernels, each with its op type and output shape
	lines := strings.Split(strings.TrimSpace(kernels), "\n")
	if !ok || len(lines) != 6 || !strings.Contains(lines[0], "4 slowest kernels") || !strings.Contains(lines[1], "output") {
		t.Fatalf("want a kernel table with a title, a header and 4 rows after the profile:\n%s", kernels)
	}
	for _, l := range lines[2:] {
		if !strings.Contains(l, "%") || !strings.Contains(l, "[1 ") {
			t.Errorf("kernel row %q lacks a share or a batch-1 output shape", l)
		}
	}
}

// A built-in model (or an ONNX file) is timed like the --arch shapes; a missing one
// is an error that names it.
func TestBenchGradModels(t *testing.T) {
	var out, errw bytes.Buffer
	if err := run(context.Background(), []string{"bench", "grad", "--arch", "", "--reps", "1", "--batch", "3", "mnist-cnn-small"}, &out, &errw); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	if !regexp.MustCompile(`(?m)^mnist-cnn-small\s+3\s+\d`).MatchString(out.String()) {
		t.Errorf("no row for mnist-cnn-small at batch 3:\n%s", out.String())
	}
	err := run(context.Background(), []string{"bench", "grad", "--arch", "", "no-such-model.onnx"}, &out, &errw)
	if err == nil || !strings.Contains(err.Error(), "no such file or built-in model") {
		t.Errorf("a missing model: %v", err)
	}
}

// --target times the gradient graph's CPU and GPU forms in one run.
func TestBenchGradTargets(t *testing.T) {
	var out, errw bytes.Buffer
	if err := run(context.Background(), []string{"bench", "grad", "--arch", "mnist-cnn", "--reps", "1", "--target", "cpu,gpu"}, &out, &errw); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	for _, want := range []string{"mnist-cnn (cpu forms)", "mnist-cnn (gpu forms)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBenchFlopsAndPGDUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "flops"}, "name a MODEL"},
		{[]string{"bench", "flops", "--arch", "alexnet"}, `unknown architecture "alexnet"`},
		{[]string{"bench", "flops", "--arch", "mnist-cnn", "--ep", "tpu"}, "unknown execution provider"},
		{[]string{"bench", "pgd", "--batch", "0"}, "not a batch size"},
		{[]string{"bench", "pgd", "--batch", ","}, "names no batch size"},
		{[]string{"bench", "pgd", "--reps", "0"}, "--reps"},
		{[]string{"bench", "pgd", "--peak", "-1"}, "--peak"},
		{[]string{"bench", "pgd", "--arch", ""}, "name a MODEL"},
	} {
		var out, errw bytes.Buffer
		err := run(context.Background(), c.args, &out, &errw)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want a usage error mentioning %q", c.args, err, c.want)
		}
	}
	var out, errw bytes.Buffer
	if err := run(context.Background(), []string{"bench", "flops", "no-such-model.onnx"}, &out, &errw); err == nil ||
		!strings.Contains(err.Error(), "no such file or built-in model") {
		t.Errorf("a missing model: %v", err)
	}
}

// bench flops counts an architecture and a built-in model; bench pgd times PGD-10
// and relates its rate to --peak.
func TestBenchFlopsAndPGDRun(t *testing.T) {
	// A model file with a terminal Softmax, as exporters write them: counted as attacks run it.
	b := onnx.NewBuilder("soft")
	x := b.Input("x", -1, 5)
	b.Output("p", b.Op("Softmax", []string{b.Op("MatMul", []string{x, b.Init("w", []int64{5, 3}, make([]float32, 15))})}, onnx.AttrInt("axis", 1)), -1, 3)
	file := filepath.Join(t.TempDir(), "soft.onnx")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	if err := run(context.Background(), []string{"bench", "flops", "--arch", "mnist-cnn", file}, &out, &errw); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	// The MNIST CNN: conv 1→32 and 32→64 (3×3, unpadded), fc 9216→128 and 128→10.
	const fwd = 2 * (26*26*32*9 + 24*24*64*32*9 + 9216*128 + 128*10)
	s := out.String()
	// soft.onnx: 15 multiply-adds forward, 15 more for the input gradient.
	if !strings.Contains(s, fmt.Sprintf("%.3f", float64(fwd)/1e9)) || !strings.Contains(s, "Conv") ||
		!regexp.MustCompile(`soft\.onnx\s+0\.000\s+0\.000\s+0\.000\s+0\.00\s+MatMul 2`).MatchString(s) {
		t.Fatalf("bench flops output (forward %d FLOPs):\n%s", fwd, s)
	}
	out.Reset()
	if err := run(context.Background(), []string{"bench", "pgd", "--arch", "mnist-cnn", "--batch", "2", "--reps", "1", "--peak", "100"}, &out, &errw); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	s = out.String()
	for _, want := range []string{"images/s", "GFLOP/s", "of peak", "mnist-cnn", " cpu ", "/ 100 GFLOP/s"} {
		if !strings.Contains(s, want) {
			t.Errorf("bench pgd output lacks %q:\n%s", want, s)
		}
	}
}

func TestBenchAttackNetUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "attack-net", "--batch", "0"}, "not a batch size"},
		{[]string{"bench", "attack-net", "--batch", ","}, "names no batch size"},
		{[]string{"bench", "attack-net", "--reps", "0"}, "--reps"},
		{[]string{"bench", "attack-net", "--top", "0"}, "--top"},
	} {
		var out, errw bytes.Buffer
		err := run(context.Background(), c.args, &out, &errw)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want a usage error mentioning %q", c.args, err, c.want)
		}
	}
	// A graph with two inputs is refused with why.
	b := onnx.NewBuilder("two")
	b.Output("y", b.Op("Add", []string{b.Input("a", -1, 3), b.Input("b", -1, 3)}), -1, 3)
	file := filepath.Join(t.TempDir(), "two.onnx")
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ arg, want string }{{"no-such-net.onnx", "no such file or built-in model"}, {file, "want exactly one image input, the graph has 2"}} {
		var out, errw bytes.Buffer
		if err := run(context.Background(), []string{"bench", "attack-net", "--reps", "1", c.arg}, &out, &errw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.arg, err, c.want)
		}
	}
}

// bench attack-net times the built-in network beside a classifier, one row per graph
// and batch size, and profiles the largest batch: the network's convolutions show.
func TestBenchAttackNetRuns(t *testing.T) {
	var out, errw bytes.Buffer
	if err := run(context.Background(), []string{"bench", "attack-net", "--batch", "2,5", "--reps", "2", "--profile", "--top", "3", "mnist-attack-net", "mnist-mlp"}, &out, &errw); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	s := out.String()
	for _, re := range []string{`mnist-attack-net\s+2\s+\d+\.\d{4}`, `mnist-attack-net\s+5\s+\d+\.\d{4}`, `mnist-mlp\s+2\s+\d+\.\d{4}`, `mnist-mlp\s+5\s+\d+\.\d{4}`,
		`mnist-attack-net: kernel time per pass of 5 images`, `mnist-mlp: kernel time per pass of 5 images`, `\nConv\s+\d+\.\d{3}\s+\d+%\s+\d+\n`} {
		if !regexp.MustCompile(re).MatchString(s) {
			t.Errorf("output lacks %s:\n%s", re, s)
		}
	}
	// --top 3: three op rows and the total under each profile's title
	for _, name := range []string{"mnist-attack-net", "mnist-mlp"} {
		prof := s[strings.Index(s, name+": kernel time"):]
		if i := strings.Index(prof[1:], "\n\n"); i >= 0 {
			prof = prof[:i+1]
		}
		if rows := strings.Count(strings.TrimSpace(prof), "\n"); rows != 5 {
			t.Errorf("%s's profile has %d lines after its title, want a header, 3 ops and the total:\n%s", name, rows, prof)
		}
	}
}
