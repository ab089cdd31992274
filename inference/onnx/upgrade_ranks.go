package onnx

// valueRanks infers the rank of as many values as it can from declared shapes,
// initializers and simple per-op rules, walking nodes in (topological) file order.
// A value it cannot be sure of is absent: callers then take a rank-independent path.
func valueRanks(g *GraphProto) map[string]int {
	r := map[string]int{}
	declare := func(vs []*ValueInfoProto) {
		for _, v := range vs {
			if s := v.GetType().GetTensorType().GetShape(); s != nil {
				r[v.GetName()] = len(s.Dim)
			}
		}
	}
	declare(g.Input)
	declare(g.ValueInfo)
	consts := map[string][]int64{}
	for _, t := range g.Initializer {
		r[t.GetName()] = len(t.Dims)
		if t.GetDataType() == int32(TensorProto_INT64) {
			if v, err := Int64Data(t); err == nil {
				consts[t.GetName()] = v
			}
		}
	}
	for _, n := range g.Node {
		if !isDefaultDomain(n.GetDomain()) || len(n.Output) == 0 {
			continue
		}
		in := func(i int) (int, bool) {
			if i >= len(n.Input) || n.Input[i] == "" {
				return 0, false
			}
			v, ok := r[n.Input[i]]
			return v, ok
		}
		set := func(v int) {
			for _, o := range n.Output {
				if o != "" {
					r[o] = v
				}
			}
		}
		switch op := n.GetOpType(); op {
		case "Constant":
			if a := Attr(n, "value"); a != nil && a.GetT() != nil {
				set(len(a.GetT().Dims))
				if v, err := Int64Data(a.GetT()); err == nil {
					consts[n.Output[0]] = v
				}
			}
		case "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor",
			"Ceil", "Round", "Erf", "Sign", "Clip", "Dropout", "Identity", "BatchNormalization",
			"LeakyRelu", "HardSigmoid", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Cast", "LRN",
			"InstanceNormalization", "Softmax", "LogSoftmax", "Hardmax", "PRelu", "Not", "IsNaN", "IsInf",
			"Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
			"GlobalLpPool", "Pad", "Resize", "Upsample", "Transpose", "DepthToSpace", "SpaceToDepth",
			"Concat", "Split", "Slice", "Tile", "CumSum", "ThresholdedRelu", "Shrink", "LpNormalization",
			"MeanVarianceNormalization", "ScatterElements", "ScatterND", "Scatter":
			if v, ok := in(0); ok {
				set(v)
			}
		case "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less",
			"Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod":
			best, all := 0, true
			for i := range n.Input {
				v, ok := in(i)
				if !ok {
					all = false
					break
				}
				best = max(best, v)
			}
			if all {
				set(best)
			}
		case "Gemm", "Flatten":
			set(2)
		case "Shape", "Size":
			if op == "Shape" {
				set(1)
			} else {
				set(0)
			}
		case "MatMul":
			a, okA := in(0)
			b, okB := in(1)
			if okA && okB && a >= 2 && b >= 2 {
				set(max(a, b))
			}
		case "Reshape":
			if s, ok := consts[n.Input[1]]; ok {
				set(len(s))
			}
		case "Expand":
			if v, ok := in(0); ok {
				if s, ok := consts[n.Input[1]]; ok {
					set(max(v, len(s)))
				}
			}
		case "Squeeze", "Unsqueeze":
			v, ok := in(0)
			if !ok {
				break
			}
			axes := Attr(n, "axes").GetInts()
			if len(n.Input) > 1 {
				axes = consts[n.Input[1]]
				if axes == nil {
					break
				}
			}
			if op == "Unsqueeze" {
				set(v + len(axes))
			} else if len(axes) > 0 {
				set(v - len(axes))
			}
		case "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
			"ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin":
			v, ok := in(0)
			if !ok {
				break
			}
			keep := int64(1)
			if a := Attr(n, "keepdims"); a != nil {
				keep = a.GetI()
			}
			if keep == 1 {
				set(v)
				break
			}
			if op == "ArgMax" || op == "ArgMin" {
				set(v - 1)
				break
			}
			axes := Attr(n, "axes").GetInts()
			if len(n.Input) > 1 && n.Input[1] != "" {
				axes = consts[n.Input[1]]
			}
			if len(axes) > 0 {
				set(v - len(axes))
			}
		case "Gather":
			a, okA := in(0)
			b, okB := in(1)
			if okA && okB {
				set(a + b - 1)
			}
		}
	}
	return r
}
