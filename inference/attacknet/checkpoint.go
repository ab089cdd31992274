package attacknet

import "gibbon/inference/train"

// saveCheckpoint writes the checkpoint sealed with its SHA-256, atomically.
func saveCheckpoint(path string, c *checkpoint) error {
	return train.WriteSealed(path, checkpointMagic, c)
}

func loadCheckpoint(path string) (*checkpoint, error) {
	var c checkpoint
	if err := train.ReadSealed(path, checkpointMagic, "attack-network checkpoint", &c); err != nil {
		return nil, err
	}
	return &c, nil
}
