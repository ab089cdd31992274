package ortinstall

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoRegistry says how to name a registry when none is configured anywhere.
var ErrNoRegistry = errors.New("no npm registry configured: set GIBBON_NPM_REGISTRY to your npm registry's URL (or pass --registry URL)")

// RegistrySources is where ResolveRegistry looks; the zero value uses the process's
// environment, home directory and npm binary.
type RegistrySources struct {
	Getenv   func(string) string
	Home     string                                    // for ~/.npmrc
	NPMValue func(ctx context.Context) (string, error) // `npm config get registry`
}

// ResolveRegistry finds the npm registry's base URL, in this order: the flag's value,
// GIBBON_NPM_REGISTRY, npm_config_registry, a registry= line in ~/.npmrc, then what
// `npm config get registry` prints when npm is installed. It returns the URL and
// where it came from.
func ResolveRegistry(ctx context.Context, flagValue string, src RegistrySources) (string, string, error) {
	if src.Getenv == nil {
		src.Getenv = os.Getenv
	}
	if src.Home == "" {
		src.Home, _ = os.UserHomeDir()
	}
	if src.NPMValue == nil {
		src.NPMValue = npmConfigRegistry
	}
	type source struct {
		name  string
		value func() string
	}
	sources := []source{
		{"--registry", func() string { return flagValue }},
		{"GIBBON_NPM_REGISTRY", func() string { return src.Getenv("GIBBON_NPM_REGISTRY") }},
		{"npm_config_registry", func() string {
			if v := src.Getenv("npm_config_registry"); v != "" {
				return v
			}
			return src.Getenv("NPM_CONFIG_REGISTRY")
		}},
		{"~/.npmrc", func() string { return npmrcRegistry(filepath.Join(src.Home, ".npmrc")) }},
		{"npm config get registry", func() string {
			v, err := src.NPMValue(ctx)
			if err != nil {
				return ""
			}
			return v
		}},
	}
	for _, s := range sources {
		v := strings.TrimSpace(s.value())
		if v == "" || v == "undefined" || v == "null" {
			continue
		}
		u, err := checkRegistryURL(v)
		if err != nil {
			return "", s.name, fmt.Errorf("registry from %s: %w", s.name, err)
		}
		return u, s.name, nil
	}
	return "", "", ErrNoRegistry
}

func checkRegistryURL(v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", v)
	}
	return strings.TrimRight(v, "/"), nil
}

// npmrcRegistry reads the unscoped registry= line of an .npmrc ("" when none).
func npmrcRegistry(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	found := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == "registry" {
			found = strings.Trim(strings.TrimSpace(v), `"'`) // npm: the last one wins
		}
	}
	return found
}

func npmConfigRegistry(ctx context.Context) (string, error) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, npm, "config", "get", "registry").Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}
