package inference

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpdateManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if m, err := ReadManifest(dir); err != nil || len(m.Models) != 0 {
		t.Fatalf("a folder without a manifest: %+v, %v; want an empty one", m, err)
	}
	clf := ModelEntry{Name: "a<b>", File: "a.onnx", SHA256: "00", Task: TaskClassifier}
	net := ModelEntry{Name: "net", File: "net.onnx", Task: TaskAttackNetwork}
	if err := UpdateManifest(dir, func(m *Manifest) error { m.Put(clf); m.Put(net); return nil }); err != nil {
		t.Fatal(err)
	}
	clf.Description = "replaced in place"
	if err := UpdateManifest(dir, func(m *Manifest) error { m.Put(clf); return nil }); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
	if !strings.Contains(string(data), `"a<b>"`) || !strings.HasSuffix(string(data), "}\n") {
		t.Errorf("the manifest should keep < and > as they are and end in a newline:\n%s", data)
	}
	m, err := ReadManifestFS(os.DirFS(dir))
	if err != nil || len(m.Models) != 2 || m.Models[0].Description != "replaced in place" {
		t.Fatalf("read back %+v, %v", m, err)
	}
	if e, err := m.EntryOf("net", TaskAttackNetwork); err != nil || e.File != "net.onnx" {
		t.Fatalf("EntryOf(net): %+v, %v", e, err)
	}
	for _, c := range []struct{ name, task, says string }{
		{"nope", TaskClassifier, `manifest has no model "nope"`},
		{"net", TaskClassifier, "net is an attack network, not a classifier"},
	} {
		if _, err := m.EntryOf(c.name, c.task); !errors.Is(err, ErrInvalid) || err.Error() != c.says {
			t.Errorf("EntryOf(%s, %s): %v, want an ErrInvalid saying %q", c.name, c.task, err, c.says)
		}
	}
	// Entries that would not read back are not written.
	err = UpdateManifest(dir, func(m *Manifest) error { m.Models = append(m.Models, ModelEntry{Name: "no file"}); return nil })
	if err == nil || !strings.Contains(err.Error(), "would not read back") {
		t.Fatalf("an entry without a file: %v", err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, ManifestFile)); string(again) != string(data) {
		t.Fatal("a refused update changed the file")
	}
}

func TestDamagedManifestsAreNamed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(dir); err == nil || !strings.Contains(err.Error(), "will not overwrite it") {
		t.Errorf("ReadManifest of a damaged file: %v", err)
	}
	if err := UpdateManifest(dir, func(*Manifest) error { return nil }); err == nil {
		t.Error("UpdateManifest wrote over a damaged manifest")
	}
	if _, err := ReadManifestFS(os.DirFS(t.TempDir())); err == nil || !strings.Contains(err.Error(), "read manifest.json") {
		t.Errorf("ReadManifestFS without a manifest: %v", err)
	}
}

func TestRecordMetricsRefusesAChangedFile(t *testing.T) {
	dir := t.TempDir()
	if err := UpdateManifest(dir, func(m *Manifest) error { m.Put(ModelEntry{Name: "m", File: "m.onnx", SHA256: "aa"}); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := RecordMetrics(dir, "m", "aa", map[string]float64{"clean_accuracy": 0.9}); err != nil {
		t.Fatal(err)
	}
	if err := RecordMetrics(dir, "m", "bb", map[string]float64{"clean_accuracy": 0.1}); err == nil || !strings.Contains(err.Error(), "changed while") {
		t.Fatalf("metrics for another checksum: %v", err)
	}
	m, _ := ReadManifest(dir)
	if got := m.Models[0].Metrics["clean_accuracy"]; got != 0.9 {
		t.Fatalf("clean_accuracy %v, want 0.9", got)
	}
}
