//go:build !amd64

package attack

// signStepVector: no vector form on this architecture; signStep does every value.
func signStepVector(x, d, flo, fhi []float32, alpha float32) int { return 0 }
