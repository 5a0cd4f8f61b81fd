package worker_test

// End-to-end: an Assignment larger than the worker's client accepts
// (errand.WithMaxRecvBytes). grpc-go refused it, the stream ended, the
// worker reconnected and was sent the task again, until the task ended
// FAILED "worker_lost" after its attempts, and nothing said why. Now the
// worker fails the task itself, at once, with a reason naming the size,
// the limit and the option, and keeps its stream.

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

func TestE2EAssignmentOverTheReceiveLimitFailsTheTask(t *testing.T) {
	agent := testkit.Dial(t, testkit.Addr())
	wc := testkit.Dial(t, testkit.Addr(), errand.WithMaxRecvBytes(4096))
	tool := testkit.Name("arglen")
	w := testkit.StartWorker(t, wc, func(w *worker.Worker) {
		w.Handle(tool, "The length of its arguments.", nil, func(_ context.Context, a json.RawMessage) (any, error) {
			return len(a), nil
		})
	})
	session := testkit.Name("session")
	stream := testkit.Follow(t, agent, session, 0)

	big, err := agent.Submit(testkit.Ctx(t), session, tool, map[string]string{"pad": strings.Repeat("x", 8000)})
	if err != nil {
		t.Fatal(err)
	}
	done := stream.Next(t)
	if done.TaskID != big.TaskID || done.Status != errand.StatusFailed || done.Error == nil ||
		done.Error.Code != "assignment_too_large" {
		t.Fatalf("completion of %s: %s after %d attempts (error %v), want task %s FAILED with assignment_too_large",
			done.TaskID, done.Status, done.Attempts, done.Error, big.TaskID)
	}
	for _, want := range []string{"4096", "WithMaxRecvBytes"} {
		if !strings.Contains(done.Error.Message, want) {
			t.Errorf("error message %q does not name %q", done.Error.Message, want)
		}
	}
	if done.Attempts != 1 {
		t.Errorf("attempts %d, want 1 (the worker kept its stream)", done.Attempts)
	}

	// The same connection still serves a task within the limit.
	small, err := agent.Submit(testkit.Ctx(t), session, tool, map[string]string{"pad": "x"})
	if err != nil {
		t.Fatal(err)
	}
	done = stream.Next(t)
	if done.TaskID != small.TaskID || done.Status != errand.StatusSucceeded {
		t.Fatalf("completion %+v (error %+v), want task %s SUCCEEDED", done, done.Error, small.TaskID)
	}
	select {
	case id := <-w.Registered:
		t.Errorf("the worker registered again (as %s): it lost its stream", id)
	default:
	}
}
