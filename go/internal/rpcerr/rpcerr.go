// Package rpcerr holds the error type shared by package errand and package
// worker; both re-export or return it. See errand.Error for the documentation.
package rpcerr

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors, one per gRPC status code a caller is expected to handle.
// Every error returned by a Client or a worker that came from the server is an
// *Error; test it with errors.Is against these, or with status.Code. The
// errors the SDK raises itself wrap one of these (or a sentinel of its own
// made by Sentinel), so status.Code gives them its code too.
//
//	if _, err := c.Submit(ctx, "s1", "nope", nil); errors.Is(err, errand.ErrNotFound) { ... }
var (
	// ErrInvalidArgument: the request was malformed (empty session ID,
	// arguments that are not a JSON object or fail the tool's schema, a task
	// ID that is empty or not a UUID, ...).
	ErrInvalidArgument = codeSentinel(codes.InvalidArgument, "errand: invalid argument")
	// ErrNotFound: unknown tool, or a task ID (a UUID) that is unknown or no
	// longer retained; one that is not a UUID gives ErrInvalidArgument.
	ErrNotFound = codeSentinel(codes.NotFound, "errand: not found")
	// ErrResourceExhausted: arguments too large, or too many pending tasks in
	// a session, or a rate limit (worth retrying later: after the wait
	// Error.RetryAfter gives); or a message from
	// the server larger than the client's errand.WithMaxRecvBytes, which
	// retrying cannot help (the message names the sizes and the option).
	ErrResourceExhausted = codeSentinel(codes.ResourceExhausted, "errand: resource exhausted")
	// ErrFailedPrecondition: e.g. cancelling a task that already finished.
	ErrFailedPrecondition = codeSentinel(codes.FailedPrecondition, "errand: failed precondition")
	// ErrUnauthenticated: missing or invalid credentials.
	ErrUnauthenticated = codeSentinel(codes.Unauthenticated, "errand: unauthenticated")
	// ErrPermissionDenied: the credentials do not allow this call.
	ErrPermissionDenied = codeSentinel(codes.PermissionDenied, "errand: permission denied")
	// ErrUnavailable: the server could not be reached.
	ErrUnavailable = codeSentinel(codes.Unavailable, "errand: unavailable")
	// ErrInternal: the server failed; the message says how.
	ErrInternal = codeSentinel(codes.Internal, "errand: internal error")
	// ErrOutOfRange: an acknowledgement beyond the session's last seq, or a
	// ReadResult offset past the end of the result.
	ErrOutOfRange = codeSentinel(codes.OutOfRange, "errand: out of range")
	// ErrUnimplemented: the server is older than the call (it lacks the RPC).
	ErrUnimplemented = codeSentinel(codes.Unimplemented, "errand: unimplemented")
)

// sentinel is an error the SDK raises itself, or wraps in one it raises
// ("... (errand: invalid argument)"): status.Code and status.FromError find
// it in the chain (grpc-go looks for GRPCStatus with errors.As) and give its
// code, and the whole error's text as the message. One made by Sentinel
// also matches the sentinel of its code (errors.Is), so the two agree.
type sentinel struct {
	code codes.Code
	text string
	of   error // the sentinel of code, for one made by Sentinel
}

func codeSentinel(code codes.Code, text string) error { return &sentinel{code: code, text: text} }

func (s *sentinel) Error() string              { return s.text }
func (s *sentinel) GRPCStatus() *status.Status { return status.New(s.code, s.text) }
func (s *sentinel) Is(target error) bool       { return s.of != nil && target == s.of }

// Sentinel returns a new sentinel error with text, for a case of code that
// callers may want to tell apart (errand.ErrResultNotInline): it matches
// both itself and code's sentinel (ErrFailedPrecondition, ...), and
// status.Code gives code for it and for every error wrapping it. code must
// have a sentinel.
func Sentinel(code codes.Code, text string) error {
	of, ok := sentinels[code]
	if !ok {
		panic(fmt.Sprintf("rpcerr.Sentinel: no sentinel for %v", code))
	}
	return &sentinel{code: code, text: text, of: of}
}

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
	// Message is the server's explanation, meant to say what to fix. When
	// what answered was not gRPC but HTTP (the address is another port, such
	// as errand's MCP, A2A or dashboard listener), it says so instead of
	// grpc-go's text, which GRPCStatus keeps.
	Message string
	// RetryAfter is how long the server asked the caller to wait before
	// calling again, with a RESOURCE_EXHAUSTED for a rate limit (its
	// retry-after-ms trailer: errand serve --requests-per-second-per-tenant),
	// at most a minute (MaxRetryAfter); 0 when it asked for no particular
	// wait (another code, or another limit: too many pending tasks, streams
	// or workers). The SDK does not retry a call itself: wait this long
	// before making it again. See errand.Error.
	RetryAfter time.Duration

	status  *status.Status
	notGRPC bool // Message explains an HTTP answer; Code is grpc-go's mapping of it
}

func (e *Error) Error() string {
	if e.notGRPC {
		// The code is only grpc-go's reading of an HTTP status (404 is
		// Unimplemented): printed, it would suggest an old errand server.
		return fmt.Sprintf("errand: %s: %s", e.Op, e.Message)
	}
	return fmt.Sprintf("errand: %s: %s: %s", e.Op, codeText(e.Code), e.Message)
}

// GRPCStatus lets status.Code and status.FromError see the original status
// (for an *Error built by hand, without one: its Code and Message).
func (e *Error) GRPCStatus() *status.Status {
	if e.status == nil {
		return status.New(e.Code, e.Message)
	}
	return e.status
}

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
	if what, ok := httpAnswer(st); ok {
		msg := fmt.Sprintf("the address given to Dial answered HTTP, not errand's gRPC (%s): "+
			"is this errand's MCP, A2A or dashboard port? Give Dial (or ERRAND_SERVER) the address of "+
			"errand serve --listen (port 7466 by default)", what)
		return &Error{Op: op, Code: st.Code(), Message: msg, status: st, notGRPC: true}
	}
	if size, limit, ok := OverReceiveLimit(st); ok {
		return &Error{Op: op, Code: st.Code(), Message: ReceiveLimitText("an answer from the server", size, limit), status: st}
	}
	if badMetadata(st) {
		msg := st.Message() + `: metadata added to a call's context must have keys of [0-9a-z-_.] and values of ` +
			`printable ASCII (binary values go under a key ending in "-bin")`
		return &Error{Op: op, Code: codes.InvalidArgument, Message: msg, status: status.New(codes.InvalidArgument, msg)}
	}
	return &Error{Op: op, Code: st.Code(), Message: st.Message(), status: st, RetryAfter: RetryAfter(err)}
}

// The texts of grpc-go's own ResourceExhausted for a received message over
// the client's limit (grpc.MaxCallRecvMsgSize, which errand.WithMaxRecvBytes
// sets): "grpc: received message larger than max (24240 vs. 4096)", the same
// after decompression, and "grpc: received message after decompression
// larger than max 4096" (no size: decompression stopped at the limit).
var recvLimitText = regexp.MustCompile(`^grpc: (?:received message|message after decompression|received message after decompression) ` +
	`larger than max(?: length allowed on current machine)? \(?(\d+)(?: vs\. (\d+)\))?`)

// OverReceiveLimit reports whether st is grpc-go's refusal of a received
// message larger than the client accepts, with the message's size (0 when
// grpc-go did not say) and the limit. The server's own RESOURCE_EXHAUSTED (a
// rate limit, too many streams: worth retrying later) is not.
func OverReceiveLimit(st *status.Status) (size, limit int, ok bool) {
	if st.Code() != codes.ResourceExhausted {
		return 0, 0, false
	}
	m := recvLimitText.FindStringSubmatch(st.Message())
	if m == nil {
		return 0, 0, false
	}
	a, _ := strconv.Atoi(m[1])
	if m[2] == "" {
		return 0, a, true
	}
	b, _ := strconv.Atoi(m[2])
	return a, b, true
}

// ReceiveLimitText says that what (a message of size bytes; 0: unknown) is
// over the client's receive limit, and which option raises it.
func ReceiveLimitText(what string, size, limit int) string {
	over := "is over"
	if size > 0 {
		over = fmt.Sprintf("is %d bytes, over", size)
	}
	return fmt.Sprintf("%s %s this client's limit of %d bytes: raise it with errand.WithMaxRecvBytes "+
		"(retrying cannot help: the server sends the same message again)", what, over, limit)
}

// The texts of grpc-go's refusals of metadata the caller added to a call's
// context (metadata.AppendToOutgoingContext), which it answers INTERNAL
// before sending anything: `header key "x k" contains illegal characters
// not in [0-9a-z-_.]`, `header key "x" contains value with non-printable
// ASCII characters` and "there is an empty key in the header".
var badMetadataText = regexp.MustCompile(`^(?:header key "(?:[^"\\]|\\.)*" contains ` +
	`(?:illegal characters not in \[0-9a-z-_.\]|value with non-printable ASCII characters)|there is an empty key in the header)$`)

// badMetadata reports whether st is grpc-go's refusal of the caller's
// metadata: the caller's mistake (INVALID_ARGUMENT), which retrying cannot fix.
func badMetadata(st *status.Status) bool {
	return st.Code() == codes.Internal && badMetadataText.MatchString(st.Message())
}

// The texts of the statuses grpc-go's client transport makes of a response
// that is not gRPC: an HTTP status other than 200
// ("unexpected HTTP status code received from server: 404 (Not Found)") and
// a content-type that is missing ("malformed header: missing HTTP
// content-type") or not application/grpc ("transport: received unexpected
// content-type \"text/html\""), joined by "; ".
var (
	httpStatusText  = regexp.MustCompile(`(?:^|; )unexpected HTTP status code received from server: (\d+)`)
	contentTypeText = regexp.MustCompile(`(?:^|; )transport: received unexpected content-type ("(?:[^"\\]|\\.)*")`)
)

const missingContentType = "malformed header: missing HTTP content-type"

// httpAnswer reports whether st is grpc-go's status for an HTTP answer that
// is not gRPC, and describes that answer ("HTTP status 404"). A status the
// HTTP answer maps to Unavailable (429, 502, 503, 504: a proxy or gateway in
// front of the server) is left as it is, and stays worth retrying.
func httpAnswer(st *status.Status) (string, bool) {
	if st.Code() == codes.Unavailable || st.Code() == codes.OK {
		return "", false
	}
	msg := st.Message()
	ct := contentTypeText.FindStringSubmatch(msg)
	if ct == nil && !strings.Contains(msg, missingContentType) {
		return "", false // a gRPC answer (or not grpc-go's wording)
	}
	if m := httpStatusText.FindStringSubmatch(msg); m != nil {
		return "HTTP status " + m[1], true
	}
	if ct != nil {
		return "HTTP content-type " + ct[1], true
	}
	return "", false
}

// codeText is how an *Error reads its code: the words of its sentinel
// ("not found", "internal error"), and words alike for the codes without one.
func codeText(c codes.Code) string {
	if s, ok := sentinels[c]; ok {
		return strings.TrimPrefix(s.Error(), "errand: ")
	}
	switch c {
	case codes.OK:
		return "ok"
	case codes.Canceled:
		return "canceled"
	case codes.Unknown:
		return "unknown error"
	case codes.DeadlineExceeded:
		return "deadline exceeded"
	case codes.AlreadyExists:
		return "already exists"
	case codes.Aborted:
		return "aborted"
	case codes.DataLoss:
		return "data loss"
	}
	return fmt.Sprintf("code %d", uint32(c))
}

// Transient reports whether a stream that failed with err is worth opening
// again: the server went away or restarted, or the connection broke, or it
// said to try later (its RESOURCE_EXHAUSTED: a rate limit, too many streams).
// Errors a caller must fix (bad arguments, credentials, unknown RPC, a message
// over the client's own receive limit) are not transient.
func Transient(err error) bool {
	if st, ok := status.FromError(err); ok {
		if _, http := httpAnswer(st); http {
			return false // another port answered: retrying cannot fix the address
		}
		if _, _, over := OverReceiveLimit(st); over {
			return false // the server would send the same message again
		}
		if badMetadata(st) {
			return false // the same metadata would be refused again
		}
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Unknown, codes.Internal, codes.Aborted,
		codes.ResourceExhausted, codes.DeadlineExceeded:
		return true
	}
	return false
}
