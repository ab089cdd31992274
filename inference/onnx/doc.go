// Package onnx owns Gibbon's view of ONNX models as data: the onnx.proto message
// types (onnx.pb.go, generated; see gen.go), reading and writing model files
// deterministically (model.go), a Builder that writes graphs node by node with
// unique names (builder.go, graph_util.go), tensor data in and out of initializers
// (tensorproto.go), and the rewrites public models need before Gibbon can attack
// them: opset upgrades, a dynamic batch dimension, logits found behind a terminal
// Softmax (upgrade*.go). It runs nothing: sessions are package inference's.
package onnx
