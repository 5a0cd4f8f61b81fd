package worker_test

// A tool handled while Run runs is registered on the live stream (a later
// Register): it was kept until a reconnect, so its calls found no worker.
// WaitRegistered waits for the server to accept it (it returned at once).

import (
	"context"
	"encoding/json"
	"testing"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

func TestE2EAToolHandledWhileRunningIsServed(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	first, late := testkit.Name("first"), testkit.Name("late")
	release := make(chan struct{})
	tw := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(first, "Waits.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			select {
			case <-release:
				return "first", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	}, worker.WithConcurrency(2))
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	completions := testkit.Follow(t, c, session, 0)
	running, err := c.Submit(ctx, session, first, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}

	tw.Handle(late, "Answers at once.", nil, func(context.Context, json.RawMessage) (any, error) {
		return "late", nil
	})
	// WaitRegistered waits for the server's answer to the later Register:
	// once it returns, the tool is served (no polling).
	if err := tw.WaitRegistered(ctx); err != nil {
		t.Fatalf("WaitRegistered after a later Handle: %v", err)
	}
	if !serves(t, c, late) {
		t.Fatalf("WaitRegistered returned before the server served %s", late)
	}
	ack, err := c.Submit(ctx, session, late, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if got := completions.Next(t); got.TaskID != ack.TaskID || got.Status != errand.StatusSucceeded {
		t.Fatalf("the late tool's completion: %+v", got)
	}
	close(release)
	got := completions.Next(t)
	if got.TaskID != running.TaskID || got.Attempts != 1 {
		t.Fatalf("the running call went on, once: %+v", got)
	}
}

// serves says whether a worker serves tool now.
func serves(t *testing.T, c *errand.Client, tool string) bool {
	t.Helper()
	tools, err := c.ListTools(testkit.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range tools {
		if x.Name == tool && x.Workers > 0 {
			return true
		}
	}
	return false
}
