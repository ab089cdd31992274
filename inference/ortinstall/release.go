// Package ortinstall installs the ONNX Runtime shared library Gibbon needs from the
// onnxruntime-node package on an npm registry, in Go (no Node.js): download with the
// hash computed on the way, verify against the integrity pinned here, then extract
// this platform's library into the cache atomically.
package ortinstall

import (
	"runtime"

	"gibbon/inference"
)

// release pins one onnxruntime-node tarball: its integrity (npm's sha512 "SRI"),
// size, and the sha256 of every file Gibbon takes from it, per platform.
type release struct {
	pkg, version string
	integrity    string
	size         int64
	platforms    map[string][]pinnedFile // "linux/x64" -> files; the first is the library
}

type pinnedFile struct {
	name   string // file name in package/bin/napi-v6/<os>/<arch>/ and in the cache
	size   int64
	sha256 string
}

// pinned is onnxruntime-node 1.24.1 as published; the file hashes were read from
// that tarball. Tests swap in a release of their own (Installer.release).
var pinned = release{
	pkg:       "onnxruntime-node",
	version:   inference.ORTVersion,
	integrity: "sha512-Ex/oUXKdhDoxvlNxBT3oYtW0MH88yYpPlXQeVQUXpcJQmN24usd/8RCoPLN5kCHwDsiZ+nqsnjciyFRl423dQw==",
	size:      85811498,
	platforms: map[string][]pinnedFile{
		"linux/x64":    {{"libonnxruntime.so.1", 35057880, "53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4"}},
		"linux/arm64":  {{"libonnxruntime.so.1", 18559840, "7954e8bdedb497f830c6a679e818d98399b7f4d81ade1126c3e0be74d28111ab"}},
		"darwin/arm64": {{"libonnxruntime.1.24.1.dylib", 35880440, "7ad6507ad64d3b02aebfae6380c024ff188939cd8a7a493ec18028e034c8275c"}},
		// The Windows library loads DirectML and, for WebGPU, the DirectX shader compiler.
		"win32/x64": {
			{"onnxruntime.dll", 23781408, "be46630a10f6ed3897fd9d1ec83f6e2577e34851fb1024d685884ed40faed3a7"},
			{"DirectML.dll", 18527776, "a8e78908fe3ff7faa48e2903d224ff082ebe0185024fd733a3eafada98a29b01"},
			{"dxcompiler.dll", 17986632, "f7b2157e48255fb5bb674cd14caa230fcf1f738bf2a979659fd88fdbbe07dc59"},
			{"dxil.dll", 1508896, "26d028267579f9bacb8b38774ad667bbbc2c3adcb8dd25182fe259dbe645b6f1"},
		},
		"win32/arm64": {
			{"onnxruntime.dll", 24352328, "5588ade6e81e7cb46ec45546ac36a61449b7135d177ca22ca808eee6910e5e3a"},
			{"DirectML.dll", 18444872, "e61b280fb8d74e2cd93bee1a6a7ca1461483f6abe8e88f301a7e1c54f8761f8b"},
			{"dxcompiler.dll", 22285856, "61a69ab5c00eecd428ab5d81598b802f705d6ad1ce4ce2e33acceea46c921f38"},
			{"dxil.dll", 1770016, "2a9f465ad31c62341ad2a1acc604502957b66bc88f715079445142cdf4aa0db0"},
		},
	},
}

// Platform names this OS/arch the way the package's bin folders do.
func Platform() string {
	goos := runtime.GOOS
	if goos == "windows" {
		goos = "win32"
	}
	arch := runtime.GOARCH
	if arch == "amd64" {
		arch = "x64"
	}
	return goos + "/" + arch
}
