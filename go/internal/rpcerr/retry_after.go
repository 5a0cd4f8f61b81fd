package rpcerr

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/errand-dev/errand/go/internal/backoff"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// MaxRetryAfter is the longest wait a server's retry-after-ms is followed
// for: a minute, the period of its longest budget (failed authentications
// per minute); a larger value (a server's mistake, a proxy's) would stall a
// stream unseen. The Python SDK's errand._retry.MAX_RETRY_AFTER is the same.
const MaxRetryAfter = time.Minute

// retryAfterKey is the trailer in which errand's server says, with a
// RESOURCE_EXHAUSTED for a rate limit (--requests-per-second-per-tenant),
// how many milliseconds to wait before the next call. (It also sends
// retry-after, in whole seconds, rounded up: too coarse to follow.)
const retryAfterKey = "retry-after-ms"

// trailered is a failed call's status error with the trailer metadata the
// server sent with it, which a status error does not carry. It is the
// status error in every other way: its text, GRPCStatus (status.Code and
// status.FromError see the status as it is) and errors.Is (Unwrap).
type trailered struct {
	err error
	md  metadata.MD
}

func (t *trailered) Error() string              { return t.err.Error() }
func (t *trailered) Unwrap() error              { return t.err }
func (t *trailered) GRPCStatus() *status.Status { return status.Convert(t.err) }

// WithTrailer returns err, a call's status error, with md, the trailer
// metadata the server sent with it, for RetryAfter to read. Only a
// RESOURCE_EXHAUSTED whose trailer says retry-after-ms is given it: any
// other err is returned as it is.
func WithTrailer(err error, md metadata.MD) error {
	if err == nil || status.Code(err) != codes.ResourceExhausted || len(md.Get(retryAfterKey)) == 0 {
		return err
	}
	return &trailered{err: err, md: md}
}

// RetryAfter is the wait the server asked for with err before the next
// call: a RESOURCE_EXHAUSTED (a rate limit) whose trailer, kept by
// WithTrailer (or read into an *Error's RetryAfter by Wrap), has
// retry-after-ms, a whole positive number of milliseconds, at most
// MaxRetryAfter. 0 for any other err: another code, no such trailer (a limit
// of streams or of connected workers), or a value that is not such a
// number.
func RetryAfter(err error) time.Duration {
	if e := (*Error)(nil); errors.As(err, &e) {
		if e.Code != codes.ResourceExhausted {
			return 0
		}
		return e.RetryAfter
	}
	var t *trailered
	if !errors.As(err, &t) || status.Code(t) != codes.ResourceExhausted {
		return 0
	}
	values := t.md.Get(retryAfterKey)
	if len(values) == 0 {
		return 0
	}
	text := values[0]
	if text == "" {
		return 0
	}
	for _, r := range text {
		if r < '0' || r > '9' {
			return 0 // "-5", "+5", "1.5", "soon"
		}
	}
	ms, err := strconv.ParseUint(text, 10, 64) // digits only: fails only out of range
	switch {
	case err != nil || ms >= uint64(MaxRetryAfter/time.Millisecond):
		return MaxRetryAfter
	case ms == 0:
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// Pause is the wait before a stream that failed with err is opened again:
// the server's RetryAfter when it asked for one, else b's next delay (b does
// not grow for a wait the server asked). The Python SDK's errand._retry.pause.
func Pause(err error, b *backoff.Backoff) time.Duration {
	if d := RetryAfter(err); d > 0 {
		return d
	}
	return b.Next()
}

// UnaryInterceptor keeps, with a call's failure, the trailer the server
// sent with it (WithTrailer), so that Wrap gives the *Error its RetryAfter.
func UnaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var md metadata.MD
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Trailer(&md))...)
	return WithTrailer(err, md)
}

// StreamInterceptor keeps, with a stream's failure (as Recv returns it), the
// trailer the server ended the stream with (WithTrailer), so that a stream
// opened again waits as long as the server asked (Pause).
func StreamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &trailerStream{ClientStream: cs}, nil
}

type trailerStream struct{ grpc.ClientStream }

// RecvMsg: once it has failed, the stream's trailer is there to read.
func (s *trailerStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && status.Code(err) == codes.ResourceExhausted {
		return WithTrailer(err, s.ClientStream.Trailer())
	}
	return err
}
