package worker_test

// Against the server: a tool handled while Run runs that the server refuses
// fails alone. The stream goes on, with the worker's running task.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

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
