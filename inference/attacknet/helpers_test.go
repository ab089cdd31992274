package attacknet

import (
	"context"
	"sync"
	"testing"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/mnist"
	"gibbon/inference/train"
	"gibbon/internal/testrt"
)

// Small classifiers trained once per test process: the zoo's MLP and small CNN
// recipes for one epoch on the first 3000 training digits (about 80% accurate: real
// networks, seconds to train).
var (
	zooOnce sync.Once
	zooNets map[string]*attack.ONNXModel
	zooErr  error
	sets    struct{ train, test *mnist.Set }
)

func smallZoo(t *testing.T) (map[string]*attack.ONNXModel, *mnist.Set, *mnist.Set) {
	t.Helper()
	rt := testrt.Open(t)
	zooOnce.Do(func() {
		ctx := context.Background()
		if sets.train, sets.test, zooErr = mnist.Load(ctx); zooErr != nil {
			return
		}
		zooNets = map[string]*attack.ONNXModel{}
		for _, r := range train.Zoo[:2] {
			cfg := r.Config
			cfg.Epochs, cfg.TrainSubset = 1, 3000
			tr, err := train.New(rt, cfg, sets.train)
			if err != nil {
				zooErr = err
				return
			}
			err = tr.Run(ctx, train.RunOptions{})
			m, _ := tr.Model()
			tr.Close()
			if err != nil {
				zooErr = err
				return
			}
			om, err := attack.NewONNXModel(ctx, rt, m, attack.ModelOptions{Name: r.Name})
			if err != nil {
				zooErr = err
				return
			}
			zooNets[r.Name] = om
		}
	})
	if zooErr != nil {
		t.Fatalf("train the small classifiers: %v", zooErr)
	}
	return zooNets, sets.train, sets.test
}

func targetOf(name string, m *attack.ONNXModel) Target {
	return Target{Name: name, Model: m.Proto(), Classes: m.Classes()}
}

// mnistImages wraps the first n images of a set.
func mnistImages(s *mnist.Set, n int) *Images {
	s = s.Subset(n)
	return &Images{Data: s.Images, Shape: []int64{1, mnist.Rows, mnist.Cols}}
}

func batchOf(s *mnist.Set, lo, hi int) (*inference.Tensor, []int) {
	x := &inference.Tensor{Shape: []int64{int64(hi - lo), 1, mnist.Rows, mnist.Cols}, Data: s.Images[lo*mnist.Pixels : hi*mnist.Pixels]}
	labels := make([]int, hi-lo)
	for i := range labels {
		labels[i] = int(s.Labels[lo+i])
	}
	return x, labels
}

var mnistSpec = Spec{Channels: 1, Height: 28, Width: 28, Eps: []float64{0.1, 0.2, 0.3}, Base: 8}
