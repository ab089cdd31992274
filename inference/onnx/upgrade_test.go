package onnx_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"gibbon/inference"
	"gibbon/inference/onnx"
	"gibbon/internal/testrt"
)

func randTensor(r *rand.Rand, shape ...int64) *inference.Tensor {
	t := inference.NewTensor(shape...)
	for i := range t.Data {
		t.Data[i] = float32(r.NormFloat64())
	}
	return t
}

func randFloats(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

func runModel(t *testing.T, model []byte, inputs map[string]*inference.Tensor) map[string]*inference.Tensor {
	t.Helper()
	s, err := testrt.Open(t).NewSession(model)
	if err != nil {
		t.Fatalf("load model: %v", err)
	}
	defer s.Close()
	out, err := s.Run(context.Background(), inputs)
	if err != nil {
		t.Fatalf("run model: %v", err)
	}
	return out
}

func assertClose(t *testing.T, what string, got, want *inference.Tensor, tol float64) {
	t.Helper()
	if got == nil || want == nil {
		t.Fatalf("%s: missing output (got %v, want %v)", what, got, want)
	}
	if len(got.Data) != len(want.Data) || !equalShapes(got.Shape, want.Shape) {
		t.Fatalf("%s: shape %v, want %v", what, got.Shape, want.Shape)
	}
	worst := 0.0
	for i := range got.Data {
		worst = max(worst, math.Abs(float64(got.Data[i]-want.Data[i])))
	}
	if worst > tol {
		t.Fatalf("%s: max difference %g > %g\n got %v\nwant %v", what, worst, tol, got.Data, want.Data)
	}
}

func equalShapes(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// upgradeAndCompare runs the old-opset model and its upgrade on the same inputs and
// checks the outputs agree, that the upgrade imports opset 17, and that each op in
// rewritten was rewritten.
func upgradeAndCompare(t *testing.T, b *onnx.Builder, inputs map[string]*inference.Tensor, rewritten ...string) *onnx.ModelProto {
	t.Helper()
	old := b.Bytes()
	m, err := onnx.Decode(old)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := onnx.Upgrade(m, 17)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if rep.To != 17 || onnx.Opset(m) != 17 || m.GetIrVersion() < 8 {
		t.Fatalf("upgraded model imports opset %d at IR %d, report %v", onnx.Opset(m), m.GetIrVersion(), rep)
	}
	for _, op := range rewritten {
		if rep.Rewrites[op] == 0 {
			t.Errorf("%s was not rewritten: %v", op, rep)
		}
	}
	upgraded, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	want := runModel(t, old, inputs)
	got := runModel(t, upgraded, inputs)
	if len(want) == 0 {
		t.Fatal("model has no float outputs")
	}
	for name, w := range want {
		assertClose(t, name, got[name], w, 1e-5)
	}
	return m
}

func nodeOps(m *onnx.ModelProto) map[string]int {
	ops := map[string]int{}
	for _, n := range m.GetGraph().GetNode() {
		ops[n.GetOpType()]++
	}
	return ops
}

func TestUpgradeAxesAttributesBecomeInputs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := onnx.NewBuilder("axes")
	b.SetOpset(11)
	x := b.Input("x", 2, 3)
	u := b.Op("Unsqueeze", []string{x}, onnx.AttrInts("axes", 0, 3))                          // [1,2,3,1]
	s := b.Op("ReduceSum", []string{u}, onnx.AttrInts("axes", 2))                             // [1,2,1,1]
	all := b.Op("ReduceSum", []string{u}, onnx.AttrInt("keepdims", 0))                        // scalar
	q := b.Op("Squeeze", []string{s}, onnx.AttrInts("axes", 0, 3))                            // [2,1]
	q2 := b.Op("Squeeze", []string{b.Op("Unsqueeze", []string{x}, onnx.AttrInts("axes", 1))}) // no axes: all 1s
	b.Output("y", q, 2, 1)
	b.Output("z", b.Op("Add", []string{q2, all}), 2, 3)
	m := upgradeAndCompare(t, b, map[string]*inference.Tensor{"x": randTensor(r, 2, 3)}, "Unsqueeze", "ReduceSum", "Squeeze")
	for _, n := range m.GetGraph().GetNode() {
		if onnx.Attr(n, "axes") != nil {
			t.Errorf("%s still has an axes attribute", n.GetOpType())
		}
	}
}

func TestUpgradeSplitAttribute(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := onnx.NewBuilder("split")
	b.SetOpset(11)
	x := b.Input("x", 2, 6)
	parts := b.OpN("Split", []string{x}, 2, onnx.AttrInt("axis", 1), onnx.AttrInts("split", 2, 4))
	even := b.OpN("Split", []string{x}, 3, onnx.AttrInt("axis", 1))
	b.Output("y", b.Op("Concat", []string{parts[1], parts[0]}, onnx.AttrInt("axis", 1)), 2, 6)
	b.Output("z", b.Op("Concat", []string{even[2], even[0], even[1]}, onnx.AttrInt("axis", 1)), 2, 6)
	upgradeAndCompare(t, b, map[string]*inference.Tensor{"x": randTensor(r, 2, 6)}, "Split")
}

func TestUpgradeSoftmaxSemantics(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	b := onnx.NewBuilder("softmax")
	b.SetOpset(11)
	x3 := b.Input("x3", 2, 3, 4)
	x2 := b.Input("x2", 2, 5)
	// axis 1 of a 3-D input: the old meaning normalises over 3*4 values, the new over 3.
	b.Output("flat", b.Op("Softmax", []string{x3}, onnx.AttrInt("axis", 1)), 2, 3, 4)
	b.Output("hard", b.Op("Hardmax", []string{x3}), 2, 3, 4)
	b.Output("last", b.Op("LogSoftmax", []string{x2}), 2, 5)
	// Rank unknown to the pass (Reshape to a computed shape): the general rewrite.
	dyn := b.Op("Reshape", []string{x3, b.Op("Shape", []string{x3})})
	b.Output("dyn", b.Op("Softmax", []string{dyn}, onnx.AttrInt("axis", 2)), 2, 3, 4)
	m := upgradeAndCompare(t, b, map[string]*inference.Tensor{"x3": randTensor(r, 2, 3, 4), "x2": randTensor(r, 2, 5)},
		"Softmax", "Hardmax", "LogSoftmax")
	if nodeOps(m)["Flatten"] < 3 {
		t.Errorf("expected Flatten rewrites for the non-last axes, got ops %v", nodeOps(m))
	}
}

func TestUpgradeClipAndPadAttributes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	b := onnx.NewBuilder("clip-pad")
	b.SetOpset(10)
	x := b.Input("x", 1, 2, 3, 3)
	b.Output("both", b.Op("Clip", []string{x}, onnx.AttrFloat("min", -0.5), onnx.AttrFloat("max", 0.5)), 1, 2, 3, 3)
	b.Output("hi", b.Op("Clip", []string{x}, onnx.AttrFloat("max", 0.2)), 1, 2, 3, 3)
	b.Output("lo", b.Op("Clip", []string{x}, onnx.AttrFloat("min", 0.1)), 1, 2, 3, 3)
	b.Output("const", b.Op("Pad", []string{x}, onnx.AttrInts("pads", 0, 0, 1, 2, 0, 0, 2, 1), onnx.AttrFloat("value", 1.5)), 1, 2, 6, 6)
	b.Output("reflect", b.Op("Pad", []string{x}, onnx.AttrString("mode", "reflect"), onnx.AttrInts("pads", 0, 0, 1, 1, 0, 0, 1, 1)), 1, 2, 5, 5)
	upgradeAndCompare(t, b, map[string]*inference.Tensor{"x": randTensor(r, 1, 2, 3, 3)}, "Clip", "Pad")
}

func TestUpgradeBatchNormAndDropoutLegacy(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	b := onnx.NewBuilder("bn")
	b.SetOpset(7)
	x := b.Input("x", 2, 3, 4, 4)
	scale := b.Init("scale", []int64{3}, []float32{1.5, 0.5, 2})
	bias := b.Init("bias", []int64{3}, []float32{0.1, -0.2, 0.3})
	mean := b.Init("mean", []int64{3}, []float32{0.2, -0.1, 0})
	variance := b.Init("var", []int64{3}, []float32{0.9, 1.2, 0.5})
	y := b.Op("BatchNormalization", []string{x, scale, bias, mean, variance}, onnx.AttrInt("spatial", 1), onnx.AttrFloat("epsilon", 1e-3))
	d := b.Op("Dropout", []string{y}, onnx.AttrFloat("ratio", 0.3))
	b.Output("y", b.Op("Relu", []string{d}), 2, 3, 4, 4)
	m := upgradeAndCompare(t, b, map[string]*inference.Tensor{"x": randTensor(r, 2, 3, 4, 4)}, "BatchNormalization", "Dropout")
	if nodeOps(m)["Dropout"] != 0 {
		t.Error("an inference Dropout should become Identity")
	}
}

func TestUpgradeUpsampleAndResize10(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	in := map[string]*inference.Tensor{"x": randTensor(r, 1, 2, 3, 4)}

	b := onnx.NewBuilder("upsample7")
	b.SetOpset(7)
	x := b.Input("x", 1, 2, 3, 4)
	b.Output("n2", b.Op("Upsample", []string{x}, onnx.AttrFloats("scales", 1, 1, 2, 2)), 1, 2, 6, 8)
	b.Output("l3", b.Op("Upsample", []string{x}, onnx.AttrString("mode", "linear"), onnx.AttrFloats("scales", 1, 1, 3, 2)), 1, 2, 9, 8)
	m := upgradeAndCompare(t, b, in, "Upsample")
	if ops := nodeOps(m); ops["Upsample"] != 0 || ops["Resize"] != 2 {
		t.Errorf("ops after upgrade: %v", ops)
	}

	b = onnx.NewBuilder("upsample9")
	b.SetOpset(9)
	x = b.Input("x", 1, 2, 3, 4)
	b.Output("n3", b.Op("Upsample", []string{x, b.Const([]int64{4}, 1, 1, 3, 3)}), 1, 2, 9, 12)
	b.Output("l2", b.Op("Upsample", []string{x, b.Const([]int64{4}, 1, 1, 2, 2)}, onnx.AttrString("mode", "linear")), 1, 2, 6, 8)
	upgradeAndCompare(t, b, in, "Upsample")

	b = onnx.NewBuilder("resize10")
	b.SetOpset(10)
	x = b.Input("x", 1, 2, 3, 4)
	b.Output("n3", b.Op("Resize", []string{x, b.Const([]int64{4}, 1, 1, 3, 3)}), 1, 2, 9, 12)
	b.Output("l2", b.Op("Resize", []string{x, b.Const([]int64{4}, 1, 1, 2, 2)}, onnx.AttrString("mode", "linear")), 1, 2, 6, 8)
	upgradeAndCompare(t, b, in, "Resize")
}

func TestUpgradeSliceTopKScatter(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	b := onnx.NewBuilder("slice")
	b.SetOpset(9)
	x := b.Input("x", 3, 5)
	b.Output("s", b.Op("Slice", []string{x}, onnx.AttrInts("starts", 1, 1), onnx.AttrInts("ends", 3, math.MaxInt64), onnx.AttrInts("axes", 0, 1)), 2, 4)
	b.Output("s2", b.Op("Slice", []string{x}, onnx.AttrInts("starts", 0, -3), onnx.AttrInts("ends", 2, -1)), 2, 2)
	vals := "topk_values"
	b.Node("TopK", []string{x}, []string{vals, "topk_indices"}, onnx.AttrInt("k", 2))
	b.Output("top", vals, 3, 2)
	idx := b.Fresh("scatter_idx")
	b.Graph().Initializer = append(b.Graph().Initializer, onnx.Int64Tensor(idx, []int64{2, 5}, []int64{2, 0, 1, 2, 0, 0, 1, 2, 0, 1}))
	b.Output("sc", b.Op("Scatter", []string{x, idx, b.Const([]int64{2, 5}, randFloats(r, 10)...)}), 3, 5)
	upgradeAndCompare(t, b, map[string]*inference.Tensor{"x": randTensor(r, 3, 5)}, "Slice", "TopK", "Scatter")
}

func TestUpgradeOpset12KeepsNewFormsAndIR3Inputs(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	b := onnx.NewBuilder("opset12")
	b.SetOpset(12)
	x := b.Input("x", 2, 4)
	w := b.Init("w", []int64{4, 3}, randFloats(r, 12))
	y := b.Op("MatMul", []string{x, w})
	y = b.Op("Clip", []string{y, b.Scalar(-1), b.Scalar(1)})
	y = b.Op("Dropout", []string{y, b.Scalar(0.2)})
	b.Output("y", b.Op("Softmax", []string{y}), 2, 3)
	upgradeAndCompare(t, b, map[string]*inference.Tensor{"x": randTensor(r, 2, 4)}, "Softmax")

	// IR 3 listed every initializer among the graph inputs; after the upgrade only x is.
	b = onnx.NewBuilder("ir3")
	b.SetOpset(8)
	x = b.Input("x", 2, 4)
	w = b.Init("w", []int64{4, 3}, randFloats(r, 12))
	b.Output("y", b.Op("MatMul", []string{x, w}), 2, 3)
	m := b.Model()
	ir := int64(3)
	m.IrVersion = &ir
	m.Graph.Input = append(m.Graph.Input, proto.Clone(m.Graph.Input[0]).(*onnx.ValueInfoProto))
	name := "w"
	m.Graph.Input[1].Name = &name
	m.Graph.Input[1].Type.GetTensorType().Shape.Dim = m.Graph.Input[1].Type.GetTensorType().Shape.Dim[:2]
	m.Graph.Input[1].Type.GetTensorType().Shape.Dim[0] = &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 4}}
	m.Graph.Input[1].Type.GetTensorType().Shape.Dim[1] = &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 3}}
	old, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	in := randTensor(r, 2, 4)
	want := runModel(t, old, map[string]*inference.Tensor{"x": in})
	if _, err := onnx.Upgrade(m, 17); err != nil {
		t.Fatal(err)
	}
	if len(m.Graph.Input) != 1 || m.Graph.Input[0].GetName() != "x" {
		t.Fatalf("inputs after upgrade: %v", m.Graph.Input)
	}
	got := runModel(t, mustEncode(t, m), map[string]*inference.Tensor{"x": in})
	assertClose(t, "y", got["y"], want["y"], 1e-5)
}

func mustEncode(t *testing.T, m *onnx.ModelProto) []byte {
	t.Helper()
	data, err := onnx.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestUpgradeOpset13OnlyRaisesImport(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	b := onnx.NewBuilder("opset13")
	b.SetOpset(13)
	x := b.Input("x", 2, 3)
	b.Output("y", b.Op("Unsqueeze", []string{b.Op("Relu", []string{x}), b.Ints(0)}), 1, 2, 3)
	m := upgradeAndCompare(t, b, map[string]*inference.Tensor{"x": randTensor(r, 2, 3)})
	rep, err := onnx.Upgrade(m, 17)
	if err != nil || rep.From != 17 || rep.To != 17 || len(rep.Rewrites) != 0 {
		t.Fatalf("a second upgrade should change nothing: %v %v", rep, err)
	}
}

func TestUpgradeRefusesWhatItCannotConvert(t *testing.T) {
	b := onnx.NewBuilder("unsupported")
	b.SetOpset(9)
	x := b.Input("x", 1, 3, 4, 4)
	y := b.Op("ImageScaler", []string{x}, onnx.AttrFloat("scale", 2))
	y = b.Op("Relu", []string{y})
	b.Output("y", b.Op("Scan", []string{y}), 1, 3, 4, 4)
	m := b.Model()
	before := proto.Clone(m)
	_, err := onnx.Upgrade(m, 17)
	if err == nil {
		t.Fatal("upgrade accepted ops it has no rule for")
	}
	for _, want := range []string{"ImageScaler", "Scan", "opset 9"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "Relu") {
		t.Errorf("error %q names a convertible op", err)
	}
	if !proto.Equal(m, before) {
		t.Error("a refused upgrade changed the model")
	}

	b = onnx.NewBuilder("ancient")
	b.SetOpset(5)
	b.Output("y", b.Op("Relu", []string{b.Input("x", 2)}), 2)
	if _, err := onnx.Upgrade(b.Model(), 17); err == nil || !strings.Contains(err.Error(), "opset 5") {
		t.Fatalf("opset 5: %v", err)
	}
	b = onnx.NewBuilder("spatial0")
	b.SetOpset(7)
	x = b.Input("x", 1, 2, 2, 2)
	c := b.Const([]int64{2, 2, 2}, 1, 1, 1, 1, 1, 1, 1, 1)
	b.Output("y", b.Op("BatchNormalization", []string{x, c, c, c, c}, onnx.AttrInt("spatial", 0)), 1, 2, 2, 2)
	if _, err := onnx.Upgrade(b.Model(), 17); err == nil || !strings.Contains(err.Error(), "spatial=0") {
		t.Fatalf("spatial=0: %v", err)
	}
	if _, err := onnx.Upgrade(b.Model(), 12); err == nil {
		t.Fatal("a target below 13 was accepted")
	}
}

// classifier builds a small fixed-batch-1 classifier with the Reshape([1,-1]) and
// Reshape([1,K]) constants exporters write, and a Reshape of a weight that must be left alone.
func classifier(r *rand.Rand, opset int64, softmax bool) *onnx.Builder {
	b := onnx.NewBuilder("classifier")
	b.SetOpset(opset)
	x := b.Input("x", 1, 3, 8, 8)
	w := b.Init("conv_w", []int64{4, 3, 3, 3}, randFloats(r, 108))
	y := b.Op("Relu", []string{b.Op("Conv", []string{x, w}, onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInts("strides", 2, 2))})
	bias := b.Op("Reshape", []string{b.Const([]int64{4}, randFloats(r, 4)...), b.Ints(1, 4, 1, 1)})
	y = b.Op("Add", []string{y, bias})
	y = b.Op("Reshape", []string{y, b.Ints(1, -1)}) // [1, 64]
	fc := b.Init("fc_w", []int64{10, 64}, randFloats(r, 640))
	y = b.Op("Gemm", []string{y, fc}, onnx.AttrInt("transB", 1))
	shape := "out_shape"
	b.Node("Constant", nil, []string{shape}, onnx.AttrTensor("value", onnx.Int64Tensor("v", []int64{2}, []int64{1, 10})))
	y = b.Op("Reshape", []string{y, shape})
	if softmax {
		y = b.Op("Softmax", []string{y}, onnx.AttrInt("axis", 1))
		y = b.Op("Identity", []string{y})
	}
	b.Output("logits", y, 1, 10)
	return b
}

func TestMakeBatchDynamicRunsAtBatch2(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for _, softmax := range []bool{false, true} {
		b := classifier(r, 12, softmax)
		m := b.Model()
		if _, err := onnx.Upgrade(m, 17); err != nil {
			t.Fatal(err)
		}
		fixed := mustEncode(t, m)
		changed, err := onnx.MakeBatchDynamic(m)
		if err != nil || !changed {
			t.Fatalf("MakeBatchDynamic: %v %v", changed, err)
		}
		dyn := mustEncode(t, m)
		x0, x1 := randTensor(r, 1, 3, 8, 8), randTensor(r, 1, 3, 8, 8)
		want0 := runModel(t, fixed, map[string]*inference.Tensor{"x": x0})["logits"]
		want1 := runModel(t, fixed, map[string]*inference.Tensor{"x": x1})["logits"]
		both := &inference.Tensor{Shape: []int64{2, 3, 8, 8}, Data: append(append([]float32(nil), x0.Data...), x1.Data...)}
		got := runModel(t, dyn, map[string]*inference.Tensor{"x": both})["logits"]
		if !equalShapes(got.Shape, []int64{2, 10}) {
			t.Fatalf("batch-2 output shape %v", got.Shape)
		}
		assertClose(t, "row 0", &inference.Tensor{Shape: []int64{1, 10}, Data: got.Data[:10]}, want0, 1e-5)
		assertClose(t, "row 1", &inference.Tensor{Shape: []int64{1, 10}, Data: got.Data[10:]}, want1, 1e-5)

		logits, ok := onnx.SoftmaxLogits(m.GetGraph(), "logits")
		if ok != softmax {
			t.Fatalf("SoftmaxLogits = %q, %v; the graph ends in Softmax: %v", logits, ok, softmax)
		}
		if again, _ := onnx.MakeBatchDynamic(m); again {
			t.Fatal("a dynamic graph was changed again")
		}
	}
}

func TestFlattenOutput(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	b := onnx.NewBuilder("squeezenet-like")
	x := b.Input("x", -1, 3, 4, 4)
	w := b.Init("w", []int64{5, 3, 1, 1}, randFloats(r, 15))
	b.Output("prob", b.Op("GlobalAveragePool", []string{b.Op("Conv", []string{x, w})}), -1, 5, 1, 1)
	m := b.Model()
	if !onnx.FlattenOutput(m.GetGraph(), "prob") {
		t.Fatal("a [N,5,1,1] output was not flattened")
	}
	out := runModel(t, mustEncode(t, m), map[string]*inference.Tensor{"x": randTensor(r, 2, 3, 4, 4)})["prob"]
	if !equalShapes(out.Shape, []int64{2, 5}) {
		t.Fatalf("flattened output shape %v", out.Shape)
	}
	if onnx.FlattenOutput(m.GetGraph(), "prob") {
		t.Fatal("a 2-D output was flattened again")
	}
}
