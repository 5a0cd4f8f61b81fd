package errand_test

// Duration options on the wire: whole milliseconds, rounded up; 0 is "the
// default"; a negative duration is the caller's error, never a wire value.

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/testkit"
)

// A negative duration fails Submit with ErrInvalidArgument naming the option
// and the value, and nothing is sent. Before the fix, WithTaskTimeout and
// WithFallbackLastGood sent it as 0 and WithQueueTimeout dropped it.
func TestNegativeSubmitDurationsFailSubmit(t *testing.T) {
	f := &fakeTools{}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	for _, tc := range []struct {
		name string
		opt  errand.SubmitOption
	}{
		{"errand.WithTaskTimeout(-1ms)", errand.WithTaskTimeout(-time.Millisecond)},
		{"errand.WithQueueTimeout(-1s)", errand.WithQueueTimeout(-time.Second)},
		{"errand.WithFallbackLastGood(-1ns)", errand.WithFallbackLastGood(-1)},
		{"errand.WithTaskTimeout(-2562047h47m16.854775808s)", errand.WithTaskTimeout(math.MinInt64)},
	} {
		_, err := c.Submit(ctx, "s", "tool", nil, errand.WithDelivery(errand.DeliveryInterrupt), tc.opt)
		if !errors.Is(err, errand.ErrInvalidArgument) || err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("Submit with %s = %v, want ErrInvalidArgument naming %s", tc.name, err, tc.name)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.submits) != 0 {
		t.Errorf("the server got %d submits, want none: %v", len(f.submits), f.submits)
	}
}

// Zero still means "the default" (0 on the wire), and the longest duration
// rounds up without overflowing.
func TestSubmitDurationsOnTheWire(t *testing.T) {
	f := &fakeTools{}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	maxMs := uint64(math.MaxInt64/int64(time.Millisecond)) + 1 // 9223372036855
	cases := []struct {
		opts []errand.SubmitOption
		want func(*pb.SubmitToolRequest) (got, want uint64)
	}{
		{[]errand.SubmitOption{errand.WithTaskTimeout(0), errand.WithQueueTimeout(0)},
			func(r *pb.SubmitToolRequest) (uint64, uint64) { return r.GetTimeoutMs() + r.GetQueueTimeoutMs(), 0 }},
		{[]errand.SubmitOption{errand.WithTaskTimeout(1500 * time.Microsecond)},
			func(r *pb.SubmitToolRequest) (uint64, uint64) { return r.GetTimeoutMs(), 2 }},
		{[]errand.SubmitOption{errand.WithTaskTimeout(math.MaxInt64)},
			func(r *pb.SubmitToolRequest) (uint64, uint64) { return r.GetTimeoutMs(), maxMs }},
		{[]errand.SubmitOption{errand.WithQueueTimeout(math.MaxInt64)},
			func(r *pb.SubmitToolRequest) (uint64, uint64) { return r.GetQueueTimeoutMs(), maxMs }},
		{[]errand.SubmitOption{errand.WithFallbackLastGood(math.MaxInt64)},
			func(r *pb.SubmitToolRequest) (uint64, uint64) { return r.GetFallback().GetLastGoodMaxAgeMs(), maxMs }},
	}
	for i, tc := range cases {
		if _, err := c.Submit(ctx, "s", "tool", nil, tc.opts...); err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, tc := range cases {
		if got, want := tc.want(f.submits[i]); got != want {
			t.Errorf("submit %d: %d ms on the wire, want %d", i, got, want)
		}
	}
}
