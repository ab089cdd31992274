package train

import "fmt"

// Helpers for trainers outside this package (the attack network in inference/attacknet)
// that run their own gradient graphs but share the update rule, the schedules and the
// crash-safe writes.

// Optimizer is an update rule (SGD or Adam(W)) with its per-parameter state.
type Optimizer struct{ o *optimizer }

// NewOptimizer prepares cfg's update rule for params (defaults filled in, validated).
func NewOptimizer(cfg OptimizerConfig, params []*Param) (*Optimizer, error) {
	o, err := newOptimizer(cfg, params)
	if err != nil {
		return nil, err
	}
	return &Optimizer{o: o}, nil
}

// Step applies one update; grads[i] is the mean-loss gradient of params[i].
func (o *Optimizer) Step(params []*Param, grads [][]float32, lr float64) { o.o.step(params, grads, lr) }

// State is the update count and the moment buffers (v is nil for SGD), for checkpoints.
func (o *Optimizer) State() (t int64, m, v [][]float32) { return o.o.t, o.o.m, o.o.v }

// SetState restores what State returned, checking the buffers' sizes.
func (o *Optimizer) SetState(t int64, m, v [][]float32) error {
	if len(m) != len(o.o.m) || (v == nil) != (o.o.v == nil) || (v != nil && len(v) != len(o.o.v)) {
		return fmt.Errorf("optimizer state has %d buffers, want %d", len(m), len(o.o.m))
	}
	for i := range m {
		if len(m[i]) != len(o.o.m[i]) || (v != nil && len(v[i]) != len(o.o.v[i])) {
			return fmt.Errorf("optimizer state buffer %d has the wrong size", i)
		}
	}
	o.o.t, o.o.m, o.o.v = t, m, v
	return nil
}

// Validate reports a schedule that cannot run.
func (s Schedule) Validate() error { return s.validate() }

// WriteFileAtomic writes data beside path, syncs it and renames it into place.
func WriteFileAtomic(path string, data []byte) error { return writeFileAtomic(path, data) }
