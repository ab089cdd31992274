package ortinstall

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveRegistryOrder(t *testing.T) {
	home := t.TempDir()
	npmrc := "; comment\n@scope:registry=http://scoped.invalid/\nregistry = http://npmrc.invalid/\n"
	if err := os.WriteFile(filepath.Join(home, ".npmrc"), []byte(npmrc), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	npmCalls := 0
	src := RegistrySources{
		Getenv: func(k string) string { return env[k] },
		Home:   home,
		NPMValue: func(context.Context) (string, error) {
			npmCalls++
			return "http://npm-binary.invalid/\n", nil
		},
	}
	check := func(flag, wantURL, wantFrom string) {
		t.Helper()
		got, from, err := ResolveRegistry(context.Background(), flag, src)
		if err != nil || got != wantURL || from != wantFrom {
			t.Fatalf("got %q from %q (%v), want %q from %q", got, from, err, wantURL, wantFrom)
		}
	}
	env["GIBBON_NPM_REGISTRY"] = "http://gibbon.invalid/"
	env["npm_config_registry"] = "http://npmenv.invalid"
	check("http://flag.invalid/", "http://flag.invalid", "--registry")
	check("", "http://gibbon.invalid", "GIBBON_NPM_REGISTRY")
	delete(env, "GIBBON_NPM_REGISTRY")
	check("", "http://npmenv.invalid", "npm_config_registry")
	delete(env, "npm_config_registry")
	env["NPM_CONFIG_REGISTRY"] = "https://upper.invalid/"
	check("", "https://upper.invalid", "npm_config_registry")
	delete(env, "NPM_CONFIG_REGISTRY")
	check("", "http://npmrc.invalid", "~/.npmrc")
	if npmCalls != 0 {
		t.Fatal("npm was run although an earlier source had the registry")
	}
	src.Home = t.TempDir()
	check("", "http://npm-binary.invalid", "npm config get registry")

	src.NPMValue = func(context.Context) (string, error) { return "", errors.New("no npm") }
	if _, _, err := ResolveRegistry(context.Background(), "", src); !errors.Is(err, ErrNoRegistry) {
		t.Fatalf("nothing configured: err = %v", err)
	}
	if _, _, err := ResolveRegistry(context.Background(), "ftp://x", src); err == nil {
		t.Fatal("non-http registry accepted")
	}
	env["GIBBON_NPM_REGISTRY"] = "not a url"
	if _, from, err := ResolveRegistry(context.Background(), "", src); err == nil || from != "GIBBON_NPM_REGISTRY" {
		t.Fatalf("bad GIBBON_NPM_REGISTRY: from %q, err %v", from, err)
	}
}
