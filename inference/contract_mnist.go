package inference

import (
	"fmt"

	"gibbon/inference/mnist"
)

// FitsMNIST reports whether the contract takes MNIST's images as they are: 28×28 gray.
func (c InputContract) FitsMNIST() bool {
	return c.Channels == 1 && c.Height == mnist.Rows && c.Width == mnist.Cols
}

// MNISTTensor is images [from, from+n) of set on the contract's pixel range and in
// its layout (with one channel both lay the pixels out alike), with their labels.
func (c InputContract) MNISTTensor(set *mnist.Set, from, n int) (*Tensor, []int, error) {
	if !c.FitsMNIST() {
		return nil, nil, Invalidf("MNIST holds 28×28 gray digits; the models take %s", c.Describe())
	}
	if from < 0 || n < 1 || from+n > set.Len() {
		return nil, nil, fmt.Errorf("the set has %d images, not [%d, %d)", set.Len(), from, from+n)
	}
	shape := c.Shape()
	shape[0] = int64(n)
	x := NewTensor(shape...)
	r := c.PixelRange()
	for i, v := range set.Images[from*mnist.Pixels : (from+n)*mnist.Pixels] {
		x.Data[i] = r[0] + v*(r[1]-r[0])
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = int(set.Labels[from+i])
	}
	return x, labels, nil
}
