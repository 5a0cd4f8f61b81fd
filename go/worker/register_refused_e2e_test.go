package worker_test

// Against the server: a tool handled while Run runs that the server refuses
// fails alone. The stream goes on, with the worker's running task.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestE2EARefusedLaterToolFailsAloneAndTheTaskRunsOn(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	first := testkit.Name("first")
	started, release := make(chan struct{}, 1), make(chan struct{})
	tw := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(first, "Waits.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			started <- struct{}{}
			select {
			case <-release:
				return "first", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	})
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	completions := testkit.Follow(t, c, session, 0)
	running, err := c.Submit(ctx, session, first, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	await(t, started, "the running task's start")

	// A name the server refuses (INVALID_ARGUMENT, as in a first Register).
	const bad = "bad name!"
	tw.Handle(bad, "Refused.", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	waited := make(chan error, 1)
	go func() { waited <- tw.WaitRegistered(ctx) }()
	err = await(t, waited, "WaitRegistered's answer to the refusal")
	if status.Code(err) != codes.InvalidArgument || !errors.Is(err, errand.ErrInvalidArgument) ||
		status.Convert(err).Message() == "" {
		t.Fatalf("WaitRegistered after a refused later Handle = %v, want the server's INVALID_ARGUMENT and its message", err)
	}
	if !strings.Contains(err.Error(), bad) {
		t.Errorf("the refusal %q does not name the tool %q", err, bad)
	}

	// The stream went on: the running task finishes in its first attempt
	// (a lost stream runs it again as attempt 2).
	close(release)
	got := completions.Next(t)
	if got.TaskID != running.TaskID || got.Status != errand.StatusSucceeded || got.Attempts != 1 {
		t.Fatalf("the running call: %+v, want it succeeded in attempt 1", got)
	}
	if !serves(t, c, first) {
		t.Errorf("%s is no longer served after the refusal", first)
	}
}

// Against the server: a tool refused for its definition (a timeout over
// --max-timeout-ms) does not fail WaitRegistered for another tool, and
// handled again with a timeout the server accepts, it is registered and
// served. Handle panicked on its name as a duplicate.
func TestE2EARefusedToolHandledAgainFixedIsServed(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	first, fixed, other := testkit.Name("first"), testkit.Name("fixed"), testkit.Name("other")
	answer := func(text string) worker.Handler {
		return func(context.Context, json.RawMessage) (any, error) { return text, nil }
	}
	tw := testkit.StartWorker(t, c, func(w *worker.Worker) { w.Handle(first, "First.", nil, answer("first")) })
	ctx := testkit.Ctx(t)

	tw.Handle(fixed, "Too long.", nil, answer("refused"), worker.WithTimeout(8*24*time.Hour))
	err := tw.WaitRegistered(ctx, fixed)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "--max-timeout-ms") {
		t.Fatalf("WaitRegistered(%s) = %v, want the server's INVALID_ARGUMENT naming --max-timeout-ms", fixed, err)
	}
	tw.Handle(other, "Other.", nil, answer("other"))
	if err := tw.WaitRegistered(ctx, other); err != nil {
		t.Fatalf("WaitRegistered(%s) after another tool's refusal = %v, want nil", other, err)
	}

	tw.Handle(fixed, "Fixed.", nil, answer("fixed"), worker.WithTimeout(time.Minute))
	if err := tw.WaitRegistered(ctx, fixed); err != nil {
		t.Fatalf("WaitRegistered(%s) handled again with an accepted timeout = %v, want nil", fixed, err)
	}
	if err := tw.WaitRegistered(ctx); err != nil {
		t.Errorf("WaitRegistered() with every tool registered = %v, want nil", err)
	}
	session := testkit.Name("session")
	completions := testkit.Follow(t, c, session, 0)
	ack, err := c.Submit(ctx, session, fixed, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	got := completions.Next(t)
	if got.TaskID != ack.TaskID || got.Status != errand.StatusSucceeded || string(got.Result) != `"fixed"` {
		t.Fatalf("the fixed tool's call: %+v, want it succeeded with \"fixed\"", got)
	}
}
