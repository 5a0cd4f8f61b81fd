package errand

import (
	"github.com/errand-dev/errand/go/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// Error is a failed call: which RPC (Op), the gRPC status code (Code) and the
// server's message, which says what to fix.
//
// errors.Is(err, ErrNotFound) and the other sentinels match on the code;
// errors.Is(err, context.DeadlineExceeded) and context.Canceled match those
// codes too; status.Code(err) and status.FromError(err) see the original
// gRPC status.
//
// RetryAfter is the wait the server asked for before the call is made
// again: with a RESOURCE_EXHAUSTED for its tenant rate limit (errand serve
// --requests-per-second-per-tenant), the server's retry-after-ms, at most a
// minute; 0 when the server asked for no particular wait (another code, or
// another limit: too many pending tasks in a session, say). A call (Submit,
// GetTask, ...) is not retried by the SDK, so honour it yourself:
//
//	var e *errand.Error
//	if errors.As(err, &e) && e.RetryAfter > 0 {
//		time.Sleep(e.RetryAfter) // then make the call again
//	}
//
// Completions and SessionEvents (and an Inbox) and a worker's Run, which
// reconnect by themselves, wait that long before they do.
//
// The errors the SDK raises itself, without asking the server (arguments
// that are not JSON, a negative duration, a Dial option it cannot use, ...),
// are not *Error but wrap a sentinel: errors.Is matches it, and status.Code
// gives its code (codes.InvalidArgument for ErrInvalidArgument, ...), as
// for an *Error.
type Error = rpcerr.Error

// Sentinel errors, one per gRPC status code a caller is expected to handle.
// Every error that came from the server is an *Error; test it with errors.Is
// against these, or with status.Code:
//
//	if _, err := c.Submit(ctx, "s1", "nope", nil); errors.Is(err, errand.ErrNotFound) { ... }
var (
	// ErrInvalidArgument: the request was malformed (empty session ID,
	// arguments that are not a JSON object or fail the tool's schema, a task
	// ID that is empty or not a UUID, ...).
	ErrInvalidArgument = rpcerr.ErrInvalidArgument
	// ErrNotFound: unknown tool, or a task ID (a UUID) that is unknown or no
	// longer retained; one that is not a UUID gives ErrInvalidArgument.
	ErrNotFound = rpcerr.ErrNotFound
	// ErrResourceExhausted: arguments too large, or too many pending tasks in
	// a session, or a rate limit (worth retrying later: after the wait
	// Error.RetryAfter gives); or a message from
	// the server larger than the client's WithMaxRecvBytes, which retrying
	// cannot help (the message names the sizes and the option).
	ErrResourceExhausted = rpcerr.ErrResourceExhausted
	// ErrFailedPrecondition: e.g. cancelling a task that already finished.
	ErrFailedPrecondition = rpcerr.ErrFailedPrecondition
	// ErrUnauthenticated: missing or invalid credentials.
	ErrUnauthenticated = rpcerr.ErrUnauthenticated
	// ErrPermissionDenied: the credentials do not allow this call.
	ErrPermissionDenied = rpcerr.ErrPermissionDenied
	// ErrUnavailable: the server could not be reached.
	ErrUnavailable = rpcerr.ErrUnavailable
	// ErrInternal: the server failed; the message says how.
	ErrInternal = rpcerr.ErrInternal
	// ErrOutOfRange: an acknowledgement or an afterSeq beyond the session's
	// last seq, or a ReadResult offset past the end of the result.
	ErrOutOfRange = rpcerr.ErrOutOfRange
	// ErrUnimplemented: the server predates the call (SessionEvents,
	// PendingDigest and ReadResult need a server with issue 17's contract).
	ErrUnimplemented = rpcerr.ErrUnimplemented
)

// ErrResultNotInline: a successful completion whose result is not on it,
// because it exceeded the result budget (Completion.ResultTruncated) or the
// stream left it off (WithResultsByReference). Client.CompletionResult and
// Client.ReadFullResult fetch it. Not a server error; it matches
// ErrFailedPrecondition too, and status.Code gives codes.FailedPrecondition.
var ErrResultNotInline = rpcerr.Sentinel(codes.FailedPrecondition, "errand: the result is not inline; read it with ReadResult")
