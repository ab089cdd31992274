package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"

	"gibbon/inference"
)

// newFlagSet makes a command's flag set: errors come back to the caller instead of
// exiting, and -h prints the usage lines, then the flags.
func newFlagSet(name string, stderr io.Writer, usage ...string) *flag.FlagSet {
	fs := flag.NewFlagSet("gibbon "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		for _, l := range usage {
			fmt.Fprintln(stderr, l)
		}
		fs.PrintDefaults()
	}
	return fs
}

// commandName is the command a flag set belongs to: "models list".
func commandName(fs *flag.FlagSet) string { return strings.TrimPrefix(fs.Name(), "gibbon ") }

// flagsFromEnv sets each flag of fs from its GIBBON_* variable (GIBBON_ + the
// flag name in capitals, dashes as underscores), when set: for commands that run
// as services, configured by their environment. Parse afterwards, so that the
// command line wins.
func flagsFromEnv(fs *flag.FlagSet, getenv func(string) string) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "GIBBON_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = usageError{fmt.Sprintf("%s=%q: %v", name, v, err)}
			}
		}
	})
	return envErr
}

// parseFlags parses and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

// parseNoArgs parses the command line of a command that takes flags only.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		name := commandName(fs)
		return usageError{fmt.Sprintf("%s takes no arguments, only flags (see gibbon %s -h): got %q", name, name, fs.Args())}
	}
	return nil
}

// parseOneArg parses the command line of a command that takes one argument after
// its flags, what it is named in the error, and returns it.
func parseOneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		name := commandName(fs)
		return "", usageError{fmt.Sprintf("%s needs exactly one %s (see gibbon %s -h)", name, what, name)}
	}
	return fs.Arg(0), nil
}

// parseInterspersed parses a command line whose flags may follow its arguments
// (gibbon attack --model M IMAGE -o out.png) and returns the arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for rest := args; ; {
		if err := parseFlags(fs, rest); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
}

// flagGiven reports whether the command line set flag name (its default may be a
// valid value too, as seed 0 is).
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == name })
	return given
}

// seedFrom returns the seed flag's value, or a new seed when it was not given.
func seedFrom(fs *flag.FlagSet, seed int64) int64 {
	if flagGiven(fs, "seed") {
		return seed
	}
	return rand.Int64N(1 << 31)
}

// splitList reads a comma-separated flag: trimmed, without empty items or repeats.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// parseFloats reads a comma-separated list of numbers (empty: none).
func parseFloats(s, flagName string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, fmt.Errorf("%s %q: want comma-separated numbers", flagName, s)
		}
		out = append(out, v)
	}
	return out, nil
}

// runtimeFlags are the flags of every command that runs models: where the ONNX
// Runtime library is and which execution provider to use. A provider that does
// not start falls back with one warning line on the command's stderr.
type runtimeFlags struct {
	lib, ep string
	stderr  io.Writer
}

func addRuntimeFlags(fs *flag.FlagSet) *runtimeFlags {
	f := &runtimeFlags{stderr: fs.Output()}
	fs.StringVar(&f.lib, "ort-lib", "", "`PATH` of an ONNX Runtime "+inference.ORTVersion+" library (default: GIBBON_ORT_LIB, then the one 'gibbon runtime install' put in the cache); a GPU (CUDA) build of that version runs --ep cuda")
	fs.StringVar(&f.ep, "ep", "", "execution provider: auto (CUDA, else WebGPU, else CPU), cpu, webgpu or cuda (default: GIBBON_EP, else cpu)")
	return f
}

func (f *runtimeFlags) config(threads int) inference.RuntimeConfig {
	return inference.RuntimeConfig{LibPath: f.lib, EP: f.ep, IntraOpThreads: threads, Logger: cliLogger(f.stderr)}
}

// open opens ONNX Runtime with threads intra-op threads; an unknown --ep is a usage
// error.
func (f *runtimeFlags) open(threads int) (*inference.Runtime, error) {
	if _, err := inference.ResolveEP(f.ep); err != nil {
		return nil, usageError{err.Error()}
	}
	return inference.OpenRuntime(f.config(threads))
}

// lazy opens ONNX Runtime (one intra-op thread) on open's first call only, for
// commands that may not need it; close closes it if it was opened.
func (f *runtimeFlags) lazy() (open func() (*inference.Runtime, error), close func()) {
	var rt *inference.Runtime
	open = func() (*inference.Runtime, error) {
		if rt == nil {
			r, err := f.open(1)
			if err != nil {
				return nil, err
			}
			rt = r
		}
		return rt, nil
	}
	close = func() {
		if rt != nil {
			rt.Close()
		}
	}
	return open, close
}

// cliLogger writes the runtime's warnings (a provider falling back) to a
// command's stderr, one line each, without timestamps.
func cliLogger(w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
}

// parseService parses a long-running command's flags (serve, worker): GIBBON_*
// environment variables first, then the command line, which takes no arguments;
// ep is checked and written in its canonical form.
func parseService(fs *flag.FlagSet, args []string, getenv func(string) string, ep *string) error {
	if err := flagsFromEnv(fs, getenv); err != nil {
		return err
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	canonical, err := inference.ParseEP(*ep)
	if err != nil {
		return usageError{err.Error()}
	}
	*ep = canonical
	return nil
}
