package attacknet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"gibbon/inference"
	"gibbon/inference/attack"
	"gibbon/internal/progress"
)

// Roles of the classifiers an evaluation scores.
const (
	RoleTarget  = "target"   // trained against (white-box)
	RoleHeldOut = "held-out" // never seen in training (transfer)
	RoleRobust  = "robust"   // adversarially trained, held out (transfer)
)

// Judge is a classifier an evaluation scores.
type Judge struct {
	Name string
	Role string
	Net  *attack.ONNXModel
}

// EvalOptions configure Evaluate.
type EvalOptions struct {
	// Batch is the images per pass for every attack (default 100).
	Batch int
	// Baselines adds random ±ε noise, PGD-10 and MI-FGSM (10 steps) at each head's ε,
	// run against the target judges together (losses averaged), on the same images.
	Baselines bool
	// SpeedImages is how many images time PGD-10 against each target alone (default
	// 200; 0 with Baselines off).
	SpeedImages int
	Seed        int64
	// Layout of the images: "NCHW" (default) or "NHWC".
	Layout   string
	Progress *progress.Bar
}

// Row is one judge at one ε: success rates are the fraction of images whose
// adversarial prediction differs from the true label (−1: not run).
type Row struct {
	Model   string  `json:"model"`
	Role    string  `json:"role"`
	Eps     float64 `json:"eps"`
	Clean   float64 `json:"clean_accuracy"`
	Noise   float64 `json:"noise"`
	Network float64 `json:"attack_network"`
	PGD     float64 `json:"pgd10"`
	MIFGSM  float64 `json:"mi_fgsm10"`
}

// Speed is wall time per image, measured in the same process on the same images.
type Speed struct {
	// Network is one pass of the generator (all heads at once) plus putting one
	// head on the 8-bit grid.
	Network time.Duration `json:"network_per_image_ns"`
	// PGD and MIFGSM attack the targets together, averaged over the heads' ε.
	PGD    time.Duration `json:"pgd10_per_image_ns"`
	MIFGSM time.Duration `json:"mi_fgsm10_per_image_ns"`
	// PGDAlone is PGD-10 against each target by itself, on the first SpeedImages.
	PGDAlone map[string]time.Duration `json:"pgd10_alone_per_image_ns,omitempty"`
	Batch    int                      `json:"batch"`
}

// Result is an evaluation's outcome.
type Result struct {
	Network string     `json:"network"`
	N       int        `json:"n"`
	Eps     []float64  `json:"eps"`
	Rows    []Row      `json:"rows"`
	Speed   Speed      `json:"speed"`
	Range   [2]float32 `json:"range"`
}

// Evaluate attacks x [N, ...] (true labels given) with every head of net and, with
// Baselines, with noise, PGD-10 and MI-FGSM at the same budgets, and scores every
// judge. Judges with role RoleTarget are the attacks' surrogates.
func Evaluate(ctx context.Context, net *attack.Network, judges []Judge, x *inference.Tensor, labels []int, opts EvalOptions) (*Result, error) {
	if net == nil {
		return nil, errors.New("no attack network")
	}
	if x == nil || len(x.Shape) < 2 || x.Shape[0] < 1 || int(x.Shape[0]) != len(labels) {
		return nil, errors.New("evaluation needs a batch of images with one label each")
	}
	if len(judges) == 0 {
		return nil, errors.New("no classifiers to evaluate on")
	}
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	if l, err := inference.ParseLayout(opts.Layout); err == nil {
		opts.Layout = l
	}
	if opts.SpeedImages == 0 && opts.Baselines {
		opts.SpeedImages = 200
	}
	var req attack.Request
	var targets []Judge
	for _, j := range judges {
		if j.Role == RoleTarget {
			req.Surrogates = append(req.Surrogates, attack.Model{Name: j.Name, Net: j.Net})
			targets = append(targets, j)
		} else {
			req.Others = append(req.Others, attack.Model{Name: j.Name, Net: j.Net})
		}
	}
	if opts.Baselines && len(targets) == 0 {
		return nil, errors.New("the baselines attack the network's targets, and no judge is a target")
	}
	N, per := int(x.Shape[0]), x.Numel()/int(x.Shape[0])
	eps := net.Eps()
	K := len(eps)
	order := append(append([]attack.Model(nil), req.Surrogates...), req.Others...)
	role := map[string]string{}
	for _, j := range judges {
		role[j.Name] = j.Role
	}
	// counts[attack][head][judge]
	const (
		aNet = iota
		aNoise
		aPGD
		aMI
		nAttacks
	)
	var counts [nAttacks][][]int
	for a := range counts {
		counts[a] = make([][]int, K)
		for k := range counts[a] {
			counts[a][k] = make([]int, len(order))
		}
	}
	clean := make([]int, len(order))
	var netWall, pgdWall, miWall time.Duration
	steps := N
	if opts.Baselines {
		steps = N * (1 + 3*K)
	}
	p := opts.Progress
	p.Begin("evaluate", 0, steps)
	done := 0
	add := func(a, k int, res *attack.Result) {
		for j, m := range res.Models {
			for _, s := range m.Success {
				if s {
					counts[a][k][j]++
				}
			}
		}
	}
	for lo := 0; lo < N; lo += opts.Batch {
		hi := min(lo+opts.Batch, N)
		r := req
		r.Images = &inference.Tensor{Shape: append([]int64{int64(hi - lo)}, x.Shape[1:]...), Data: x.Data[lo*per : hi*per]}
		r.Labels = labels[lo:hi]
		cfg := attack.Config{Seed: opts.Seed + int64(lo), Range: net.Range(), Layout: opts.Layout}
		heads, err := attack.RunNetworkHeads(ctx, net, cfg, r)
		if err != nil {
			p.End()
			return nil, err
		}
		netWall += heads[0].Wall
		for k, res := range heads {
			add(aNet, k, res)
		}
		for j, m := range heads[0].Models {
			for i, c := range m.Clean {
				if c == r.Labels[i] {
					clean[j]++
				}
			}
		}
		done += hi - lo
		p.Update(done, "attack network")
		if !opts.Baselines {
			continue
		}
		for k, e := range eps {
			for _, b := range []struct {
				a      int
				method attack.Method
			}{{aNoise, attack.Noise}, {aPGD, attack.PGD}, {aMI, attack.MIFGSM}} {
				c := cfg
				c.Method, c.Eps = b.method, e
				if b.method != attack.Noise {
					c.Steps = 10
				}
				res, err := attack.Run(ctx, c, r, nil)
				if err != nil {
					p.End()
					return nil, fmt.Errorf("%s at ε %g: %w", b.method, e, err)
				}
				add(b.a, k, res)
				switch b.a {
				case aPGD:
					pgdWall += res.Wall
				case aMI:
					miWall += res.Wall
				}
				done += hi - lo
				p.Update(done, fmt.Sprintf("%s ε %s", b.method, inference.EpsOn(e, net.Range()).String()))
			}
		}
	}
	p.End()

	res := &Result{Network: net.Name(), N: N, Range: net.Range(), Speed: Speed{Batch: opts.Batch}}
	heads := net.Heads()
	res.Eps = heads
	res.Speed.Network = netWall / time.Duration(N)
	if opts.Baselines {
		res.Speed.PGD = pgdWall / time.Duration(N*K)
		res.Speed.MIFGSM = miWall / time.Duration(N*K)
	}
	rate := func(a, k, j int) float64 {
		if a != aNet && !opts.Baselines {
			return -1
		}
		return float64(counts[a][k][j]) / float64(N)
	}
	for j, m := range order {
		for k := range eps {
			res.Rows = append(res.Rows, Row{Model: m.Name, Role: role[m.Name], Eps: heads[k], Clean: float64(clean[j]) / float64(N),
				Noise: rate(aNoise, k, j), Network: rate(aNet, k, j), PGD: rate(aPGD, k, j), MIFGSM: rate(aMI, k, j)})
		}
	}

	// PGD-10 against each target alone, at the largest budget, on the first images.
	if n := min(opts.SpeedImages, N); n > 0 {
		res.Speed.PGDAlone = map[string]time.Duration{}
		e := eps[0]
		for _, v := range eps {
			e = max(e, v)
		}
		for _, t := range targets {
			var wall time.Duration
			for lo := 0; lo < n; lo += opts.Batch {
				hi := min(lo+opts.Batch, n)
				r := attack.Request{Images: &inference.Tensor{Shape: append([]int64{int64(hi - lo)}, x.Shape[1:]...), Data: x.Data[lo*per : hi*per]},
					Labels: labels[lo:hi], Surrogates: []attack.Model{{Name: t.Name, Net: t.Net}}}
				out, err := attack.Run(ctx, attack.Config{Method: attack.PGD, Eps: e, Steps: 10, Seed: opts.Seed, Range: net.Range(), Layout: opts.Layout}, r, nil)
				if err != nil {
					return nil, fmt.Errorf("timing PGD-10 on %s: %w", t.Name, err)
				}
				wall += out.Wall
			}
			res.Speed.PGDAlone[t.Name] = wall / time.Duration(n)
		}
	}
	return res, nil
}

// Markdown writes the result as two tables: success rates, then speed.
func (r *Result) Markdown(w io.Writer) {
	pct := func(v float64) string {
		if v < 0 {
			return "–"
		}
		return fmt.Sprintf("%.1f%%", 100*v)
	}
	fmt.Fprintf(w, "Attack success on the first %d MNIST test images (%% whose prediction differs from the true label; ε on [%g,%g], 8-bit quantised):\n\n", r.N, r.Range[0], r.Range[1])
	fmt.Fprintln(w, "| classifier | role | clean acc. | ε | noise ±ε | attack network | PGD-10 | MI-FGSM-10 |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|")
	for _, row := range r.Rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | **%s** | %s | %s |\n", row.Model, row.Role, pct(row.Clean),
			inference.EpsOn(float32(row.Eps), r.Range).String(), pct(row.Noise), pct(row.Network), pct(row.PGD), pct(row.MIFGSM))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Speed (wall time per image, batches of %d, same process and images):\n\n", r.Speed.Batch)
	fmt.Fprintln(w, "| attack | against | ms / image | attack network is |")
	fmt.Fprintln(w, "|---|---|---:|---:|")
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }
	ratio := func(d time.Duration) string {
		if r.Speed.Network <= 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f× faster", float64(d)/float64(r.Speed.Network))
	}
	fmt.Fprintf(w, "| attack network (one pass, all %d heads) | – | %s | – |\n", len(r.Eps), ms(r.Speed.Network))
	var targets []string
	for _, row := range r.Rows {
		if row.Role == RoleTarget && !contains(targets, row.Model) {
			targets = append(targets, row.Model)
		}
	}
	if r.Speed.PGD > 0 {
		fmt.Fprintf(w, "| PGD-10 | %s (together) | %s | %s |\n", strings.Join(targets, " + "), ms(r.Speed.PGD), ratio(r.Speed.PGD))
		fmt.Fprintf(w, "| MI-FGSM-10 | %s (together) | %s | %s |\n", strings.Join(targets, " + "), ms(r.Speed.MIFGSM), ratio(r.Speed.MIFGSM))
	}
	names := make([]string, 0, len(r.Speed.PGDAlone))
	for n := range r.Speed.PGDAlone {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "| PGD-10 | %s alone | %s | %s |\n", n, ms(r.Speed.PGDAlone[n]), ratio(r.Speed.PGDAlone[n]))
	}
}

// Metrics are the result as manifest metrics: "success_<eps>_<model>" per judge and
// head, and the speeds.
func (r *Result) Metrics() map[string]float64 {
	m := map[string]float64{}
	for _, row := range r.Rows {
		key := fmt.Sprintf("%s_%s", HeadName(row.Eps), row.Model)
		m["success_"+key] = row.Network
		if row.PGD >= 0 {
			m["pgd10_success_"+key] = row.PGD
			m["mi_fgsm10_success_"+key] = row.MIFGSM
			m["noise_success_"+key] = row.Noise
		}
	}
	m["ms_per_image"] = float64(r.Speed.Network) / 1e6
	if r.Speed.PGD > 0 {
		m["pgd10_ms_per_image"] = float64(r.Speed.PGD) / 1e6
		m["speedup_vs_pgd10"] = float64(r.Speed.PGD) / float64(r.Speed.Network)
	}
	m["eval_images"] = float64(r.N)
	return m
}

// SubsetMetrics are the attack network's success rates as manifest metrics named for
// the subset, "success_<eps>_<model>_first<N>": cheap to recompute exactly (one pass,
// no random starts), so tests check the committed network against them.
func (r *Result) SubsetMetrics() map[string]float64 {
	m := map[string]float64{}
	for _, row := range r.Rows {
		m[SubsetMetric(row.Eps, row.Model, r.N)] = row.Network
	}
	return m
}

// SubsetMetric names the success of the head of budget eps on model over the first n
// test images.
func SubsetMetric(eps float64, model string, n int) string {
	return fmt.Sprintf("success_%s_%s_first%d", HeadName(eps), model, n)
}

// CheckSubset is how many test images the subset metrics cover.
const CheckSubset = 500

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
