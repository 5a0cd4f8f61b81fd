package backoff

import (
	"testing"
	"time"
)

func TestGrowsWithinBoundsAndResets(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	ceil := b.Min
	for i := 0; i < 10; i++ {
		d := b.Next()
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: %v outside [%v, %v]", i, d, ceil/2, ceil)
		}
		if ceil = 2 * ceil; ceil > b.Max {
			ceil = b.Max
		}
	}
	b.Reset()
	if d := b.Next(); d > b.Min {
		t.Errorf("after Reset: %v > Min", d)
	}
}
