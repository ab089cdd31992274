package train

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"gibbon/inference"
	"gibbon/inference/mnist"
	"gibbon/inference/onnx"
	"gibbon/inference/train/arch"
)

// MNISTInput is the input contract of every built-in MNIST model.
func MNISTInput() inference.InputContract {
	return inference.InputContract{Name: arch.Input, Layout: "NCHW", Channels: 1, Height: mnist.Rows, Width: mnist.Cols,
		Color: "gray", Range: [2]float64{0, 1}, Resize: "mnist"}
}

// DigitLabels are the class names in output order.
func DigitLabels() []string {
	out := make([]string, mnist.Classes)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}

// Entry is the manifest entry of a trained recipe, before evaluation.
func (r Recipe) Entry(file, sha string, prov *inference.Provenance) inference.ModelEntry {
	a, _ := arch.Get(r.Config.Arch)
	return inference.ModelEntry{Name: r.Name, File: file, SHA256: sha, Task: inference.TaskClassifier,
		Description: r.Description, Architecture: a.Name + ": " + a.Description, Robust: r.Robust,
		Input: MNISTInput(), Labels: DigitLabels(), OutputsLogits: true, Training: prov}
}

// SaveModel writes a model atomically and returns its SHA-256.
func SaveModel(m *onnx.ModelProto, path string) (string, error) {
	data, err := onnx.Encode(m)
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return "", err
	}
	return sha256Hex(data), nil
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
