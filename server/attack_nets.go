package server

import (
	"context"
	"fmt"
	"io/fs"
	"sync"

	"gibbon/inference"
	"gibbon/inference/attack"
)

// AttackNet is a classifier as attacks and defences see it: logits and input
// gradients for images on the model's pixel range (mean/std folded in).
type AttackNet interface {
	attack.Differentiable
	Classes() int
}

// AttackNets gives the explorer its view of the registry's classifiers.
type AttackNets interface {
	Net(ctx context.Context, m *inference.Model) (AttackNet, error)
}

// ONNXAttackNets adapts registry models with attack.LoadModel, each once, on first
// use (a model's gradient graph is built on its first gradient). It is safe for
// concurrent use; Close releases every session.
type ONNXAttackNets struct {
	rt      *inference.Runtime
	sources map[string]fs.FS

	mu   sync.Mutex
	nets map[string]*netSlot
}

type netSlot struct {
	mu  sync.Mutex
	net *attack.ONNXModel
}

// NewAttackNets reads model files from the sources the registry was loaded from.
func NewAttackNets(rt *inference.Runtime, sources ...inference.ModelSource) *ONNXAttackNets {
	a := &ONNXAttackNets{rt: rt, sources: map[string]fs.FS{}, nets: map[string]*netSlot{}}
	for _, s := range sources {
		a.sources[s.Name] = s.FS
	}
	return a
}

// Net returns m adapted for attacks.
func (a *ONNXAttackNets) Net(ctx context.Context, m *inference.Model) (AttackNet, error) {
	if m.Task != inference.TaskClassifier {
		return nil, fmt.Errorf("model %s is a %s, not a classifier", m.Name, m.Task)
	}
	src, ok := a.sources[m.Source]
	if !ok {
		return nil, fmt.Errorf("model %s: its files (%s) are not available to the explorer", m.Name, m.Source)
	}
	a.mu.Lock()
	slot := a.nets[m.Name]
	if slot == nil {
		slot = &netSlot{}
		a.nets[m.Name] = slot
	}
	a.mu.Unlock()
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if slot.net != nil {
		return slot.net, nil
	}
	// Failures are not kept: a cancelled load is tried again next time.
	net, err := attack.LoadModel(ctx, a.rt, src, m.ModelEntry)
	if err != nil {
		return nil, err
	}
	slot.net = net
	return net, nil
}

// Close releases the sessions of every adapted model.
func (a *ONNXAttackNets) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, slot := range a.nets {
		slot.mu.Lock()
		if slot.net != nil {
			slot.net.Close()
		}
		slot.mu.Unlock()
		delete(a.nets, name)
	}
}
