package train

import (
	"math/rand/v2"

	"gibbon/inference"
	"gibbon/inference/mnist"
)

// Streams of the seeded generator: every random choice is a pure function of
// (seed, stream, step), so a run resumed at step k draws what an unbroken run would.
const (
	streamShuffle = iota + 1
	streamShift
	streamAttack
	streamEval
)

func rngFor(seed uint64, stream, index uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed^(stream*0x9e3779b97f4a7c15), index))
}

// epochOrder is the seeded permutation of the training set for one epoch.
func epochOrder(seed uint64, epoch, n int) []int {
	return rngFor(seed, streamShuffle, uint64(epoch)).Perm(n)
}

// fillBatch copies images idx into a [B,1,28,28] tensor, each translated by a random
// offset in [-shift, shift] pixels (zero fill) when shift > 0, and returns their labels.
func fillBatch(set *mnist.Set, idx []int, shift int, rng *rand.Rand) (*inference.Tensor, []uint8) {
	x := inference.NewTensor(int64(len(idx)), 1, mnist.Rows, mnist.Cols)
	labels := make([]uint8, len(idx))
	for b, i := range idx {
		labels[b] = set.Labels[i]
		src := set.Image(i)
		dst := x.Data[b*mnist.Pixels : (b+1)*mnist.Pixels]
		if shift <= 0 {
			copy(dst, src)
			continue
		}
		dx := rng.IntN(2*shift+1) - shift
		dy := rng.IntN(2*shift+1) - shift
		for y := range mnist.Rows {
			sy := y - dy
			if sy < 0 || sy >= mnist.Rows {
				continue
			}
			for xx := range mnist.Cols {
				sx := xx - dx
				if sx < 0 || sx >= mnist.Cols {
					continue
				}
				dst[y*mnist.Cols+xx] = src[sy*mnist.Cols+sx]
			}
		}
	}
	return x, labels
}

// oneHot is the label_weights input: [B,10], 1 at each label.
func oneHot(labels []uint8) *inference.Tensor {
	t := inference.NewTensor(int64(len(labels)), mnist.Classes)
	for i, l := range labels {
		t.Data[i*mnist.Classes+int(l)] = 1
	}
	return t
}

// argmax of each row of [B,C] logits.
func argmax(logits *inference.Tensor) []int {
	c := int(logits.Shape[len(logits.Shape)-1])
	n := len(logits.Data) / c
	out := make([]int, n)
	for i := range n {
		row := logits.Data[i*c : (i+1)*c]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		out[i] = best
	}
	return out
}
