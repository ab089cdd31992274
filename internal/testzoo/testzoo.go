// Package testzoo gives tests the built-in models through the model zoo, loaded
// once per test binary, as the app loads them.
package testzoo

import (
	"context"
	"sync"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/zoo"
	"gibbon/internal/testrt"
	"gibbon/models"
)

var (
	once    sync.Once
	builtin *zoo.Zoo
)

// Builtin is the built-in zoo (models load on first use, once).
func Builtin(t testing.TB) *zoo.Zoo {
	t.Helper()
	rt := testrt.Open(t)
	once.Do(func() { builtin = zoo.Open(rt, inference.ModelSource{Name: "built-in", FS: models.FS()}) })
	return builtin
}

// Classifier is a built-in classifier as attacks see it, failing the test when it
// does not load.
func Classifier(t testing.TB, name string) *attack.ONNXModel {
	t.Helper()
	m, err := Builtin(t).Get(context.Background(), name)
	if err != nil {
		t.Fatalf("built-in model %s: %v", name, err)
	}
	if m.Net() == nil {
		t.Fatalf("built-in model %s is not a classifier", name)
	}
	return m.Net()
}
