package public

import (
	"maps"
	"slices"
	"testing"
)

// TestCataloguesComplete: every language has every string English has and
// no other, so no reader sees a catalogue key instead of a sentence.
func TestCataloguesComplete(t *testing.T) {
	want := slices.Sorted(maps.Keys(catalogs[0].strings))
	for _, c := range catalogs[1:] {
		if got := slices.Sorted(maps.Keys(c.strings)); !slices.Equal(got, want) {
			t.Errorf("%s has keys %v\nwant %v", c.tag, got, want)
		}
	}
	if len(catalogs) < 2 {
		t.Errorf("%d catalogues, want English and Spanish at least", len(catalogs))
	}
}
