package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestBenchGradUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench"}, "needs a subcommand"},
		{[]string{"bench", "speed"}, "unknown bench subcommand"},
		{[]string{"bench", "grad", "--arch", "alexnet"}, `unknown architecture "alexnet"`},
		{[]string{"bench", "grad", "--arch", " , "}, "names no model"},
		{[]string{"bench", "grad", "--batch", "0"}, "--batch"},
		{[]string{"bench", "grad", "--reps", "0"}, "--reps"},
		{[]string{"bench", "grad", "--threads", "0"}, "--threads"},
		{[]string{"bench", "grad", "resnet18"}, "takes no arguments"},
		{[]string{"bench", "grad", "--nope"}, "not defined"},
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
	if err := run(context.Background(), []string{"bench", "grad", "--arch", "mnist-cnn", "--reps", "2", "--profile", "--top", "3"}, &out, &errw); err != nil {
		t.Fatalf("%v\n%s", err, errw.String())
	}
	s := out.String()
	for _, want := range []string{"fwd+bwd ms", "ratio (kernels)", "mnist-cnn", "kernel time per run by op type", "Conv"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	// --top 3: three op rows and the total under the profile's header
	prof := s[strings.Index(s, "kernel time per run"):]
	if rows := strings.Count(strings.TrimSpace(prof), "\n"); rows != 5 {
		t.Errorf("profile table has %d lines after its title, want a header, 3 ops and the total:\n%s", rows, prof)
	}
}
