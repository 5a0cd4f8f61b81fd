package rpcerr

import (
	"context"
	"errors"
	"fmt"
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
