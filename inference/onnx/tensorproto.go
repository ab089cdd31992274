package onnx

import (
	"encoding/binary"
	"math"
)

func float32frombits(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

func floatsToRaw(data []float32) []byte {
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return raw
}

func int64sToRaw(data []int64) []byte {
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return raw
}

// FloatTensor makes a float initializer.
func FloatTensor(name string, dims []int64, data []float32) *TensorProto {
	dt := int32(TensorProto_FLOAT)
	return &TensorProto{Name: &name, Dims: append([]int64(nil), dims...), DataType: &dt, RawData: floatsToRaw(data)}
}

// Int64Tensor makes an int64 initializer.
func Int64Tensor(name string, dims []int64, data []int64) *TensorProto {
	dt := int32(TensorProto_INT64)
	return &TensorProto{Name: &name, Dims: append([]int64(nil), dims...), DataType: &dt, RawData: int64sToRaw(data)}
}
