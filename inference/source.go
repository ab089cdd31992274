package inference

import "io/fs"

// ModelSource is a set of models: a manifest.json and the files it names.
type ModelSource struct {
	// Name says where the models come from, for people: "built-in" or a directory.
	Name string
	FS   fs.FS
}
