// Package testrt opens the one process-wide ONNX Runtime for tests.
package testrt

import (
	"os"
	"sync"
	"testing"

	"gibbon/inference"
)

var (
	once sync.Once
	rt   *inference.Runtime
	err  error
)

// Open returns the shared runtime, failing the test (never skipping) when the library
// is missing: CI installs it first (`gibbon runtime install`). GIBBON_EP picks the provider.
func Open(t testing.TB) *inference.Runtime {
	t.Helper()
	once.Do(func() {
		rt, err = inference.OpenRuntime(inference.RuntimeConfig{EP: os.Getenv("GIBBON_EP")})
	})
	if err != nil {
		t.Fatalf("open ONNX Runtime: %v", err)
	}
	return rt
}
