package inference

// ForgetProviderState lets tests see a provider's first fallback (and its one
// warning) again in a process whose shared runtime already gave the provider up.
func ForgetProviderState(r *Runtime, ep string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.eps, ep)
}

// SoftwareGPUOnly exposes the auto rule's device check to tests.
func SoftwareGPUOnly() bool { return softwareGPUOnly() }
