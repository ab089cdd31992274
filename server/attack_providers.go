package server

import "gibbon/inference"

// Where models run. A provider that did not start has already fallen back (with
// one warning in the log), so the sessions' providers are the ones in use; the
// page shows them on /models and with every frame's timing.

// providerNet is what ONNX-backed nets tell about their sessions (attack.ONNXModel).
type providerNet interface {
	Providers() (forward, gradient string)
}

// netProviders is what ONNXAttackNets tells about the models it adapted so far.
type netProviders interface {
	Providers(model string) (forward, gradient string, ok bool)
}

// modelProvider is one model pass and the execution provider it runs on.
type modelProvider struct {
	Model string `json:"model"`
	// Pass is "gradient" (the attack's steps), "forward" (predictions) or
	// "network" (an attack network's one pass).
	Pass string `json:"pass"`
	EP   string `json:"ep"`
}

// providerLabel is how pages name a provider.
func providerLabel(ep string) string {
	switch ep {
	case inference.EPCPU:
		return "CPU"
	case inference.EPCUDA:
		return "CUDA"
	case inference.EPWebGPU:
		return "WebGPU"
	case "":
		return "not started"
	}
	return ep
}

// netEPs are a net's forward and gradient providers, "" where it does not say.
func netEPs(n any) (forward, gradient string) {
	if p, ok := n.(providerNet); ok {
		return p.Providers()
	}
	return "", ""
}

// Providers says where an adapted model's sessions run; ok is false for a model
// the explorer has not adapted yet (gradient is "" until an attack built it).
func (a *ONNXAttackNets) Providers(model string) (forward, gradient string, ok bool) {
	a.mu.Lock()
	slot := a.nets[model]
	a.mu.Unlock()
	if slot == nil {
		return "", "", false
	}
	// TryLock: a model being adapted right now is reported as not adapted yet
	// rather than holding up the page.
	if !slot.mu.TryLock() {
		return "", "", false
	}
	defer slot.mu.Unlock()
	if slot.net == nil {
		return "", "", false
	}
	f, g := slot.net.Providers()
	return f, g, true
}

// providers lists where a run's passes run: the attacked models' gradient graphs
// (forward sessions for black-box attacks), or the attack network, then each
// watched classifier's forward session. A model appears once per pass.
func (r *run) providers() []modelProvider {
	p := r.plan
	var out []modelProvider
	seen := map[modelProvider]bool{}
	add := func(mp modelProvider) {
		if mp.EP != "" && !seen[mp] {
			seen[mp] = true
			out = append(out, mp)
		}
	}
	if p.network != nil {
		if s := p.network.Session(); s != nil {
			add(modelProvider{Model: p.network.Name, Pass: "network", EP: s.Provider()})
		}
	}
	for i, m := range p.surrogates {
		if i >= len(r.surNets) {
			break
		}
		fwd, grad := netEPs(r.surNets[i])
		if p.method.BlackBox() {
			add(modelProvider{Model: m.Name, Pass: "forward", EP: fwd})
		} else {
			add(modelProvider{Model: m.Name, Pass: "gradient", EP: grad})
		}
	}
	for _, d := range r.defs {
		fwd, _ := netEPs(d.base)
		add(modelProvider{Model: d.plan.model.Name, Pass: "forward", EP: fwd})
	}
	return out
}
