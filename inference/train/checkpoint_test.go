package train

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestCheckpointFileRoundTripAndDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "run.ckpt")
	c := &checkpoint{Config: []byte(`{"arch":"mlp"}`), Step: 7, WallSeconds: 1.5,
		Params: []Param{{Name: "w", Shape: []int64{2}, Data: []float32{1, 2}}}, OptT: 7,
		OptM: [][]float32{{0.1, 0.2}}, OptV: [][]float32{{0.01, 0.02}}}
	if err := saveCheckpoint(path, c); err != nil {
		t.Fatal(err)
	}
	got, err := loadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: %+v, want %+v", got, c)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left beside the checkpoint: %v", entries)
	}
	data, _ := os.ReadFile(path)
	data[len(data)/2] ^= 1
	os.WriteFile(path, data, 0o644)
	if _, err := loadCheckpoint(path); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("damaged checkpoint: %v, want ErrBadCheckpoint", err)
	}
	os.WriteFile(path, []byte("hello"), 0o644)
	if _, err := loadCheckpoint(path); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("foreign file: %v, want ErrBadCheckpoint", err)
	}
}
