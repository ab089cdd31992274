package inference

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// PlacedNode is one node of the graph ORT ran (after its graph optimisations) and
// the provider whose kernel ran it.
type PlacedNode struct {
	Name     string
	OpType   string
	Provider string // ORT's name, e.g. CPUExecutionProvider
}

// Placement says which execution provider ran each node of a model. GPU providers
// hand the nodes they have no kernel for back to the CPU, with copies either side.
type Placement struct {
	// Provider is the session's provider (cpu, webgpu or cuda).
	Provider string
	// Nodes in the order they first ran.
	Nodes []PlacedNode
}

// ProviderCount is how many nodes one provider ran.
type ProviderCount struct {
	Provider string
	Nodes    int
}

// Counts is the number of nodes per provider, most first.
func (p *Placement) Counts() []ProviderCount {
	m := map[string]int{}
	for _, n := range p.Nodes {
		m[n.Provider]++
	}
	out := make([]ProviderCount, 0, len(m))
	for k, v := range m {
		out = append(out, ProviderCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Nodes != out[j].Nodes {
			return out[i].Nodes > out[j].Nodes
		}
		return out[i].Provider < out[j].Provider
	})
	return out
}

// IsCopy reports the transfer nodes ORT inserts between providers.
func (n PlacedNode) IsCopy() bool { return strings.HasPrefix(n.OpType, "Memcpy") }

// OffProvider lists the nodes, other than copies, that did not run on the session's
// provider: on a GPU provider, the ones handed back to the CPU.
func (p *Placement) OffProvider() []PlacedNode {
	want := ORTProviderName(p.Provider)
	var out []PlacedNode
	for _, n := range p.Nodes {
		if n.Provider != want && !n.IsCopy() {
			out = append(out, n)
		}
	}
	return out
}

// OffProviderOps counts OffProvider's nodes by op type, most first ("Op xN").
func (p *Placement) OffProviderOps() []string {
	m := map[string]int{}
	for _, n := range p.OffProvider() {
		m[n.OpType]++
	}
	ops := make([]string, 0, len(m))
	for k := range m {
		ops = append(ops, k)
	}
	sort.Slice(ops, func(i, j int) bool {
		if m[ops[i]] != m[ops[j]] {
			return m[ops[i]] > m[ops[j]]
		}
		return ops[i] < ops[j]
	})
	for i, k := range ops {
		ops[i] = fmt.Sprintf("%s x%d", k, m[k])
	}
	return ops
}

// Copies counts the transfer nodes between providers.
func (p *Placement) Copies() int {
	c := 0
	for _, n := range p.Nodes {
		if n.IsCopy() {
			c++
		}
	}
	return c
}

// Placement loads the model on ep (with the usual fallback), runs it once on
// constant inputs (dynamic dimensions as 1) with ORT's profiler on, and reads from
// the profile which provider ran each node.
func (r *Runtime) Placement(ctx context.Context, model []byte, ep string) (*Placement, error) {
	ep, err := ParseEP(ep)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gibbon-placement-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	s, err := r.newSession(model, ep, filepath.Join(dir, "profile"))
	if err != nil {
		return nil, err
	}
	feed, err := placementInputs(s.inputs)
	if err != nil {
		s.Close()
		return nil, err
	}
	_, runErr := s.RunValues(ctx, feed)
	provider := s.provider
	s.Close() // ORT writes the profile when the session is released
	if runErr != nil {
		return nil, fmt.Errorf("run model for placement: %w", runErr)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "profile*.json"))
	if len(files) != 1 {
		return nil, fmt.Errorf("ONNX Runtime wrote %d profile files, want 1", len(files))
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return nil, err
	}
	nodes, err := parseProfile(data)
	if err != nil {
		return nil, err
	}
	return &Placement{Provider: provider, Nodes: nodes}, nil
}

// placementInputs makes constant inputs: 0.5 for floats (not 0, which some graphs
// divide by), 0 for integers; dynamic dimensions become 1.
func placementInputs(ins []ort.InputOutputInfo) (map[string]any, error) {
	feed := make(map[string]any, len(ins))
	for _, in := range ins {
		shape := make([]int64, len(in.Dimensions))
		for i, d := range in.Dimensions {
			shape[i] = max(d, 1)
		}
		switch in.DataType {
		case ort.TensorElementDataTypeFloat:
			t := NewTensor(shape...)
			for i := range t.Data {
				t.Data[i] = 0.5
			}
			feed[in.Name] = t
		case ort.TensorElementDataTypeInt64:
			feed[in.Name] = &Int64Tensor{Shape: shape, Data: make([]int64, numel(shape))}
		default:
			return nil, fmt.Errorf("input %q is %s: placement feeds float32 and int64 inputs only", in.Name, in.DataType)
		}
	}
	return feed, nil
}

// parseProfile reads ORT's Chrome-trace profile: one "Node" event per kernel run,
// named "<node>_kernel_time", with the op type and provider in its args.
func parseProfile(data []byte) ([]PlacedNode, error) {
	var events []struct {
		Cat  string `json:"cat"`
		Name string `json:"name"`
		Args struct {
			OpName   string `json:"op_name"`
			Provider string `json:"provider"`
		} `json:"args"`
	}
	if err := json.Unmarshal(data, &events); err != nil {
		return nil, fmt.Errorf("read ONNX Runtime profile: %w", err)
	}
	seen := map[string]bool{}
	var nodes []PlacedNode
	for _, e := range events {
		name, ok := strings.CutSuffix(e.Name, "_kernel_time")
		if e.Cat != "Node" || !ok || e.Args.Provider == "" || seen[name] {
			continue
		}
		seen[name] = true
		nodes = append(nodes, PlacedNode{Name: name, OpType: e.Args.OpName, Provider: e.Args.Provider})
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("the ONNX Runtime profile lists no nodes")
	}
	return nodes, nil
}
