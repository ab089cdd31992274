package queue

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"gibbon/inference"
	"gibbon/inference/engine"
	"gibbon/inference/sweep"
)

// ModelRef is a model a job needs or a worker has: its name and its file's
// SHA-256 (lower-case hex). A job's SHA256 is "" for a model the web node does
// not know: a worker's model of that name will do.
type ModelRef struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	// Provider is where a worker runs the model ("cpu", "cuda"); adverts only.
	Provider string `json:"provider,omitempty"`
}

// ModelIndex finds models' manifest entries by name: the web node's zoo.
type ModelIndex interface {
	Entry(name string) (inference.ModelEntry, bool)
}

// Needs lists the models plan involves — the attacked ones or the attack
// network, then the defences' — once each, with the checksums idx has for them.
func Needs(plan engine.Plan, idx ModelIndex) []ModelRef {
	names := append([]string(nil), plan.Models...)
	if n := plan.Network(); n != "" {
		names = append(names, n)
	}
	for _, d := range plan.Defences {
		names = append(names, d.Model)
	}
	return refs(names, idx)
}

// SweepNeeds lists the models a sweep's or matrix's plan uses (attacked ones and
// networks first) with the checksums idx has for them.
func SweepNeeds(plan *sweep.Plan, idx ModelIndex) []ModelRef {
	names := make([]string, len(plan.Models))
	for i, m := range plan.Models {
		names[i] = m.Name
	}
	return refs(names, idx)
}

// refs are names once each, with the checksums idx has for them.
func refs(names []string, idx ModelIndex) []ModelRef {
	var out []ModelRef
	for _, n := range names {
		if slices.ContainsFunc(out, func(r ModelRef) bool { return r.Name == n }) {
			continue
		}
		r := ModelRef{Name: n}
		if e, ok := idx.Entry(n); ok {
			r.SHA256 = strings.ToLower(e.SHA256)
		}
		out = append(out, r)
	}
	return out
}

// setID names a set of models: the first 16 hex digits of SHA-256 over the
// sorted "name sha256" lines. It is a subject token and part of a stream name.
func setID(models []ModelRef) string {
	lines := make([]string, len(models))
	for i, m := range models {
		lines[i] = m.Name + " " + strings.ToLower(m.SHA256) + "\n"
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "")))
	return hex.EncodeToString(sum[:8])
}

// Advert is what a worker says of itself in the gibbon_workers bucket.
type Advert struct {
	Worker      string     `json:"worker"`
	Host        string     `json:"host"`
	Set         string     `json:"set"`
	Provider    string     `json:"provider"`
	Concurrency int        `json:"concurrency"`
	Models      []ModelRef `json:"models"`
	Version     string     `json:"version"`
}

// missing is the first of need the advert's worker lacks ("" when it has all).
func (a Advert) missing(need []ModelRef) string {
	for _, n := range need {
		has := slices.ContainsFunc(a.Models, func(m ModelRef) bool {
			return m.Name == n.Name && (n.SHA256 == "" || strings.EqualFold(m.SHA256, n.SHA256))
		})
		if !has {
			return n.Name
		}
	}
	return ""
}

// workerSet is the live workers of one model set.
type workerSet struct {
	id       string
	capacity int // job slots, summed over the workers
	workers  []string
}

// candidates are the sets whose workers have every model of need, largest first;
// when there are none, the error says which model no worker has.
func candidates(ads []Advert, need []ModelRef) ([]workerSet, error) {
	by := map[string]*workerSet{}
	lack := map[string]int{}
	for _, a := range ads {
		if m := a.missing(need); m != "" {
			lack[m]++
			continue
		}
		s := by[a.Set]
		if s == nil {
			s = &workerSet{id: a.Set}
			by[a.Set] = s
		}
		s.capacity += max(1, a.Concurrency)
		s.workers = append(s.workers, a.Worker)
	}
	if len(by) == 0 {
		return nil, noWorkerError(ads, need, lack)
	}
	var out []workerSet
	for _, s := range by {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b workerSet) int { return cmp.Or(b.capacity-a.capacity, strings.Compare(a.id, b.id)) })
	return out, nil
}

// noWorkerError says why no worker can take a run: none is running, or none has
// one of its models (the one most workers lack).
func noWorkerError(ads []Advert, need []ModelRef, lack map[string]int) error {
	if len(ads) == 0 {
		return fmt.Errorf("no worker is running: start one with gibbon worker --nats URL")
	}
	var name string
	for _, n := range need {
		if lack[n.Name] > lack[name] {
			name = n.Name
		}
	}
	sha := ""
	for _, n := range need {
		if n.Name == name && n.SHA256 != "" {
			sha = " (sha256 " + n.SHA256[:min(12, len(n.SHA256))] + "…)"
		}
	}
	return fmt.Errorf("none of the %d workers has model %s%s: start a worker with it (gibbon worker --models DIR)", len(ads), name, sha)
}
