package imagenet

import "testing"

func TestLabelsAreTheImageNetOrder(t *testing.T) {
	l := Labels()
	if len(l) != NumClasses {
		t.Fatalf("%d labels, want %d", len(l), NumClasses)
	}
	// Spot checks against the source list's numbering.
	for i, want := range map[int]string{0: "tench", 1: "goldfish", 207: "golden retriever", 281: "tabby",
		368: "gibbon", 611: "jigsaw puzzle", 950: "orange", 999: "toilet tissue"} {
		if l[i] != want {
			t.Errorf("label %d = %q, want %q", i, l[i], want)
		}
	}
	for i, s := range l {
		if s == "" || s != trim(s) {
			t.Errorf("label %d %q is empty or padded", i, s)
		}
	}
}

func trim(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == '\r') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}
