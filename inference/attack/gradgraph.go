package attack

import (
	"fmt"

	"gibbon/inference"
	"gibbon/inference/autodiff"
	"gibbon/inference/onnx"
)

const (
	outLogits    = autodiff.OutputLogits
	outLoss      = autodiff.OutputLoss
	outInputGrad = autodiff.OutputInputGrad
)

// weightsInput names the autodiff graph's loss-weight input for kind.
func weightsInput(kind LossKind) string {
	if kind == LogitSeed {
		return autodiff.InputLogitSeed
	}
	return autodiff.InputLabelWeights
}

// buildGradient appends the backward pass for kind's loss to m.
func buildGradient(rt *inference.Runtime, m *onnx.ModelProto, input string, kind LossKind) (*onnx.ModelProto, error) {
	ak := autodiff.CrossEntropy
	switch kind {
	case CrossEntropy:
	case LogitSeed:
		ak = autodiff.LogitSeed
	default:
		return nil, fmt.Errorf("unknown loss kind %d", int(kind))
	}
	return autodiff.Build(rt, m, autodiff.Options{Input: input, Loss: ak})
}
