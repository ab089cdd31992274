package engine

import (
	"context"
	"fmt"
	"strings"

	"gibbon/inference"
	"gibbon/inference/defense"
)

// convertedNet lets a classifier that takes another input form watch an attack:
// an ImageNet model at 299 px watching one made at 224 px, an NHWC model on
// [0,255] watching an NCHW one on [0,1]. Every defence sees the same adversarial
// image, the one the attacked model saw (already cropped): it is turned back into
// its picture (exact, on the 8-bit grid) and fed as the classifier's contract
// says, resized to its resolution with its interpolation when the sizes differ,
// never cropped again.
type convertedNet struct {
	net      defense.Classifier
	from, to inference.InputContract // on the pixel range
}

func newConverted(net defense.Classifier, from, to inference.InputContract) (*convertedNet, error) {
	from, to = from.Unnormalized(), to.Unnormalized()
	if from.Channels != to.Channels {
		return nil, fmt.Errorf("it takes %s images and this attack makes %s ones", channelWord(to), channelWord(from))
	}
	// The image is the attacked model's input already: fit it, do not crop or
	// centre it again.
	to.Resize, to.CropPct = inference.ResizeStretch, 0
	if err := to.Check(); err != nil {
		return nil, err
	}
	return &convertedNet{net: net, from: from, to: to}, nil
}

func channelWord(c inference.InputContract) string {
	if c.Channels == 1 {
		return "gray"
	}
	return "colour"
}

// describe says what the classifier is fed, for the page.
func (c *convertedNet) describe() string {
	r := c.to.PixelRange()
	form := fmt.Sprintf("%s on [%g,%g]", c.to.TensorLayout(), r[0], r[1])
	if c.from.Width == c.to.Width && c.from.Height == c.to.Height {
		return fmt.Sprintf("sees the same %d×%d image as %s", c.to.Width, c.to.Height, form)
	}
	interp := c.to.Interp
	if interp == "" {
		interp = "bilinear"
	}
	return fmt.Sprintf("sees the %d×%d image resized to %d×%d (%s), as %s", c.from.Width, c.from.Height,
		c.to.Width, c.to.Height, strings.ToLower(interp), form)
}

// Predict converts each image of x (the attack's form) and classifies them.
func (c *convertedNet) Predict(ctx context.Context, x *inference.Tensor) (*inference.Tensor, error) {
	per := 1
	for _, d := range c.from.Shape()[1:] {
		per *= int(d)
	}
	if x == nil || len(x.Shape) == 0 || x.Shape[0] < 1 || len(x.Data) != int(x.Shape[0])*per {
		return nil, fmt.Errorf("images are not of shape %v", c.from.Shape())
	}
	n := int(x.Shape[0])
	outShape := c.to.Shape()
	outShape[0] = int64(n)
	y := inference.NewTensor(outShape...)
	one := inference.NewTensor(c.from.Shape()...)
	k := len(y.Data) / n
	for i := range n {
		copy(one.Data, x.Data[i*per:(i+1)*per])
		img, err := inference.TensorImage(one, c.from)
		if err != nil {
			return nil, err
		}
		pre, err := inference.NewPicture(img, 0).Preprocess(c.to)
		if err != nil {
			return nil, err
		}
		copy(y.Data[i*k:(i+1)*k], pre.Tensor.Data)
	}
	return c.net.Predict(ctx, y)
}
