package train

import "testing"

// The keys gibbon eval writes (CleanMetric, PGDMetric, AutoAttackMetric) parse back
// to what was measured; other metrics, and PGD with its own step size or without a
// random start, do not.
func TestParseAccuracyMetric(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want AccuracyMetric
		ok   bool
	}{
		{CleanMetric(0), AccuracyMetric{Attack: "clean", N: 10000}, true},
		{CleanMetric(500), AccuracyMetric{Attack: "clean", N: 500}, true},
		{PGDMetric(DefaultPGD, 0), AccuracyMetric{Attack: "pgd", Steps: 40, Eps: 0.3, N: 10000}, true},
		{PGDMetric(DefaultPGD, 100), AccuracyMetric{Attack: "pgd", Steps: 40, Eps: 0.3, N: 100}, true},
		{PGDMetric(PGDConfig{Eps: 0.1, Step: 0.01, Steps: 100, RandomStart: true}, 0), AccuracyMetric{Attack: "pgd", Steps: 100, Eps: 0.1, N: 10000}, true},
		{AutoAttackMetric(0.3, 1000), AccuracyMetric{Attack: "autoattack", Eps: 0.3, N: 1000}, true},
		{AutoAttackMetric(8.0/255, 0), AccuracyMetric{Attack: "autoattack", Eps: 8.0 / 255, N: 10000}, true},
		{AutoAttackMetric(1e-5, 0), AccuracyMetric{Attack: "autoattack", Eps: 1e-5, N: 10000}, true},
		{PGDMetric(PGDConfig{Eps: 0.3, Step: 0.02, Steps: 40, RandomStart: true}, 0), AccuracyMetric{}, false},
		{PGDMetric(PGDConfig{Eps: 0.3, Step: 0.01, Steps: 40}, 0), AccuracyMetric{}, false},
		{"success_eps0.3_mnist-mlp", AccuracyMetric{}, false},
		{"clean_accuracy_first0", AccuracyMetric{}, false},
		{"autoattack_eps0_accuracy", AccuracyMetric{}, false},
		{"clean_accuracy_extra", AccuracyMetric{}, false},
	} {
		got, ok := ParseAccuracyMetric(tc.key)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: got %+v %v, want %+v %v", tc.key, got, ok, tc.want, tc.ok)
		}
	}
}
