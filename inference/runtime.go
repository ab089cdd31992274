package inference

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTVersion is the ONNX Runtime release onnxruntime_go v1.27.0 is built against.
const ORTVersion = "1.24.1"

// ErrNoRuntime is returned when no usable ONNX Runtime library was found.
var ErrNoRuntime = errors.New("ONNX Runtime library not found: run `gibbon runtime install`")

// RuntimeConfig says where the library is and how sessions run.
type RuntimeConfig struct {
	// LibPath is the shared library; empty means GIBBON_ORT_LIB, then the cache.
	LibPath string
	// IntraOpThreads per session; 0 means 1 (faster and steadier on 2 vCPUs, see autodiff.md).
	IntraOpThreads int
	// EP is the execution provider: "cpu" (default), "webgpu", "cuda" or "auto".
	EP string
}

// Runtime owns the process-wide ONNX Runtime environment. Open exactly one; close it
// after every session made from it is closed (the WebGPU provider aborts otherwise).
type Runtime struct {
	cfg     RuntimeConfig
	libPath string

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool
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

var envOnce sync.Mutex

// OpenRuntime loads the library and initialises the environment.
func OpenRuntime(cfg RuntimeConfig) (*Runtime, error) {
	lib, err := FindLibrary(cfg.LibPath)
	if err != nil {
		return nil, err
	}
	envOnce.Lock()
	defer envOnce.Unlock()
	if ort.IsInitialized() {
		return nil, errors.New("ONNX Runtime is already open in this process")
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("load ONNX Runtime %s: %w (it must be version %s: run `gibbon runtime install`)", lib, err, ORTVersion)
	}
	if v := ort.GetVersion(); !strings.HasPrefix(v, ORTVersion) {
		_ = ort.DestroyEnvironment()
		return nil, fmt.Errorf("ONNX Runtime at %s is version %s, Gibbon needs %s: run `gibbon runtime install`", lib, v, ORTVersion)
	}
	if cfg.IntraOpThreads <= 0 {
		cfg.IntraOpThreads = 1
	}
	if cfg.EP == "" {
		cfg.EP = "cpu"
	}
	return &Runtime{cfg: cfg, libPath: lib, sessions: map[*Session]struct{}{}}, nil
}

// LibPath is the library in use.
func (r *Runtime) LibPath() string { return r.libPath }

// Version is the loaded library's version string.
func (r *Runtime) Version() string { return ort.GetVersion() }

// Close destroys every open session, then the environment.
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
	r.mu.Unlock()
	for _, s := range open {
		s.Close()
	}
	envOnce.Lock()
	defer envOnce.Unlock()
	return ort.DestroyEnvironment()
}
