package inference

import (
	"runtime/debug"
	"sync"
)

// Version is this build's version, recorded in every saved record: the module
// version, else the VCS revision (marked when the tree was modified).
func Version() string { return version() }

var version = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		v = "devel-" + rev[:min(12, len(rev))] + dirty
	}
	if v == "" {
		v = "devel"
	}
	return v
})
