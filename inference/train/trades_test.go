package train

import (
	"context"
	"math"
	"testing"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/internal/testrt"
)

// klAt is KL(p ‖ softmax f(x)) per image at the trainer's weights.
func klAt(t *testing.T, tr *Trainer, x *inference.Tensor, labels []uint8, p []float32) []float64 {
	t.Helper()
	out, err := tr.attack.run(context.Background(), x, labels)
	if err != nil {
		t.Fatal(err)
	}
	q := softmax(out[logitOutput])
	kl := make([]float64, len(labels))
	for i := range kl {
		for c := range mnist.Classes {
			pc, qc := float64(p[i*mnist.Classes+c]), float64(q.Data[i*mnist.Classes+c])
			if pc > 0 {
				kl[i] += pc * math.Log(pc/math.Max(qc, 1e-30))
			}
		}
	}
	return kl
}

// TRADES's batch: the clean images with one-hot weights, then adversarial images
// inside the ball with weights β·p; the attack raises KL(p ‖ f(x')) far above what
// the start's noise gives.
func TestTradesBatch(t *testing.T) {
	rt := testrt.Open(t)
	train, _ := data(t)
	cfg := Config{Arch: "cnn-robust", Seed: 3, Epochs: 1, BatchSize: 32, TrainSubset: 512,
		Optimizer: OptimizerConfig{Kind: Adam}, Schedule: Schedule{Kind: Constant, LR: 1e-3},
		Adversarial: &AdvConfig{PGDConfig: PGDConfig{Eps: 0.3, Step: 0.05, Steps: 10, RandomStart: true}, Trades: 6}}
	tr, err := New(rt, cfg, train)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// A few plain steps first, so that p is not uniform.
	if err := tr.Run(context.Background(), RunOptions{StopAt: 8}); err != nil {
		t.Fatal(err)
	}
	idx := make([]int, 16)
	for i := range idx {
		idx[i] = i
	}
	x, labels := fillBatch(train, idx, 0, nil)
	batch, w, _, err := tr.tradesBatch(context.Background(), x, labels, cfg.Adversarial.PGDConfig, 6, rngFor(1, streamAttack, 0))
	if err != nil {
		t.Fatal(err)
	}
	n := len(labels)
	if batch.Shape[0] != int64(2*n) || w.Shape[0] != int64(2*n) {
		t.Fatalf("batch %v, weights %v for %d images", batch.Shape, w.Shape, n)
	}
	for i := range 2 * n {
		var s float64
		for c := range mnist.Classes {
			s += float64(w.Data[i*mnist.Classes+c])
		}
		want := 1.0
		if i >= n {
			want = 6
		}
		if math.Abs(s-want) > 1e-4 {
			t.Fatalf("row %d: weights sum to %v, want %v", i, s, want)
		}
	}
	adv := batch.Data[len(x.Data):]
	for j, v := range adv {
		if v < 0 || v > 1 || math.Abs(float64(v)-float64(x.Data[j])) > 0.3+1e-6 {
			t.Fatalf("value %d = %v leaves [0,1] or the ball around %v", j, v, x.Data[j])
		}
	}
	p := make([]float32, n*mnist.Classes)
	for j := range p {
		p[j] = w.Data[n*mnist.Classes+j] / 6
	}
	advX := &inference.Tensor{Shape: x.Shape, Data: adv}
	cleanKL := klAt(t, tr, x, labels, p)
	advKL := klAt(t, tr, advX, labels, p)
	var c, a float64
	for i := range n {
		c, a = c+cleanKL[i], a+advKL[i]
	}
	t.Logf("mean KL(p ‖ f) at the clean images %.2g, at TRADES's adversarial ones %.3f", c/float64(n), a/float64(n))
	if a < 10*c+0.05 {
		t.Fatalf("the attack barely raised the KL: %v at clean, %v adversarial", c, a)
	}
	// The rest of the epoch trains on the objective: CE + β·KL, without p's entropy.
	if err := tr.Run(context.Background(), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	st := tr.History[len(tr.History)-1]
	t.Logf("one TRADES epoch on 512 images: %+v", st)
	if math.IsNaN(st.Loss) || st.Loss <= 0 || st.Loss > 6 {
		t.Fatalf("epoch loss %v: want CE + β·KL, positive and about ln 10 early on", st.Loss)
	}
}
