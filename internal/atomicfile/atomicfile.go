// Package atomicfile writes files so that a crash or a failed write leaves the old
// file or the new one under its name, never a part of one: the data goes to a
// temporary file beside it, is synced, and is renamed over the name; then the folder
// is synced so that the rename itself survives a power cut. Every file Gibbon writes
// for keeps (models, manifests, checkpoints, exports, images, CSV) goes through here.
package atomicfile

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
)

// WriteFile writes data to path. The folder must exist.
func WriteFile(path string, data []byte) error {
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer root.Close()
	return WriteIn(root, filepath.Base(path), data)
}

// Write writes what write produces to path; nothing is written when it fails.
func Write(path string, write func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return err
	}
	return WriteFile(path, buf.Bytes())
}

// WriteIn writes data to name inside root; name cannot lead out of root.
func WriteIn(root *os.Root, name string, data []byte) (err error) {
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+"."+hex.EncodeToString(suffix[:])+".tmp")
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = root.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		return err
	}
	syncDir(root, filepath.Dir(name))
	return nil
}

// syncDir makes a rename in dir durable. Its errors are let be: some file systems
// (network ones, Windows) cannot sync a folder, and the data itself is synced.
func syncDir(root *os.Root, dir string) {
	if d, err := root.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
