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

// AllFinite reports whether every value is a number (no NaN, no ±Inf). It sums
// v−v, which is 0 for a number and NaN otherwise, in four independent sums: about
// twice as fast as testing each value with math.IsNaN and math.IsInf.
func AllFinite(v []float32) bool {
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(v); i += 4 {
		s0 += v[i] - v[i]
		s1 += v[i+1] - v[i+1]
		s2 += v[i+2] - v[i+2]
		s3 += v[i+3] - v[i+3]
	}
	for ; i < len(v); i++ {
		s0 += v[i] - v[i]
	}
	return s0+s1+s2+s3 == 0
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
