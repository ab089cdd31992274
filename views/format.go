package views

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Percent writes a probability in [0,1] as a percentage with one decimal.
func Percent(p float64) string {
	return strconv.FormatFloat(p*100, 'f', 1, 64) + " %"
}

// Millis writes a duration in milliseconds with a unit.
func Millis(ms float64) string {
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func itoa(n int) string { return strconv.Itoa(n) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// scoreClass marks the most probable class.
func scoreClass(i int) string {
	if i == 0 {
		return "score top"
	}
	return "score"
}

// firstPerLabel is the first sample of each label, in order.
func firstPerLabel(s []Sample) []Sample {
	var out []Sample
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x.Label] {
			seen[x.Label] = true
			out = append(out, x)
		}
	}
	return out
}

// restAfterFirst is every sample firstPerLabel leaves out.
func restAfterFirst(s []Sample) []Sample {
	var out []Sample
	seen := map[string]bool{}
	for _, x := range s {
		if seen[x.Label] {
			out = append(out, x)
		}
		seen[x.Label] = true
	}
	return out
}

// attackLink opens the explorer with a sample and the model to attack.
func attackLink(model, sample string) string {
	return "/attack?" + url.Values{"model": {model}, "sample": {sample}}.Encode()
}

// netTableNote says what an attack network's table compares it with.
func netTableNote(methods []string) string {
	if len(methods) < 2 {
		return "."
	}
	return ": the network beside " + strings.Join(methods[1:], ", ") + " at the same ε."
}

// methodAt is the i-th method's name, or "".
func methodAt(ms []string, i int) string {
	if i < len(ms) {
		return ms[i]
	}
	return ""
}
