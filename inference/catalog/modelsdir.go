package catalog

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

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
