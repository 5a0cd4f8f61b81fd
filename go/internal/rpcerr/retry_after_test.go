package rpcerr

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/errand-dev/errand/go/internal/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// refused is a failure as grpc-go returns it, with the trailer the server
// sent kept beside it (as the interceptors keep it).
func refused(code codes.Code, kv ...string) error {
	return WithTrailer(status.Error(code, "your tenant calls faster than 4 requests per second: retry in 1500 ms"),
		metadata.Pairs(kv...))
}

// A server's retry-after-ms is the wait, within bounds (as the Python SDK's
// errand._retry.retry_after reads it): a whole positive number of
// milliseconds on a RESOURCE_EXHAUSTED, at most MaxRetryAfter.
func TestRetryAfterIsTheServersWithinBounds(t *testing.T) {
	exhausted := codes.ResourceExhausted
	for _, tc := range []struct {
		err  error
		want time.Duration
	}{
		{refused(exhausted, "retry-after-ms", "1500"), 1500 * time.Millisecond},
		{refused(exhausted, "retry-after-ms", "1", "retry-after", "1"), time.Millisecond},
		{refused(exhausted, "retry-after-ms", "99999999"), MaxRetryAfter},
		{refused(exhausted, "retry-after-ms", "99999999999999999999999"), MaxRetryAfter},
		{refused(exhausted, "retry-after-ms", ""), 0},
		{refused(exhausted, "retry-after-ms", "soon"), 0},
		{refused(exhausted, "retry-after-ms", "-5"), 0},
		{refused(exhausted, "retry-after-ms", "+5"), 0},
		{refused(exhausted, "retry-after-ms", "0"), 0},
		{refused(exhausted, "retry-after-ms", "1.5"), 0},
		{refused(exhausted, "retry-after", "2"), 0}, // milliseconds only
		{refused(exhausted), 0},                     // a limit of streams or workers: no trailer
		{refused(codes.Unavailable, "retry-after-ms", "5"), 0},
		{status.Error(exhausted, "no trailer kept"), 0},
		{errors.New("not a status"), 0},
		{nil, 0},
	} {
		if got := RetryAfter(tc.err); got != tc.want {
			t.Errorf("RetryAfter(%v with %v) = %v, want %v", tc.err, trailerOf(tc.err), got, tc.want)
		}
	}
}

func trailerOf(err error) metadata.MD {
	var tr *trailered
	if errors.As(err, &tr) {
		return tr.md
	}
	return nil
}

// The trailer kept changes nothing else: the status, its text, errors.Is
// with the status error, Transient.
func TestWithTrailerKeepsTheStatus(t *testing.T) {
	plain := status.Error(codes.ResourceExhausted, "retry in 5 ms")
	err := WithTrailer(plain, metadata.Pairs("retry-after-ms", "5"))
	if err.Error() != plain.Error() || !errors.Is(err, plain) || status.Code(err) != codes.ResourceExhausted ||
		status.Convert(err).Message() != "retry in 5 ms" || !Transient(err) {
		t.Errorf("WithTrailer(%v) = %v: the status changed", plain, err)
	}
	if WithTrailer(plain, nil) != plain || WithTrailer(nil, metadata.Pairs("retry-after-ms", "5")) != nil {
		t.Error("WithTrailer without a trailer (or an error) should return the error as it is")
	}
}

// Wrap gives the *Error the server's wait, and RetryAfter reads it back
// through any wrapping.
func TestWrapKeepsTheWait(t *testing.T) {
	var e *Error
	err := Wrap("SubmitTool", refused(codes.ResourceExhausted, "retry-after-ms", "250"))
	if !errors.As(err, &e) || e.RetryAfter != 250*time.Millisecond {
		t.Fatalf("Wrap = %#v, want RetryAfter 250ms", err)
	}
	if !errors.Is(err, ErrResourceExhausted) || e.Message != "your tenant calls faster than 4 requests per second: retry in 1500 ms" {
		t.Errorf("Wrap = %v: the code or message changed", err)
	}
	if got := RetryAfter(fmt.Errorf("outer: %w", err)); got != 250*time.Millisecond {
		t.Errorf("RetryAfter(wrapped *Error) = %v, want 250ms", got)
	}
	if e := Wrap("SubmitTool", status.Error(codes.ResourceExhausted, "too many pending tasks")).(*Error); e.RetryAfter != 0 {
		t.Errorf("a RESOURCE_EXHAUSTED without the trailer: RetryAfter = %v, want 0", e.RetryAfter)
	}
}

// Pause is the server's wait when it asked for one (the backoff does not
// grow), else the backoff's.
func TestPauseIsTheServersWaitElseTheBackoffs(t *testing.T) {
	b := backoff.Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}
	if got := Pause(refused(codes.ResourceExhausted, "retry-after-ms", "700"), &b); got != 700*time.Millisecond {
		t.Errorf("Pause(asked 700 ms) = %v", got)
	}
	if got := b.Next(); got > b.Min {
		t.Errorf("after the server's wait, the backoff's next delay is %v, want its first (at most %v)", got, b.Min)
	}
	b.Reset()
	for _, err := range []error{refused(codes.ResourceExhausted), refused(codes.Unavailable, "retry-after-ms", "700"), nil} {
		if got := Pause(err, &b); got > b.Max {
			t.Errorf("Pause(%v) = %v, want the backoff's (at most %v)", err, got, b.Max)
		}
	}
}
