package autodiff

import "gibbon/inference/onnx"

// sameShape records that backward tensor t has the shape of forward tensor like.
func (c *buildCtx) sameShape(t, like string) {
	if c.shapeOf == nil {
		c.shapeOf = map[string]string{}
	}
	if t != like {
		c.shapeOf[t] = like
	}
}

// annotateShapes declares the shape of every intermediate float tensor whose shape the
// probe knows: the forward values and the gradients (shaped like the value they are
// the gradient of), with the batch as the image's symbolic dimension. ONNX Runtime's
// own shape inference loses track of the batch at a Reshape or Expand whose target is
// computed in the graph, and its CPU optimiser keeps tensors in the blocked channel
// layout (NCHWc) across a Mul only when it can prove both operands have equal shapes:
// without these declarations every gradient Mul converts layouts twice.
func (c *buildCtx) annotateShapes() {
	skip := map[string]bool{}
	for _, v := range c.g.Input {
		skip[v.GetName()] = true
	}
	for _, v := range c.g.Output {
		skip[v.GetName()] = true
	}
	for _, t := range c.g.Initializer {
		skip[t.GetName()] = true
	}
	seen := map[string]bool{}
	c.g.ValueInfo = nil
	for _, n := range c.g.Node {
		for _, o := range n.Output {
			if o == "" || skip[o] || seen[o] {
				continue
			}
			seen[o] = true
			like := o
			if l, ok := c.shapeOf[o]; ok {
				like = l
			} else if !c.isFloat[o] {
				continue
			}
			s1, s2, b := c.pr.shape1[like], c.pr.shape2[like], c.pr.batch[like]
			if s2 == nil || len(s1) != len(s2) || len(b) != len(s2) {
				continue
			}
			dims := make([]*onnx.TensorShapeProto_Dimension, len(s2))
			for i := range s2 {
				switch {
				case !b[i]:
					dims[i] = &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: s2[i]}}
				case s1[i] == probeBatch1 && s2[i] == probeBatch2:
					dims[i] = &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: c.batchParam}}
				default:
					dims[i] = &onnx.TensorShapeProto_Dimension{} // a multiple of the batch: unknown
				}
			}
			name := o
			et := int32(onnx.TensorProto_FLOAT)
			c.g.ValueInfo = append(c.g.ValueInfo, &onnx.ValueInfoProto{Name: &name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
				TensorType: &onnx.TypeProto_Tensor{ElemType: &et, Shape: &onnx.TensorShapeProto{Dim: dims}}}}})
		}
	}
}
