// Package models embeds Gibbon's built-in models, their manifest, labels and sample
// images. How each model was made is recorded in manifest.json (the exact command).
package models

import "embed"

//go:embed manifest.json *.onnx samples/*.png
var files embed.FS

// FS returns the embedded files: manifest.json, the .onnx files it names, samples/.
func FS() embed.FS { return files }
