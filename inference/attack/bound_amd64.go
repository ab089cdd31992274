package attack

import "golang.org/x/sys/cpu"

// hasAVX: the processor and the OS support AVX, which signStepAVX uses.
var hasAVX = cpu.X86.HasAVX

// signStepAVX is signStep on the first n values (n a multiple of 8), eight at a time.
//
//go:noescape
func signStepAVX(x, d, flo, fhi *float32, n int, alpha float32)

// signStepVector runs signStepAVX on the longest prefix of whole groups of eight and
// returns its length (0 without AVX).
func signStepVector(x, d, flo, fhi []float32, alpha float32) int {
	n := len(x) &^ 7
	if !hasAVX || n == 0 {
		return 0
	}
	_, _, _ = d[n-1], flo[n-1], fhi[n-1]
	signStepAVX(&x[0], &d[0], &flo[0], &fhi[0], n, alpha)
	return n
}
