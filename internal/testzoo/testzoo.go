// Package testzoo gives tests the built-in models through the model zoo, loaded
// once per test binary, as the app loads them.
package testzoo

import (
	"context"
	"sync"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/mnist"
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

// Digits are the first n MNIST test digits as one [n,1,28,28] tensor on [0,1],
// and their labels.
func Digits(t testing.TB, n int) (*inference.Tensor, []int) {
	t.Helper()
	set, err := mnist.LoadTest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	set = set.Subset(n)
	x := inference.NewTensor(int64(n), 1, mnist.Rows, mnist.Cols)
	copy(x.Data, set.Images)
	labels := make([]int, n)
	for i, l := range set.Labels {
		labels[i] = int(l)
	}
	return x, labels
}
