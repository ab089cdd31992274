package inference

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTVersion is the ONNX Runtime release onnxruntime_go v1.27.0 is built against.
const ORTVersion = "1.24.1"

// ErrNoRuntime is returned when no usable ONNX Runtime library was found.
var ErrNoRuntime = errors.New("ONNX Runtime library not found: run `gibbon runtime install`")

// ErrWrongVersion is wrapped by the error for a library of another ORT version.
var ErrWrongVersion = errors.New("wrong ONNX Runtime version")

// RuntimeConfig says where the library is and how sessions run.
type RuntimeConfig struct {
	// LibPath is the shared library; empty means GIBBON_ORT_LIB, then the cache.
	LibPath string
	// IntraOpThreads per session; 0 means 1 (faster and steadier on 2 vCPUs, see autodiff.md).
	IntraOpThreads int
	// EP is the execution provider: "cpu", "webgpu", "cuda" or "auto"; empty means
	// GIBBON_EP, then cpu. A provider that does not start falls back to the next
	// (auto: cuda, webgpu, cpu) with one warning; Session.Provider says which ran.
	EP string
	// Logger gets that warning; nil means slog.Default().
	Logger *slog.Logger
}

// Runtime owns the process-wide ONNX Runtime environment. Open exactly one; close it
// after every session made from it is closed (the WebGPU provider aborts otherwise).
type Runtime struct {
	cfg     RuntimeConfig
	libPath string
	lib     LibraryInfo

	mu       sync.Mutex
	sessions map[*Session]struct{}
	eps      map[string]*providerState
	closed   bool
	// webgpuFailed: a WebGPU session failed to start in this environment (this
	// runtime's or a kept one's); Close must not release it.
	webgpuFailed bool
}

// CacheDir is where `gibbon runtime install` puts the library for this OS/arch.
func CacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("user cache dir: %w", err)
	}
	return filepath.Join(base, "gibbon", "onnxruntime-"+ORTVersion, runtime.GOOS+"-"+platformArch()), nil
}

// LibraryFileName is the library's file name on this OS.
func LibraryFileName() string {
	switch runtime.GOOS {
	case "darwin":
		return "libonnxruntime." + ORTVersion + ".dylib"
	case "windows":
		return "onnxruntime.dll"
	default:
		return "libonnxruntime.so.1"
	}
}

// platformArch names GOARCH the way the npm package's folders do.
func platformArch() string {
	if runtime.GOARCH == "amd64" {
		return "x64"
	}
	return runtime.GOARCH
}

// FindLibrary applies the lookup order: explicit path, GIBBON_ORT_LIB, the cache.
func FindLibrary(explicit string) (string, error) {
	for _, p := range []string{explicit, os.Getenv("GIBBON_ORT_LIB")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("ONNX Runtime library %s: %w (fix the path or run `gibbon runtime install`)", p, err)
		}
		return p, nil
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, LibraryFileName())
	if _, err := os.Stat(p); err != nil {
		return "", ErrNoRuntime
	}
	return p, nil
}

// env guards the process-wide ORT environment. keptLib is set when a closed Runtime
// could not destroy it safely (see Close); the next OpenRuntime of the same library
// reuses it, with the providers that failed still given up.
var env struct {
	sync.Mutex
	keptLib string
	keptEPs map[string]*providerState
}

// OpenRuntime checks and loads the library and initialises the environment. Every
// error is one line that says how to fix it.
func OpenRuntime(cfg RuntimeConfig) (*Runtime, error) {
	ep, err := ResolveEP(cfg.EP)
	if err != nil {
		return nil, err
	}
	cfg.EP = ep
	lib, err := FindLibrary(cfg.LibPath)
	if err != nil {
		return nil, err
	}
	// Ask the library its version before ORT's environment touches it: a wrong
	// version then gets a clear message instead of whatever the C API mismatch does.
	info, err := ReadLibraryInfo(lib)
	switch {
	case errors.Is(err, errLibraryInfoUnsupported):
	case err != nil:
		return nil, fmt.Errorf("%s is not a usable ONNX Runtime library (%s): run `gibbon runtime install`", lib, oneLine(err.Error()))
	case !versionMatches(info.Version):
		return nil, fmt.Errorf("%w: %s is ONNX Runtime %s, Gibbon needs %s: run `gibbon runtime install`", ErrWrongVersion, lib, info.Version, ORTVersion)
	}
	env.Lock()
	defer env.Unlock()
	eps := map[string]*providerState{}
	kept := false
	switch {
	case ort.IsInitialized() && env.keptLib != "" && env.keptLib == lib:
		for k, v := range env.keptEPs {
			eps[k] = &providerState{started: v.started, failed: v.failed}
		}
		env.keptLib, env.keptEPs = "", nil
		kept = true
	case ort.IsInitialized():
		return nil, errors.New("ONNX Runtime is already open in this process")
	default:
		ort.SetSharedLibraryPath(lib)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			return nil, fmt.Errorf("load ONNX Runtime %s: %s (it must be version %s: run `gibbon runtime install`)", lib, oneLine(err.Error()), ORTVersion)
		}
	}
	if v := ort.GetVersion(); !versionMatches(v) {
		_ = ort.DestroyEnvironment()
		return nil, fmt.Errorf("%w: %s is ONNX Runtime %s, Gibbon needs %s: run `gibbon runtime install`", ErrWrongVersion, lib, v, ORTVersion)
	}
	if info.Version == "" {
		info.Version = ort.GetVersion()
	}
	if cfg.IntraOpThreads <= 0 {
		cfg.IntraOpThreads = 1
	}
	return &Runtime{cfg: cfg, libPath: lib, lib: info, sessions: map[*Session]struct{}{}, eps: eps, webgpuFailed: kept}, nil
}

// logger is cfg.Logger, else the default logger at the time of logging.
func (r *Runtime) logger() *slog.Logger {
	if r.cfg.Logger != nil {
		return r.cfg.Logger
	}
	return slog.Default()
}

// LibPath is the library in use.
func (r *Runtime) LibPath() string { return r.libPath }

// Version is the loaded library's version string.
func (r *Runtime) Version() string { return ort.GetVersion() }

// Library is what the loaded library says about itself (version, providers).
func (r *Runtime) Library() LibraryInfo { return r.lib }

// IntraOpThreads is each session's intra-op thread count (at least 1). With one,
// ONNX Runtime runs a CPU session's kernels on the thread that calls Run.
func (r *Runtime) IntraOpThreads() int { return r.cfg.IntraOpThreads }

// EP is the requested execution provider (after GIBBON_EP); each Session.Provider
// says where that session actually runs.
func (r *Runtime) EP() string { return r.cfg.EP }

// Close destroys every open session, then the environment: in that order, since
// with the WebGPU provider destroying the environment first aborts the process.
// After a WebGPU provider failed to start, ORT 1.24.1 deadlocks in ReleaseEnv; the
// environment is then kept (the process is usually exiting) and reused by the next
// OpenRuntime of the same library.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	open := make([]*Session, 0, len(r.sessions))
	for s := range r.sessions {
		open = append(open, s)
	}
	keep := r.webgpuFailed
	eps := make(map[string]*providerState, len(r.eps))
	for k, v := range r.eps {
		eps[k] = &providerState{started: v.started, failed: v.failed}
	}
	r.mu.Unlock()
	for _, s := range open {
		s.Close()
	}
	env.Lock()
	defer env.Unlock()
	if keep {
		env.keptLib, env.keptEPs = r.libPath, eps
		r.logger().Debug("keeping the ONNX Runtime environment: releasing it after a failed WebGPU start deadlocks")
		return nil
	}
	return ort.DestroyEnvironment()
}
