package server

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"gibbon/inference/zoo"
	"gibbon/views"
)

// An attack network's manifest measures its success, and its baselines', on
// every classifier at every ε head: METHOD_success_epsE_MODEL[_firstN] (no method:
// the network itself). The models page shows them as tables, not 79 facts.
var netMetric = regexp.MustCompile(`^(?:(noise|pgd10|mi_fgsm10)_)?success_eps([0-9.]+)_(.+?)(?:_first([0-9]+))?$`)

// netMethods are a table cell's lines, in order: the network first.
var netMethods = []struct{ key, label string }{{"", "network"}, {"pgd10", "PGD-10"}, {"mi_fgsm10", "MI-FGSM-10"}, {"noise", "noise ±ε"}}

// netTables turns an attack network's success metrics into tables (all images,
// then each "first N" subset) and returns the metrics left over.
func (s *Server) netTables(m *zoo.Model) ([]views.NetTable, map[string]float64) {
	rest := map[string]float64{}
	type key struct{ subset, eps, model, method string }
	vals := map[key]float64{}
	var subsets, epses, models []string
	add := func(list *[]string, v string) {
		if !slices.Contains(*list, v) {
			*list = append(*list, v)
		}
	}
	for k, v := range m.Metrics {
		p := netMetric.FindStringSubmatch(k)
		if p == nil {
			rest[k] = v
			continue
		}
		vals[key{p[4], p[2], p[3], p[1]}] = v
		add(&subsets, p[4])
		add(&epses, p[2])
		add(&models, p[3])
	}
	if len(vals) == 0 {
		return nil, rest
	}
	num := func(a, b string) int {
		x, _ := strconv.ParseFloat(a, 64)
		y, _ := strconv.ParseFloat(b, 64)
		return int(x*1e6) - int(y*1e6)
	}
	slices.SortFunc(subsets, num) // "" (all images) first
	slices.SortFunc(epses, num)
	models = s.classifierOrder(models)
	var tables []views.NetTable
	for _, sub := range subsets {
		t := views.NetTable{Caption: "Success on all the images it was evaluated on", Methods: []string{}}
		if sub != "" {
			t.Caption = fmt.Sprintf("Success on the first %s images", sub)
		}
		for _, e := range epses {
			v, _ := strconv.ParseFloat(e, 64)
			t.Eps = append(t.Eps, fmt.Sprintf("ε %s (%.1f/255)", e, v*255))
		}
		for _, me := range netMethods {
			for _, e := range epses {
				if _, ok := vals[key{sub, e, models[0], me.key}]; ok {
					t.Methods = append(t.Methods, me.label)
					break
				}
			}
		}
		for _, name := range models {
			row := views.NetRow{Model: name, Role: s.netRole(m, name)}
			for _, e := range epses {
				var cell []string
				for _, me := range netMethods {
					if !slices.Contains(t.Methods, me.label) {
						continue
					}
					text := "—"
					if v, ok := vals[key{sub, e, name, me.key}]; ok {
						text = fmt.Sprintf("%.1f %%", 100*v)
					}
					cell = append(cell, text)
				}
				row.Cells = append(row.Cells, cell)
			}
			t.Rows = append(t.Rows, row)
		}
		tables = append(tables, t)
	}
	return tables, rest
}

// netRole says what a classifier was to an attack network.
func (s *Server) netRole(net *zoo.Model, name string) string {
	if net.Attack != nil && slices.Contains(net.Attack.Targets, name) {
		return "trained against"
	}
	if c, ok := s.models.Classifier(name); ok && c.Robust {
		return "adversarially trained, held out"
	}
	return "held out"
}

// classifierOrder sorts names as the zoo lists its classifiers (unknown ones last).
func (s *Server) classifierOrder(names []string) []string {
	rank := map[string]int{}
	for i, c := range s.models.Classifiers() {
		rank[c.Name] = i + 1
	}
	slices.SortStableFunc(names, func(a, b string) int {
		ra, rb := rank[a], rank[b]
		if ra == 0 {
			ra = 1 << 30
		}
		if rb == 0 {
			rb = 1 << 30
		}
		if ra != rb {
			return ra - rb
		}
		if a < b {
			return -1
		}
		return 1
	})
	return names
}
