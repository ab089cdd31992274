package sweep

import (
	"context"
	"fmt"
	"strings"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/inference/zoo"
)

// FromZoo resolves a plan's models from the process's zoo (the command line's and
// the server's alike): models are loaded on first use, once.
func FromZoo(z *zoo.Zoo) Resolver { return zooResolver{z} }

type zooResolver struct{ z *zoo.Zoo }

func (r zooResolver) Classifiers() []string { return r.z.Available(inference.TaskClassifier) }

func (r zooResolver) Networks() []string { return r.z.Available(inference.TaskAttackNetwork) }

func (r zooResolver) Contract(name string) (inference.InputContract, bool) {
	e, ok := r.z.Entry(name)
	return e.Input, ok
}

func (r zooResolver) Classifier(ctx context.Context, name string) (attack.Model, inference.InputContract, error) {
	m, err := r.get(ctx, name, inference.TaskClassifier, "classifier")
	if err != nil {
		return attack.Model{}, inference.InputContract{}, err
	}
	return attack.Model{Name: m.Name, Net: m.Net()}, m.Input, nil
}

func (r zooResolver) Network(ctx context.Context, name string) (Generator, inference.InputContract, error) {
	m, err := r.get(ctx, name, inference.TaskAttackNetwork, "attack network")
	if err != nil {
		return nil, inference.InputContract{}, err
	}
	return m.Network(), m.Input, nil
}

func (r zooResolver) Labels(name string) []string {
	if m, ok := r.z.Model(name); ok {
		return m.Labels // labels_file read
	}
	e, _ := r.z.Entry(name)
	return e.Labels
}

func (r zooResolver) Checksum(name string) string {
	e, _ := r.z.Entry(name)
	return strings.ToLower(e.SHA256)
}

func (r zooResolver) get(ctx context.Context, name, task, what string) (*zoo.Model, error) {
	if e, ok := r.z.Entry(name); !ok || e.Task != task {
		have := strings.Join(r.z.Available(task), ", ")
		if have == "" {
			have = "none"
		}
		return nil, fmt.Errorf("no %s %q (have: %s)", what, clip(name), have)
	}
	return r.z.Get(ctx, name)
}

func clip(s string) string {
	if r := []rune(s); len(r) > 60 {
		return string(r[:60]) + "…"
	}
	return s
}
