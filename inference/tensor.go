package inference

import "fmt"

// Tensor is a dense float32 tensor in row-major order. It is the currency between
// Gibbon's packages; ONNX Runtime values never leave this package.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// NewTensor allocates a zeroed tensor of the given shape.
func NewTensor(shape ...int64) *Tensor {
	return &Tensor{Shape: append([]int64(nil), shape...), Data: make([]float32, numel(shape))}
}

// Numel is the number of elements the shape holds.
func (t *Tensor) Numel() int { return numel(t.Shape) }

// Clone returns a deep copy.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{Shape: append([]int64(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// Validate reports a tensor whose data length does not match its shape.
func (t *Tensor) Validate() error {
	if t == nil {
		return fmt.Errorf("nil tensor")
	}
	if n := numel(t.Shape); n != len(t.Data) {
		return fmt.Errorf("tensor shape %v holds %d values, data has %d", t.Shape, n, len(t.Data))
	}
	return nil
}

// Int64Tensor carries integer inputs (indices, shapes) to graphs that need them.
type Int64Tensor struct {
	Shape []int64
	Data  []int64
}

func numel(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}
