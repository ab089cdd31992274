package train

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gibbon/internal/atomicfile"
)

const checkpointMagic = "gibbon-checkpoint-v1\n"

// checkpoint is everything a run needs to continue bit for bit: the config it was
// started with, the step reached, the weights and the optimizer state. Random draws
// are functions of (seed, step), so no generator state is stored.
type checkpoint struct {
	Config      []byte // canonical JSON of the Config
	Step        int
	WallSeconds float64
	Params      []Param
	OptT        int64
	OptM, OptV  [][]float32
}

// writeFileAtomic writes data to path atomically, making its folder first (the
// checkpoints' folder in the user cache may not exist yet).
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data)
}

func saveCheckpoint(path string, c *checkpoint) error {
	return WriteSealed(path, checkpointMagic, c)
}

// ErrBadCheckpoint marks a checkpoint file that cannot be used.
var ErrBadCheckpoint = errors.New("bad checkpoint")

func loadCheckpoint(path string) (*checkpoint, error) {
	var c checkpoint
	if err := ReadSealed(path, checkpointMagic, "training checkpoint", &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// WriteSealed writes magic, v gob-encoded, and the SHA-256 of both, atomically: a crash
// leaves the previous file or the new one. Checkpoints of every trainer use it.
func WriteSealed(path, magic string, v any) error {
	var buf bytes.Buffer
	buf.WriteString(magic)
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	buf.Write(sum[:])
	if err := writeFileAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

// ReadSealed decodes what WriteSealed wrote into v; kind names the file in errors, which
// wrap ErrBadCheckpoint when the file is foreign, damaged or undecodable.
func ReadSealed(path, magic, kind string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(data) < len(magic)+sha256.Size || string(data[:len(magic)]) != magic {
		return fmt.Errorf("%w: %s is not a Gibbon %s", ErrBadCheckpoint, path, kind)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return fmt.Errorf("%w: %s is damaged (checksum mismatch); delete it to start over", ErrBadCheckpoint, path)
	}
	if err := gob.NewDecoder(bytes.NewReader(body[len(magic):])).Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadCheckpoint, path, err)
	}
	return nil
}
