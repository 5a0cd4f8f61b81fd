package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestWrapMatchesSentinelsAndStatus(t *testing.T) {
	for code, sentinel := range sentinels {
		err := fmt.Errorf("outer: %w", Wrap("GetTask", status.Error(code, "why")))
		if !errors.Is(err, sentinel) {
			t.Errorf("%v: errors.Is(err, %v) = false", code, sentinel)
		}
		if status.Code(err) != code {
			t.Errorf("%v: status.Code = %v", code, status.Code(err))
		}
		for other, s := range sentinels {
			if other != code && errors.Is(err, s) {
				t.Errorf("%v also matches %v", code, s)
			}
		}
	}
	var e *Error
	err := Wrap("SubmitTool", status.Error(codes.NotFound, "unknown tool x; known: a, b"))
	if !errors.As(err, &e) || e.Op != "SubmitTool" || e.Message != "unknown tool x; known: a, b" {
		t.Errorf("As = %+v", e)
	}
	if got := err.Error(); got != "errand: SubmitTool: not found: unknown tool x; known: a, b" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(Wrap("x", status.Error(codes.DeadlineExceeded, "")), context.DeadlineExceeded) ||
		!errors.Is(Wrap("x", status.Error(codes.Canceled, "")), context.Canceled) {
		t.Error("context codes should match the context errors")
	}
	if Wrap("x", nil) != nil {
		t.Error("Wrap(nil) != nil")
	}
}

func TestTransient(t *testing.T) {
	if !Transient(status.Error(codes.Unavailable, "")) || Transient(status.Error(codes.InvalidArgument, "")) ||
		Transient(status.Error(codes.Unauthenticated, "")) {
		t.Error("Unavailable is transient; InvalidArgument and Unauthenticated are not")
	}
}

// grpc-go's client transport turns an answer that is not gRPC (an HTTP
// listener: errand's MCP, A2A or dashboard port) into a status with the HTTP
// status's code; its message read as an old server. Wrap says what the CLI
// says, keeps the code (so the same sentinel matches) and the status.
func TestWrapNamesAnHTTPAnswer(t *testing.T) {
	for _, tc := range []struct {
		code     codes.Code
		sentinel error
		msg      string
		says     string
	}{
		{codes.Unimplemented, ErrUnimplemented,
			"unexpected HTTP status code received from server: 404 (Not Found); malformed header: missing HTTP content-type",
			"(HTTP status 404)"},
		{codes.Unknown, nil, `transport: received unexpected content-type "text/html; charset=utf-8"`,
			`(HTTP content-type "text/html; charset=utf-8")`},
		{codes.Internal, ErrInternal,
			`unexpected HTTP status code received from server: 400 (Bad Request); transport: received unexpected content-type "text/plain"`,
			"(HTTP status 400)"},
		{codes.PermissionDenied, ErrPermissionDenied,
			"unexpected HTTP status code received from server: 403 (Forbidden); malformed header: missing HTTP content-type",
			"(HTTP status 403)"},
	} {
		orig := status.Error(tc.code, tc.msg)
		err := Wrap("ListTools", orig)
		got := err.Error()
		t.Logf("%v", got)
		for _, want := range []string{"errand: ListTools: ", "answered HTTP, not errand's gRPC " + tc.says,
			"MCP, A2A or dashboard port", "ERRAND_SERVER", "errand serve --listen", "7466"} {
			if !strings.Contains(got, want) {
				t.Errorf("%v %q: Error() = %q, want it to say %q", tc.code, tc.msg, got, want)
			}
		}
		if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
			t.Errorf("%v: errors.Is(err, %v) = false", tc.code, tc.sentinel)
		}
		if st, _ := status.FromError(err); st.Code() != tc.code || st.Message() != tc.msg {
			t.Errorf("status = %v, want the original %v", st, orig)
		}
		if Transient(err) {
			t.Errorf("%v %q: transient, but retrying cannot fix the address", tc.code, tc.msg)
		}
	}
	// A gRPC server's own UNIMPLEMENTED is unchanged.
	if got := Wrap("ReadResult", status.Error(codes.Unimplemented, "unknown method ReadResult")).Error(); got != "errand: ReadResult: unimplemented: unknown method ReadResult" {
		t.Errorf("Error() = %q", got)
	}
	// A proxy's 503 in front of the server is still worth retrying.
	if !Transient(status.Error(codes.Unavailable, "unexpected HTTP status code received from server: 503 (Service Unavailable); transport: received unexpected content-type \"text/plain\"")) {
		t.Error("an HTTP 503 should stay transient")
	}
}

// grpc-go refuses a received message over the client's limit with
// ResourceExhausted, as a server says "try later" (a rate limit, too many
// streams): only the server's is worth retrying, and the local one says
// which option to raise.
func TestReceiveLimitIsNotTransient(t *testing.T) {
	for _, msg := range []string{
		"grpc: received message larger than max (24240 vs. 4096)",
		"grpc: message after decompression larger than max (24240 vs. 4096)",
		"grpc: received message after decompression larger than max 4096",
	} {
		err := status.Error(codes.ResourceExhausted, msg)
		if Transient(err) {
			t.Errorf("Transient(%q) = true, want false", msg)
		}
		werr := Wrap("Completions", err)
		if !errors.Is(werr, ErrResourceExhausted) || status.Code(werr) != codes.ResourceExhausted {
			t.Errorf("Wrap(%q) = %v, want ErrResourceExhausted", msg, werr)
		}
		if !strings.Contains(werr.Error(), "WithMaxRecvBytes") || !strings.Contains(werr.Error(), "4096") {
			t.Errorf("Wrap(%q) = %q, want the limit and the option to raise", msg, werr)
		}
	}
	for _, msg := range []string{"rate limit: retry in 200ms", "too many open streams for this tenant"} {
		if !Transient(status.Error(codes.ResourceExhausted, msg)) {
			t.Errorf("the server's %q should stay transient", msg)
		}
	}
}

// Every code reads as words, as "not found" does: codes outside the list
// printed grpc-go's name ("errand: AckCompletions: OutOfRange: ...").
func TestEveryCodeReadsAsWords(t *testing.T) {
	want := map[codes.Code]string{
		codes.OutOfRange:    "out of range",
		codes.Unimplemented: "unimplemented",
		codes.Internal:      "internal error",
		codes.DataLoss:      "data loss",
		codes.AlreadyExists: "already exists",
		codes.Unknown:       "unknown error",
		codes.Aborted:       "aborted",
		codes.NotFound:      "not found",
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		err := Wrap("Op", status.Error(c, "why"))
		if c == codes.OK {
			continue // not an error
		}
		got := strings.TrimSuffix(strings.TrimPrefix(err.Error(), "errand: Op: "), ": why")
		if got != strings.ToLower(got) || strings.ContainsAny(got, "()") {
			t.Errorf("%v reads %q, want lower-case words", c, got)
		}
		if w, ok := want[c]; ok && got != w {
			t.Errorf("%v reads %q, want %q", c, got, w)
		}
		// The sentinel's text and the error's agree.
		if s, ok := sentinels[c]; ok && s.Error() != "errand: "+got {
			t.Errorf("%v reads %q, its sentinel %q", c, got, s)
		}
	}
}

// A sentinel answers status.Code with its code, and so does every error
// wrapping it, as the SDK's own errors do ("... (errand: invalid
// argument)"); the status's message is the whole error's text. An *Error
// built by hand, without a status, answers its Code.
func TestSentinelsAnswerStatusCode(t *testing.T) {
	for code, sentinel := range sentinels {
		for _, err := range []error{sentinel, fmt.Errorf("errand: Submit: bad (%w)", sentinel),
			fmt.Errorf("outer: %w", fmt.Errorf("errand: x: %w (%w)", errors.New("why"), sentinel))} {
			if got := status.Code(err); got != code {
				t.Errorf("status.Code(%v) = %v, want %v", err, got, code)
			}
			if st, ok := status.FromError(err); !ok || st.Message() != err.Error() {
				t.Errorf("status.FromError(%v) = %v, %v; want its text", err, st, ok)
			}
			for other, s := range sentinels {
				if errors.Is(err, s) != (other == code) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, errors.Is(err, s))
				}
			}
		}
	}
	byHand := &Error{Op: "GetTask", Code: codes.NotFound, Message: "no task t"}
	if st, ok := status.FromError(byHand); !ok || st.Code() != codes.NotFound || st.Message() != "no task t" {
		t.Errorf("status.FromError(%v) = %v, %v", byHand, st, ok)
	}
}
