package inference

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"gibbon/inference/onnx"
)

// Execution providers, as --ep and GIBBON_EP spell them.
const (
	EPAuto   = "auto"   // CUDA if it starts, else WebGPU, else CPU
	EPCPU    = "cpu"    // ONNX Runtime's CPU kernels
	EPWebGPU = "webgpu" // Dawn: Vulkan, Metal or D3D12
	EPCUDA   = "cuda"   // needs an ORT build with CUDA (--ort-lib) and the CUDA libraries
)

// ortAPIVersion is ORT_API_VERSION of the C API Gibbon is built against (1.24.x).
const ortAPIVersion = 24

// ORTProviderName is ONNX Runtime's name for a Gibbon provider name.
func ORTProviderName(ep string) string {
	switch ep {
	case EPCPU:
		return "CPUExecutionProvider"
	case EPWebGPU:
		return "WebGpuExecutionProvider"
	case EPCUDA:
		return "CUDAExecutionProvider"
	}
	return ep
}

// ParseEP checks an --ep / GIBBON_EP value; empty means cpu.
func ParseEP(s string) (string, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	switch v {
	case "":
		return EPCPU, nil
	case EPAuto, EPCPU, EPWebGPU, EPCUDA:
		return v, nil
	}
	return "", fmt.Errorf("unknown execution provider %q: use auto, cpu, webgpu or cuda", s)
}

// ResolveEP applies the lookup order: the flag's value, then GIBBON_EP, then cpu.
func ResolveEP(flagValue string) (string, error) {
	if flagValue != "" {
		return ParseEP(flagValue)
	}
	ep, err := ParseEP(os.Getenv("GIBBON_EP"))
	if err != nil {
		return "", fmt.Errorf("GIBBON_EP: %w", err)
	}
	return ep, nil
}

// LibraryInfo is what an ONNX Runtime library says about itself.
type LibraryInfo struct {
	Path    string
	Version string
	Build   string
	// Providers the library was built with, in ORT's names and order
	// (e.g. WebGpuExecutionProvider, CPUExecutionProvider). Offering one does not mean
	// it starts: CUDA also needs the CUDA libraries, WebGPU a GPU adapter.
	Providers []string
	// CUDAProviderLib is ORT's CUDA provider library beside this one, "" when absent
	// (the npm package lists CUDA but ships without it).
	CUDAProviderLib string
}

// Offers reports whether the library can try the provider (a Gibbon name): it was
// built with it and, for CUDA, the CUDA provider library is beside it. An empty
// provider list (not readable on this OS) counts as offering everything.
func (i LibraryInfo) Offers(ep string) bool {
	if ep == EPCPU || len(i.Providers) == 0 {
		return true
	}
	if ep == EPCUDA && i.CUDAProviderLib == "" {
		return false
	}
	return slices.Contains(i.Providers, ORTProviderName(ep))
}

// cudaProviderLib finds ORT's CUDA provider library beside lib.
func cudaProviderLib(lib string) string {
	name := "libonnxruntime_providers_cuda.so"
	if runtime.GOOS == "windows" {
		name = "onnxruntime_providers_cuda.dll"
	}
	p := filepath.Join(filepath.Dir(lib), name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

var errLibraryInfoUnsupported = errors.New("reading library information is not supported on this OS")

// ReadLibraryInfo loads the library at path (without creating an ORT environment)
// and asks it for its version and providers. A library of another version returns
// its Version with no error and no Providers; the caller decides.
func ReadLibraryInfo(path string) (LibraryInfo, error) {
	if _, err := os.Stat(path); err != nil {
		return LibraryInfo{Path: path}, err
	}
	info, err := readLibraryInfo(path)
	info.CUDAProviderLib = cudaProviderLib(path)
	return info, err
}

// versionMatches accepts ORTVersion and its build-suffixed forms, not 1.24.10.
func versionMatches(v string) bool {
	return v == ORTVersion || strings.HasPrefix(v, ORTVersion+"-") || strings.HasPrefix(v, ORTVersion+"+")
}

// softwareGPUOnly reports whether WebGPU could only run on a CPU (software) device:
// the Vulkan loader was pointed at Mesa's lavapipe alone, or, on Linux, there is no
// GPU device node at all. auto then skips WebGPU: shaders on lavapipe run about ten
// times slower than ORT's CPU kernels. --ep webgpu still uses it (CI does).
func softwareGPUOnly() bool {
	for _, k := range []string{"VK_DRIVER_FILES", "VK_ICD_FILENAMES"} {
		v := os.Getenv(k)
		if v == "" {
			continue
		}
		for _, f := range filepath.SplitList(v) {
			if f != "" && !strings.HasPrefix(filepath.Base(f), "lvp") {
				return false
			}
		}
		return true
	}
	if runtime.GOOS != "linux" {
		return false
	}
	for _, pattern := range []string{"/dev/dri/renderD*", "/dev/nvidia[0-9]*", "/dev/kfd"} {
		if m, _ := filepath.Glob(pattern); len(m) > 0 {
			return false
		}
	}
	return true
}

// providerOrder lists the providers to try for a requested ep, best first, and the
// explicitly requested ones the library does not offer. auto leaves out providers the
// library lacks, and WebGPU when only a software device would run it.
func providerOrder(ep string, lib LibraryInfo, softwareOnly bool) (try, notOffered []string) {
	var want []string
	switch ep {
	case EPAuto:
		want = []string{EPCUDA, EPWebGPU, EPCPU}
	case EPCUDA, EPWebGPU:
		want = []string{ep, EPCPU}
	default:
		return []string{EPCPU}, nil
	}
	for _, p := range want {
		switch {
		case p == EPCPU:
		case !lib.Offers(p):
			if ep != EPAuto {
				notOffered = append(notOffered, p)
			}
			continue
		case ep == EPAuto && p == EPWebGPU && softwareOnly:
			continue
		}
		try = append(try, p)
	}
	return try, notOffered
}

// providerState records, per provider, whether it ever started in this process and
// why it was given up; one warning is logged when it is given up.
type providerState struct {
	started bool
	failed  error
}

// candidates lists the providers to try, best first, leaving out those given up.
func (r *Runtime) candidates(ep string) []string {
	try, notOffered := providerOrder(ep, r.lib, ep == EPAuto && softwareGPUOnly())
	for _, p := range notOffered {
		err := fmt.Errorf("this ONNX Runtime library (%s) does not offer %s; it offers %s",
			r.libPath, ORTProviderName(p), strings.Join(r.lib.Providers, ", "))
		if p == EPCUDA && slices.Contains(r.lib.Providers, ORTProviderName(EPCUDA)) {
			err = fmt.Errorf("the CUDA provider library is not beside %s %s", r.libPath, cudaHint)
		}
		r.giveUp(p, err, EPCPU)
	}
	out := try[:0]
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range try {
		if st := r.eps[p]; p != EPCPU && st != nil && st.failed != nil {
			continue
		}
		out = append(out, p)
	}
	return out
}

// giveUp marks a provider as unusable in this process; only the first call logs.
func (r *Runtime) giveUp(p string, err error, next string) {
	r.mu.Lock()
	st := r.eps[p]
	if st == nil {
		st = &providerState{}
		r.eps[p] = st
	}
	first := st.failed == nil
	if first {
		st.failed = err
	}
	r.mu.Unlock()
	if first {
		r.logger().Warn("execution provider did not start; falling back", "ep", p, "using", next, "err", oneLine(err.Error()))
	}
}

// started records that a provider ran a session in this process.
func (r *Runtime) started(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.eps[p]
	if st == nil {
		st = &providerState{}
		r.eps[p] = st
	}
	st.started = true
}

// cudaHint says what the CUDA provider needs beyond the npm library.
const cudaHint = "(CUDA needs libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so of ORT " + ORTVersion +
	" beside the library, with CUDA 12 and cuDNN 9, or --ort-lib pointing at an ORT " + ORTVersion + " GPU build)"

// appendProvider adds provider p to the session options; cpu needs nothing.
// forceCPU names nodes the provider must leave to the CPU (WebGPU only).
func appendProvider(opts *ort.SessionOptions, p string, forceCPU []string) error {
	switch p {
	case EPCUDA:
		co, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return fmt.Errorf("CUDA provider options: %w", err)
		}
		defer co.Destroy()
		if err := co.Update(map[string]string{"device_id": "0"}); err != nil {
			return fmt.Errorf("CUDA provider options: %w", err)
		}
		return opts.AppendExecutionProviderCUDA(co)
	case EPWebGPU:
		var o map[string]string
		if len(forceCPU) > 0 {
			o = map[string]string{"forceCpuNodeNames": strings.Join(forceCPU, "\n")}
		}
		return opts.AppendExecutionProvider("WebGPU", o)
	}
	return nil
}

// webgpuForceCPU finds the nodes ORT 1.24's WebGPU provider claims but cannot run:
// MaxPool with its Indices output fails at run time ("The Indices output is not
// supported yet"). They go to the CPU by name; unnamed ones are named first, so the
// model may come back re-encoded.
func webgpuForceCPU(model []byte) ([]byte, []string, error) {
	m, err := onnx.Decode(model)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	renamed := false
	for i, n := range m.Graph.GetNode() {
		if n.GetOpType() != "MaxPool" || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") ||
			len(n.Output) < 2 || n.Output[1] == "" {
			continue
		}
		if n.GetName() == "" {
			name := fmt.Sprintf("gibbon_cpu_maxpool_%d", i)
			n.Name = &name
			renamed = true
		}
		names = append(names, n.GetName())
	}
	if renamed {
		if model, err = onnx.Encode(m); err != nil {
			return nil, nil, err
		}
	}
	return model, names, nil
}

// oneLine folds a multi-line library message into one line for the CLI and logs.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " | ")), " ")
}
