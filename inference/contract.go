package inference

import (
	"fmt"
	"strings"
)

// LayoutOrDefault is the contract's layout in capitals, NCHW when unset.
func (c InputContract) LayoutOrDefault() string {
	if l := strings.ToUpper(c.Layout); l != "" {
		return l
	}
	return "NCHW"
}

// TensorKey is equal for contracts that make the same tensor from an image: same
// layout, size, channels, colour order, pixel range and resize policy. Mean/std may
// differ (attack adapters fold them into the graphs).
func (c InputContract) TensorKey() string {
	r := c.PixelRange()
	return fmt.Sprintf("%s %dx%dx%d %s [%g,%g] %s %g", c.LayoutOrDefault(), c.Channels, c.Height, c.Width,
		strings.ToUpper(c.Color), r[0], r[1], strings.ToLower(c.resize()), c.CropPct)
}

// SameTensor reports whether two models take the same tensor for an image (see TensorKey).
func (c InputContract) SameTensor(o InputContract) bool { return c.TensorKey() == o.TensorKey() }

// Describe says what the model takes, for messages: "28×28 gray images on [0,1]".
func (c InputContract) Describe() string {
	r := c.PixelRange()
	return fmt.Sprintf("%d×%d %s images on [%g,%g]", c.Width, c.Height, strings.ToLower(c.Color), r[0], r[1])
}
