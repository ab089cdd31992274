package train

import (
	"context"
	"testing"

	"gibbon/internal/testrt"
)

// BenchmarkTrainStep measures training throughput (forward + backward + update, one ORT
// thread) of each zoo recipe: go test -run '^$' -bench TrainStep ./inference/train
func BenchmarkTrainStep(b *testing.B) {
	rt := testrt.Open(b)
	train, _ := data(b)
	for _, r := range Zoo {
		b.Run(r.Name, func(b *testing.B) {
			cfg := r.Config
			cfg.Epochs = 1000 // never reach the end
			tr, err := New(rt, cfg, train)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			if err := tr.Run(context.Background(), RunOptions{StopAt: 2}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			if err := tr.Run(context.Background(), RunOptions{StopAt: 2 + b.N}); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N*cfg.BatchSize)/b.Elapsed().Seconds(), "img/s")
		})
	}
}
