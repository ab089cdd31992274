// Package imagenet embeds the 1000 ImageNet-1k class names in the order ImageNet
// classifiers output them (see NOTICE for their source and licence).
package imagenet

import (
	_ "embed"
	"strings"
)

//go:embed labels.txt
var labelsTxt string

// NumClasses is the number of ImageNet-1k classes.
const NumClasses = 1000

// FileName is the name Gibbon gives the labels file beside a manifest.
const FileName = "imagenet_labels.txt"

// Labels returns the class names; index i is the model's output i.
func Labels() []string {
	return strings.Split(strings.TrimSuffix(labelsTxt, "\n"), "\n")
}

// Text returns labels.txt as embedded: one name per line.
func Text() string { return labelsTxt }
