package onnx

// onnx.pb.go is generated from proto/onnx.proto (copied from Debian's libonnx-dev 1.12,
// /usr/include/onnx/onnx.proto). Regenerate with protoc (Debian's protobuf-compiler) and
// protoc-gen-go v1.36.12 (go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12):
//go:generate protoc --proto_path=proto --go_out=. --go_opt=paths=source_relative --go_opt=Monnx.proto=gibbon/inference/onnx;onnx onnx.proto
