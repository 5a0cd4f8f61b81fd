// Package rpcerr holds the error type shared by package errand and package
// worker; both re-export or return it. See errand.Error for the documentation.
package rpcerr

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors, one per gRPC status code a caller is expected to handle.
// Every error returned by a Client or a worker that came from the server is an
// *Error; test it with errors.Is against these, or with status.Code.
//
//	if _, err := c.Submit(ctx, "s1", "nope", nil); errors.Is(err, errand.ErrNotFound) { ... }
var (
	// ErrInvalidArgument: the request was malformed (empty session ID,
	// arguments that are not a JSON object or fail the tool's schema, ...).
	ErrInvalidArgument = errors.New("errand: invalid argument")
	// ErrNotFound: unknown tool, or a task ID that is unknown or no longer retained.
	ErrNotFound = errors.New("errand: not found")
	// ErrResourceExhausted: arguments too large, or too many pending tasks in a session.
	ErrResourceExhausted = errors.New("errand: resource exhausted")
	// ErrFailedPrecondition: e.g. cancelling a task that already finished.
	ErrFailedPrecondition = errors.New("errand: failed precondition")
	// ErrUnauthenticated: missing or invalid credentials.
	ErrUnauthenticated = errors.New("errand: unauthenticated")
	// ErrPermissionDenied: the credentials do not allow this call.
	ErrPermissionDenied = errors.New("errand: permission denied")
	// ErrUnavailable: the server could not be reached.
	ErrUnavailable = errors.New("errand: unavailable")
	// ErrInternal: the server failed; the message says how.
	ErrInternal = errors.New("errand: internal error")
	// ErrOutOfRange: an acknowledgement beyond the session's last seq, or a
	// ReadResult offset past the end of the result.
	ErrOutOfRange = errors.New("errand: out of range")
	// ErrUnimplemented: the server is older than the call (it lacks the RPC).
	ErrUnimplemented = errors.New("errand: unimplemented")
)

var sentinels = map[codes.Code]error{
	codes.InvalidArgument:    ErrInvalidArgument,
	codes.NotFound:           ErrNotFound,
	codes.ResourceExhausted:  ErrResourceExhausted,
	codes.FailedPrecondition: ErrFailedPrecondition,
	codes.Unauthenticated:    ErrUnauthenticated,
	codes.PermissionDenied:   ErrPermissionDenied,
	codes.Unavailable:        ErrUnavailable,
	codes.Internal:           ErrInternal,
	codes.OutOfRange:         ErrOutOfRange,
	codes.Unimplemented:      ErrUnimplemented,
}

// Error is a failed call: which RPC, and the gRPC status the server (or the
// gRPC runtime) answered with.
//
// errors.Is(err, ErrNotFound) and the like match on the status code;
// errors.Is(err, context.DeadlineExceeded) and context.Canceled match the
// corresponding codes; status.Code(err) and status.FromError(err) see the
// original status.
type Error struct {
	// Op is the RPC, e.g. "SubmitTool".
	Op string
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the server's explanation, meant to say what to fix.
	Message string

	status *status.Status
}

func (e *Error) Error() string {
	return fmt.Sprintf("errand: %s: %s: %s", e.Op, codeText(e.Code), e.Message)
}

// GRPCStatus lets status.Code and status.FromError see the original status.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Is reports whether target is the sentinel for e's code (or the context
// error for DeadlineExceeded and Canceled).
func (e *Error) Is(target error) bool {
	switch e.Code {
	case codes.DeadlineExceeded:
		return target == context.DeadlineExceeded
	case codes.Canceled:
		return target == context.Canceled
	}
	s, ok := sentinels[e.Code]
	return ok && s == target
}

// Wrap turns an error from a generated stub into an *Error. Errors that
// carry no gRPC status (which the stubs never return) are wrapped as they are.
func Wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("errand: %s: %w", op, err)
	}
	return &Error{Op: op, Code: st.Code(), Message: st.Message(), status: st}
}

func codeText(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "invalid argument"
	case codes.NotFound:
		return "not found"
	case codes.ResourceExhausted:
		return "resource exhausted"
	case codes.FailedPrecondition:
		return "failed precondition"
	case codes.Unauthenticated:
		return "unauthenticated"
	case codes.PermissionDenied:
		return "permission denied"
	case codes.Unavailable:
		return "unavailable"
	case codes.DeadlineExceeded:
		return "deadline exceeded"
	case codes.Canceled:
		return "canceled"
	default:
		return c.String()
	}
}

// Transient reports whether a stream that failed with err is worth opening
// again: the server went away or restarted, or the connection broke. Errors a
// caller must fix (bad arguments, credentials, unknown RPC) are not transient.
func Transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Unknown, codes.Internal, codes.Aborted,
		codes.ResourceExhausted, codes.DeadlineExceeded:
		return true
	}
	return false
}
