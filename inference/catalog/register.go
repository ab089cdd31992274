package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"gibbon/inference"
)

// ManifestFile is the manifest's name inside a models directory.
const ManifestFile = "manifest.json"

// DefaultModelsDir is where pulled models go unless --models says otherwise: the
// user's data directory ($XDG_DATA_HOME or ~/.local/share on Linux and other Unix;
// the user config directory, Application Support or %AppData%, on macOS and Windows),
// then gibbon/models.
func DefaultModelsDir() (string, error) {
	var base string
	switch runtime.GOOS {
	case "darwin", "windows", "ios", "plan9":
		dir, err := os.UserConfigDir()
		if err != nil {
			return "", fmt.Errorf("models directory: %w (pass --models DIR)", err)
		}
		base = dir
	default:
		if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
			base = d
		} else {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("models directory: %w (pass --models DIR)", err)
			}
			base = filepath.Join(home, ".local", "share")
		}
	}
	return filepath.Join(base, "gibbon", "models"), nil
}

// ReadManifest reads dir/manifest.json; a missing file is an empty manifest.
func ReadManifest(dir string) (*inference.Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return &inference.Manifest{}, nil
	}
	if err != nil {
		return nil, err
	}
	m, err := inference.ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (fix or move it; Gibbon will not overwrite it)", filepath.Join(dir, ManifestFile), err)
	}
	return m, nil
}

// Register adds entry to dir/manifest.json, replacing an entry of the same name, and
// writes the manifest atomically (a crash leaves the old one or the new one).
func Register(dir string, entry inference.ModelEntry) error {
	m, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	replaced := false
	for i := range m.Models {
		if m.Models[i].Name == entry.Name {
			m.Models[i] = entry
			replaced = true
		}
	}
	if !replaced {
		m.Models = append(m.Models, entry)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if _, err := inference.ParseManifest(data); err != nil {
		return fmt.Errorf("manifest would not read back: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, ManifestFile), append(data, '\n'))
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and renames it
// over path.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(name, 0o644); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
