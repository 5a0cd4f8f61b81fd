package millis

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/errand-dev/errand/go/internal/rpcerr"
)

func TestRoundUp(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want uint64
	}{
		{0, 0},
		{1, 1},
		{time.Millisecond, 1},
		{time.Millisecond + 1, 2},
		{time.Minute, 60000},
		{math.MaxInt64, 9223372036855},
	} {
		if got, err := RoundUp("WithX", tc.d); got != tc.want || err != nil {
			t.Errorf("RoundUp(%v) = %d, %v; want %d, nil", tc.d, got, err, tc.want)
		}
	}
	for _, d := range []time.Duration{-1, -time.Second, math.MinInt64} {
		got, err := RoundUp("pkg.WithX", d)
		if got != 0 || !errors.Is(err, rpcerr.ErrInvalidArgument) || !strings.Contains(err.Error(), "pkg.WithX("+d.String()+")") {
			t.Errorf("RoundUp(%v) = %d, %v; want 0 and ErrInvalidArgument naming pkg.WithX(%v)", d, got, err, d)
		}
	}
}
