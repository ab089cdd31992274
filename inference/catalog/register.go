package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"gibbon/inference"
	"gibbon/internal/atomicfile"
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
	return atomicfile.WriteFile(filepath.Join(dir, ManifestFile), append(data, '\n'))
}
