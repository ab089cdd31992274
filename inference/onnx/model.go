package onnx

import (
	"fmt"
	"os"

	"google.golang.org/protobuf/proto"

	"gibbon/internal/atomicfile"
)

// Decode parses a serialized model and checks it looks like one.
func Decode(data []byte) (*ModelProto, error) {
	m := &ModelProto{}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("not an ONNX model: %w", err)
	}
	if m.Graph == nil || len(m.Graph.Node) == 0 {
		return nil, fmt.Errorf("not an ONNX model: no graph")
	}
	return m, nil
}

// Load reads and decodes a model file.
func Load(path string) (*ModelProto, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Encode serializes a model deterministically (same model, same bytes, same checksum).
func Encode(m *ModelProto) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// Save writes a model atomically: a crash leaves the old file or the new one.
func Save(m *ModelProto, path string) error {
	data, err := Encode(m)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data)
}

// Opset is the default-domain opset the model imports (0 if none).
func Opset(m *ModelProto) int64 {
	for _, o := range m.OpsetImport {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// Initializer finds a graph initializer by name.
func Initializer(g *GraphProto, name string) *TensorProto {
	for _, t := range g.Initializer {
		if t.GetName() == name {
			return t
		}
	}
	return nil
}

// FloatData returns a float initializer's values, whichever field holds them.
func FloatData(t *TensorProto) ([]float32, error) {
	if t.GetDataType() != int32(TensorProto_FLOAT) {
		return nil, fmt.Errorf("tensor %q is %s, not float", t.GetName(), TensorProto_DataType(t.GetDataType()))
	}
	n := 1
	for _, d := range t.Dims {
		n *= int(d)
	}
	if len(t.FloatData) == n {
		return append([]float32(nil), t.FloatData...), nil
	}
	if len(t.RawData) == 4*n {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32frombits(t.RawData[4*i:])
		}
		return out, nil
	}
	return nil, fmt.Errorf("tensor %q: data holds neither %d floats nor raw bytes", t.GetName(), n)
}

// Int64Data returns an int64 initializer's values.
func Int64Data(t *TensorProto) ([]int64, error) {
	if t.GetDataType() != int32(TensorProto_INT64) {
		return nil, fmt.Errorf("tensor %q is %s, not int64", t.GetName(), TensorProto_DataType(t.GetDataType()))
	}
	n := 1
	for _, d := range t.Dims {
		n *= int(d)
	}
	if len(t.Int64Data) == n {
		return append([]int64(nil), t.Int64Data...), nil
	}
	if len(t.RawData) == 8*n {
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(le64(t.RawData[8*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("tensor %q: data holds neither %d ints nor raw bytes", t.GetName(), n)
}

// SetFloatData replaces a float tensor's values (raw little-endian, the compact form).
func SetFloatData(t *TensorProto, data []float32) {
	t.FloatData = nil
	t.RawData = floatsToRaw(data)
}
