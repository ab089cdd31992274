//go:build windows

package inference

// readLibraryInfo is not implemented on Windows yet: OpenRuntime then relies on the
// version check after loading, and `gibbon runtime info` says providers are unknown.
func readLibraryInfo(path string) (LibraryInfo, error) {
	return LibraryInfo{Path: path}, errLibraryInfoUnsupported
}
