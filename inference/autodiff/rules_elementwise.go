package autodiff

import (
	"fmt"

	"gibbon/inference/onnx"
)

// gradFunc emits the vector-Jacobian product of one forward node: dys holds the
// gradient of each output ("" when none flows back), need marks the inputs that want
// one; it returns one gradient per input ("" for none).
type gradFunc func(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error)

type rule struct {
	grad gradFunc
	// check rejects node settings the rule cannot differentiate, before any probing.
	check func(c *buildCtx, n *onnx.NodeProto) error
	// values are input positions whose values the rule reads as constants.
	values []int
	// extra adds computations to the shape probe.
	extra func(c *buildCtx, n *onnx.NodeProto, req *probeRequest)
}

var rules map[string]rule

func init() {
	rules = map[string]rule{
		"Identity":    {grad: gradIdentity},
		"Dropout":     {grad: gradIdentity, check: checkDropout},
		"Cast":        {grad: gradIdentity},
		"Relu":        {grad: gradRelu},
		"LeakyRelu":   {grad: gradLeakyRelu},
		"Clip":        {grad: gradClip},
		"Sigmoid":     {grad: gradSigmoid},
		"Tanh":        {grad: gradTanh},
		"HardSigmoid": {grad: gradHardSigmoid},
		"HardSwish":   {grad: gradHardSwish},
		"Softmax":     {grad: gradSoftmax},
		"LogSoftmax":  {grad: gradLogSoftmax},
		"Add":         {grad: gradAdd},
		"Sub":         {grad: gradSub},
		"Mul":         {grad: gradMul},
		"Div":         {grad: gradDiv},
		"Neg":         {grad: gradNeg},
		"Exp":         {grad: gradExp},
		"Log":         {grad: gradLog},
		"Sqrt":        {grad: gradSqrt},
		"Sum":         {grad: gradSum},
		"Erf":         {grad: gradErf},
		"Pow":         {grad: gradPow},
		"Where":       {grad: gradWhere},
		"Expand":      {grad: gradExpand},
		"Gather":      {grad: gradGather, values: []int{1}},

		"LayerNormalization": {grad: gradLayerNorm, check: checkLayerNorm},
		"GlobalMaxPool":      {grad: gradGlobalMaxPool},

		"Gemm":   {grad: gradGemm},
		"MatMul": {grad: gradMatMul},

		"Reshape":    {grad: gradReshape},
		"Flatten":    {grad: gradReshape},
		"Squeeze":    {grad: gradReshape},
		"Unsqueeze":  {grad: gradReshape},
		"Transpose":  {grad: gradTranspose},
		"Concat":     {grad: gradConcat},
		"Split":      {grad: gradSplit},
		"Slice":      {grad: gradSlice, values: []int{1, 2, 3, 4}},
		"Pad":        {grad: gradPad, check: checkPad, values: []int{1}},
		"Resize":     {grad: gradResize, check: checkResize, values: []int{2}},
		"ReduceSum":  {grad: gradReduce, values: []int{1}},
		"ReduceMean": {grad: gradReduce},

		"Conv":               {grad: gradConv, check: checkConv},
		"ConvTranspose":      {grad: gradConvTranspose, check: checkConvTranspose},
		"MaxPool":            {grad: gradMaxPool, check: checkMaxPool},
		"AveragePool":        {grad: gradAveragePool, check: checkAveragePool, extra: extraAveragePool},
		"GlobalAveragePool":  {grad: gradGlobalAveragePool},
		"BatchNormalization": {grad: gradBatchNorm, check: checkBatchNorm},
	}
}

func only0(dx string, n int) []string {
	out := make([]string, n)
	out[0] = dx
	return out
}

func gradIdentity(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	return only0(dys[0], len(need)), nil
}

func checkDropout(c *buildCtx, n *onnx.NodeProto) error {
	if tm := input(n, 2); tm != "" {
		v, ok := constantValues(c.g)[tm]
		if !ok || len(v) != 1 || v[0] != 0 {
			return fmt.Errorf("Dropout in training mode (training_mode input %q) is not supported", tm)
		}
	}
	return nil
}

func gradRelu(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	y := n.Output[0]
	if ch, ok := blockedMaskOK(c, y); ok {
		return only0(e.op("Mul", dys[0], e.positiveMask(y, ch)), len(need)), nil
	}
	m := e.mask(e.op("Greater", y, e.scalar(0)))
	return only0(e.op("Mul", dys[0], m), len(need)), nil
}

func gradLeakyRelu(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	alpha := attrFloat(n, "alpha", 0.01)
	m := e.mask(e.op("Greater", n.Input[0], e.scalar(0)))
	slope := e.op("Add", e.op("Mul", m, e.scalar(1-alpha)), e.scalar(alpha))
	return only0(e.op("Mul", dys[0], slope), len(need)), nil
}

func gradClip(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	if (len(need) > 1 && need[1]) || (len(need) > 2 && need[2]) {
		return nil, fmt.Errorf("Clip bounds that depend on the differentiated inputs are not supported")
	}
	// The gradient passes where min < y < max. The mask is read from the output, not
	// the input (torch.clamp passes x == min too; the two differ only exactly at the
	// bounds): then the forward Conv feeding the Clip has no other reader, and ONNX
	// Runtime still fuses the two (ReLU6 in MobileNets).
	y := n.Output[0]
	if ch, ok := blockedMaskOK(c, y); ok {
		lo, okLo := scalarConst(c, input(n, 1))
		hi, okHi := scalarConst(c, input(n, 2))
		switch {
		case okLo && lo == 0 && input(n, 2) == "":
			return only0(e.op("Mul", dys[0], e.positiveMask(y, ch)), len(need)), nil
		case okLo && okHi && lo == 0:
			if m, ok := e.boxMask(y, ch, hi); ok {
				return only0(e.op("Mul", dys[0], m), len(need)), nil
			}
		}
	}
	var cond string
	if lo := input(n, 1); lo != "" {
		cond = e.op("Greater", y, lo)
	}
	if hi := input(n, 2); hi != "" {
		h := e.op("Less", y, hi)
		if cond == "" {
			cond = h
		} else {
			cond = e.op("And", cond, h)
		}
	}
	if cond == "" {
		return only0(dys[0], len(need)), nil
	}
	return only0(e.op("Mul", dys[0], e.mask(cond)), len(need)), nil
}

func gradSigmoid(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	y := n.Output[0]
	d := e.op("Mul", y, e.op("Sub", e.scalar(1), y))
	return only0(e.op("Mul", dys[0], d), len(need)), nil
}

func gradTanh(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	y := n.Output[0]
	d := e.op("Sub", e.scalar(1), e.op("Mul", y, y))
	return only0(e.op("Mul", dys[0], d), len(need)), nil
}

func gradHardSigmoid(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	alpha := attrFloat(n, "alpha", 0.2)
	y := n.Output[0]
	in := e.op("And", e.op("Greater", y, e.scalar(0)), e.op("Less", y, e.scalar(1)))
	d := e.op("Mul", e.mask(in), e.scalar(alpha))
	return only0(e.op("Mul", dys[0], d), len(need)), nil
}

func gradHardSwish(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	x := n.Input[0]
	// y = x*clip(x/6+1/2, 0, 1): y' = 0 below -3, x/3+1/2 in between, 1 above 3 (as torch).
	mid := e.op("Add", e.op("Mul", x, e.scalar(float32(1.0/3))), e.scalar(0.5))
	d := e.op("Where", e.op("Less", x, e.scalar(-3)), e.scalar(0),
		e.op("Where", e.op("LessOrEqual", x, e.scalar(3)), mid, e.scalar(1)))
	return only0(e.op("Mul", dys[0], d), len(need)), nil
}

func softmaxAxis(c *buildCtx, n *onnx.NodeProto) int64 {
	return attrInt(n, "axis", -1)
}

func gradSoftmax(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	y := n.Output[0]
	s := e.reduceSum(e.op("Mul", dys[0], y), []int64{softmaxAxis(c, n)}, true)
	return only0(e.op("Mul", y, e.op("Sub", dys[0], s)), len(need)), nil
}

func gradLogSoftmax(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	s := e.reduceSum(dys[0], []int64{softmaxAxis(c, n)}, true)
	return only0(e.op("Sub", dys[0], e.op("Mul", e.op("Exp", n.Output[0]), s)), len(need)), nil
}

func gradAdd(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	out := make([]string, 2)
	for i := 0; i < 2; i++ {
		if need[i] {
			out[i] = c.e.unbroadcast(dys[0], n.Output[0], n.Input[i])
		}
	}
	return out, nil
}

func gradSub(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	out := make([]string, 2)
	if need[0] {
		out[0] = c.e.unbroadcast(dys[0], n.Output[0], n.Input[0])
	}
	if need[1] {
		out[1] = c.e.op("Neg", c.e.unbroadcast(dys[0], n.Output[0], n.Input[1]))
	}
	return out, nil
}

func gradMul(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	out := make([]string, 2)
	for i := 0; i < 2; i++ {
		if need[i] {
			if dx, ok := scaleBlocked(c, dys[0], n.Output[0], n.Input[i], n.Input[1-i]); ok {
				out[i] = dx
				continue
			}
			out[i] = e.unbroadcast(e.op("Mul", dys[0], n.Input[1-i]), n.Output[0], n.Input[i])
		}
	}
	return out, nil
}

func gradDiv(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	a, b, y := n.Input[0], n.Input[1], n.Output[0]
	out := make([]string, 2)
	if need[0] {
		out[0] = e.unbroadcast(e.op("Div", dys[0], b), y, a)
	}
	if need[1] {
		// d(a/b)/db = -a/b^2 = -y/b
		out[1] = e.unbroadcast(e.op("Neg", e.op("Div", e.op("Mul", dys[0], y), b)), y, b)
	}
	return out, nil
}

func gradNeg(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	return only0(c.e.op("Neg", dys[0]), len(need)), nil
}

func gradExp(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	return only0(c.e.op("Mul", dys[0], n.Output[0]), len(need)), nil
}

func gradLog(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	return only0(c.e.op("Div", dys[0], n.Input[0]), len(need)), nil
}

func gradSqrt(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	e := c.e
	return only0(e.op("Div", e.op("Mul", dys[0], e.scalar(0.5)), n.Output[0]), len(need)), nil
}

func gradSum(c *buildCtx, n *onnx.NodeProto, dys []string, need []bool) ([]string, error) {
	out := make([]string, len(need))
	for i := range need {
		if need[i] {
			out[i] = c.e.unbroadcast(dys[0], n.Output[0], n.Input[i])
		}
	}
	return out, nil
}
