package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
	"gibbon/inference/ortinstall"
	"gibbon/inference/zoo"
	"gibbon/internal/progress"
	"gibbon/models"
)

func cmdRuntime(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := "gibbon runtime install | info | placement (gibbon runtime SUBCOMMAND -h for flags)"
	return runSubcommand(ctx, "runtime", usage, map[string]runFunc{
		"install": runtimeInstall, "info": runtimeInfo, "placement": runtimePlacement,
	}, args, stdout, stderr)
}

func runtimeInstall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runtime install", stderr,
		"Usage: gibbon runtime install [--registry URL]",
		fmt.Sprintf("Downloads onnxruntime-node %s from an npm registry, verifies it against the pinned", inference.ORTVersion),
		"sha512, and puts this machine's ONNX Runtime library into the user cache. Does nothing",
		"when the library is already there and intact.",
		"Registry: --registry, then GIBBON_NPM_REGISTRY, npm_config_registry, ~/.npmrc, `npm config get registry`.")
	registry := fs.String("registry", "", "npm registry base URL")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	inst := &ortinstall.Installer{Progress: stderr, Terminal: progress.IsTerminal(stderr)}
	// Already installed: no registry needed, nothing fetched.
	lib, ok, _, err := inst.Check()
	if err != nil {
		return err
	}
	if ok {
		fmt.Fprintf(stdout, "ONNX Runtime %s is already installed: %s\n", inference.ORTVersion, lib)
		return nil
	}
	reg, from, err := ortinstall.ResolveRegistry(ctx, *registry, ortinstall.RegistrySources{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "registry %s (from %s)\n", reg, from)
	inst.Registry = reg
	res, err := inst.Install(ctx)
	if err != nil {
		return fmt.Errorf("runtime install: %w", err)
	}
	switch {
	case res.AlreadyInstalled:
		fmt.Fprintf(stdout, "ONNX Runtime %s is already installed: %s\n", inference.ORTVersion, res.Path)
	case res.Replaced:
		fmt.Fprintf(stdout, "replaced a damaged or different library with ONNX Runtime %s: %s\n", inference.ORTVersion, res.Path)
	default:
		fmt.Fprintf(stdout, "installed ONNX Runtime %s: %s\n", inference.ORTVersion, res.Path)
	}
	return nil
}

func runtimeInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runtime info", stderr,
		"Usage: gibbon runtime info [--ort-lib PATH] [--ep EP] [--models DIR] [--grad]",
		"Prints the ONNX Runtime library in use, its version, the execution providers it",
		"offers, and the provider each model's session actually runs on with --ep (the",
		"built-in models, and --models DIR's; --grad also builds their gradient graphs).")
	rf := addRuntimeFlags(fs)
	modelsDir := fs.String("models", "", "also load this directory's models (manifest.json), e.g. the one `gibbon models dir` names")
	grad := fs.Bool("grad", false, "also build each classifier's gradient graph (what attacks run) and say where it runs")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	ep, err := inference.ResolveEP(rf.ep)
	if err != nil {
		return usageError{err.Error()}
	}
	lib, err := inference.FindLibrary(rf.lib)
	if err != nil {
		return err
	}
	line := func(k, v string) { fmt.Fprintf(stdout, "%-10s %s\n", k, v) }
	if err := printLibrary(lib, rf.lib, line); err != nil {
		return err
	}
	rt, err := inference.OpenRuntime(inference.RuntimeConfig{LibPath: lib, EP: ep, Logger: cliLogger(stderr)})
	if err != nil {
		return err
	}
	defer rt.Close()
	s, err := rt.NewSession(probeModel())
	if err != nil {
		return fmt.Errorf("test session: %w", err)
	}
	defer s.Close()
	line("ep", ep+" requested; a session runs on "+s.Provider())
	return printModelProviders(ctx, rt, *modelsDir, *grad, line)
}

// printLibrary says which library runs (and where it was found: flag, variable or
// cache), its version, build and providers.
func printLibrary(lib, flagLib string, line func(k, v string)) error {
	from := "cache"
	switch {
	case flagLib != "":
		from = "--ort-lib"
	case os.Getenv("GIBBON_ORT_LIB") != "":
		from = "GIBBON_ORT_LIB"
	}
	info, err := inference.ReadLibraryInfo(lib)
	line("library", lib+" (from "+from+")")
	if info.Version != "" {
		line("version", info.Version)
	}
	if info.Build != "" {
		line("build", strings.TrimPrefix(info.Build, "ORT Build Info: "))
	}
	if len(info.Providers) > 0 {
		line("providers", strings.Join(info.Providers, ", ")+" (built in; a GPU provider may still fail to start)")
	}
	if slices.Contains(info.Providers, inference.ORTProviderName(inference.EPCUDA)) {
		if info.CUDAProviderLib != "" {
			line("cuda", info.CUDAProviderLib)
		} else {
			line("cuda", "no libonnxruntime_providers_cuda beside the library: CUDA cannot start (see --ort-lib)")
		}
	}
	if err != nil && info.Version == "" {
		return fmt.Errorf("%s is not a usable ONNX Runtime library (%v): run `gibbon runtime install`", lib, err)
	}
	return nil
}

// printModelProviders loads the built-in models (and dir's) and says where each
// one's session runs, and with grad where its gradient graph does.
func printModelProviders(ctx context.Context, rt *inference.Runtime, dir string, grad bool, line func(k, v string)) error {
	sources := []inference.ModelSource{{Name: "built-in", FS: models.FS()}}
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("--models: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("--models %s is not a directory", dir)
		}
		sources = append(sources, inference.ModelSource{Name: dir, FS: os.DirFS(dir)})
	}
	reg, err := zoo.Load(ctx, rt, sources...)
	if err != nil {
		return err
	}
	defer reg.Close()
	for _, m := range reg.All() {
		where := m.Provider()
		if grad && m.Task == inference.TaskClassifier {
			g, err := gradientProvider(ctx, m)
			if err != nil {
				where += "; gradient graph: " + oneLineErr(err)
			} else {
				where += "; gradient graph on " + g
			}
		}
		line("model", fmt.Sprintf("%s (%s): runs on %s", m.Name, m.Source, where))
	}
	for _, p := range reg.Problems() {
		line("not loaded", p.Error())
	}
	return nil
}

// gradientProvider builds m's gradient graph as attacks do and says where it runs.
func gradientProvider(ctx context.Context, m *zoo.Model) (string, error) {
	net := m.Net()
	shape := append([]int64{1}, net.InputShape()[1:]...)
	w := inference.NewTensor(1, int64(net.Classes()))
	w.Data[0] = 1
	if _, err := net.Gradient(ctx, inference.NewTensor(shape...), attack.CrossEntropy, w); err != nil {
		return "", err
	}
	_, g := net.Providers()
	return g, nil
}

func oneLineErr(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// probeModel is a one-node graph for trying a provider.
func probeModel() []byte {
	b := onnx.NewBuilder("probe")
	x := b.Input("x", 1, 4)
	b.Output("y", b.Op("Relu", []string{x}), 1, 4)
	return b.Bytes()
}

func runtimePlacement(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runtime placement", stderr,
		"Usage: gibbon runtime placement [--ep webgpu] [--grad [--target cpu|gpu]] [--nodes] MODEL.onnx|BUILTIN...",
		"       gibbon runtime placement [--ep webgpu] [--grad [--target cpu|gpu]] --builtin",
		"Runs each model once on constant inputs with ONNX Runtime's profiler and reports which",
		"provider ran each node: the nodes a GPU provider hands back to the CPU, and the copies.")
	rf := addRuntimeFlags(fs)
	builtin := fs.Bool("builtin", false, "report every built-in model")
	nodes := fs.Bool("nodes", false, "list every node that left the provider, not just their op types")
	grad := fs.Bool("grad", false, "report the model's gradient graph (autodiff, cross-entropy), which attacks run, instead of the model")
	target := fs.String("target", "auto", "with --grad, the gradient graph's forms: cpu (MaxPool by its Indices), gpu (by a mask), auto (those of the provider --ep starts, as attacks build it)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	tgt, err := autodiff.ParseTarget(*target)
	if err != nil {
		return usageError{"--target: " + err.Error()}
	}
	names := fs.Args()
	if *builtin {
		if names, err = builtinNames(names); err != nil {
			return err
		}
	}
	if len(names) == 0 {
		return usageError{"runtime placement needs a MODEL.onnx, a built-in model's name, or --builtin"}
	}
	if _, err := inference.ResolveEP(rf.ep); err != nil {
		return usageError{err.Error()}
	}
	models := make([][]byte, len(names))
	for i, n := range names {
		if models[i], err = loadModelArg(n); err != nil {
			return err
		}
	}
	rt, err := rf.open(1)
	if err != nil {
		return err
	}
	defer rt.Close()
	for i, n := range names {
		if *grad {
			if models[i], err = gradientGraph(rt, models[i], tgt); err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			n += " (gradient graph)"
		}
		p, err := rt.Placement(ctx, models[i], rt.EP())
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		printPlacement(stdout, n, rt.EP(), p, *nodes)
	}
	return nil
}

func gradientGraph(rt *inference.Runtime, model []byte, target autodiff.Target) ([]byte, error) {
	m, err := onnx.Decode(model)
	if err != nil {
		return nil, err
	}
	g, err := autodiff.Build(rt, m, autodiff.Options{Loss: autodiff.CrossEntropy, Target: target})
	if err != nil {
		return nil, err
	}
	return onnx.Encode(g)
}

func printPlacement(w io.Writer, name, ep string, p *inference.Placement, nodes bool) {
	counts := make([]string, 0, 2)
	for _, c := range p.Counts() {
		counts = append(counts, fmt.Sprintf("%s %d", c.Provider, c.Nodes))
	}
	fmt.Fprintf(w, "%s: %s requested, runs on %s; nodes: %s; %d copies between providers\n",
		name, ep, p.Provider, strings.Join(counts, ", "), p.Copies())
	off := p.OffProvider()
	if p.Provider == inference.EPCPU || len(off) == 0 {
		return
	}
	fmt.Fprintf(w, "  handed to the CPU: %s\n", strings.Join(p.OffProviderOps(), ", "))
	if nodes {
		for _, n := range off {
			fmt.Fprintf(w, "    %-40s %s\n", n.Name, n.OpType)
		}
	}
}

// loadModelArg reads a model file, or a built-in model by its manifest name.
func loadModelArg(arg string) ([]byte, error) {
	data, err := os.ReadFile(arg)
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	m, merr := builtinManifest()
	if merr != nil {
		return nil, merr
	}
	for _, e := range m.Models {
		if e.Name == arg {
			return fs.ReadFile(models.FS(), e.File)
		}
	}
	return nil, fmt.Errorf("%s: no such file or built-in model", arg)
}

// builtinNames is names and then every built-in model's name.
func builtinNames(names []string) ([]string, error) {
	m, err := builtinManifest()
	if err != nil {
		return nil, err
	}
	for _, e := range m.Models {
		names = append(names, e.Name)
	}
	return names, nil
}

func builtinManifest() (*inference.Manifest, error) {
	m, err := inference.ReadManifestFS(models.FS())
	if err != nil {
		return nil, fmt.Errorf("built-in models: %w", err)
	}
	return m, nil
}
