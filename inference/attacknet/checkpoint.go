package attacknet

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"fmt"
	"os"

	"gibbon/inference/train"
)

// saveCheckpoint writes magic, the gob-encoded checkpoint and its SHA-256, atomically:
// a crash leaves the previous checkpoint or the new one.
func saveCheckpoint(path string, c *checkpoint) error {
	var buf bytes.Buffer
	buf.WriteString(checkpointMagic)
	if err := gob.NewEncoder(&buf).Encode(c); err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	buf.Write(sum[:])
	if err := train.WriteFileAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

func loadCheckpoint(path string) (*checkpoint, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < len(checkpointMagic)+sha256.Size || string(data[:len(checkpointMagic)]) != checkpointMagic {
		return nil, fmt.Errorf("%w: %s is not a Gibbon attack-network checkpoint", ErrBadCheckpoint, path)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, fmt.Errorf("%w: %s is damaged (checksum mismatch); delete it to start over", ErrBadCheckpoint, path)
	}
	var c checkpoint
	if err := gob.NewDecoder(bytes.NewReader(body[len(checkpointMagic):])).Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadCheckpoint, path, err)
	}
	return &c, nil
}
