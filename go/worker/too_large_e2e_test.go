package worker_test

// End-to-end: a result too large for one gRPC message to the server fails
// its task with "invalid_result"; the worker keeps its stream. Before, the
// transport refused the message, the stream ended and the requeued task
// took down the next worker the same way.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/internal/testserver"
	"github.com/errand-dev/errand/go/worker"
)

func TestE2EResultOverTheMessageLimitFailsTheTask(t *testing.T) {
	const messageLimit, resultLimit = 1 << 20, 512 << 10
	srv, err := testserver.Start(testserver.Options{Args: []string{
		"--max-message-bytes", fmt.Sprint(messageLimit),
		"--max-result-bytes", fmt.Sprint(resultLimit),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	c := testkit.Dial(t, srv.Addr)
	big, small := testkit.Name("big"), testkit.Name("small")
	w := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(big, "n bytes of text.", nil, func(_ context.Context, a json.RawMessage) (any, error) {
			var in struct{ N int }
			if err := json.Unmarshal(a, &in); err != nil {
				return nil, err
			}
			return strings.Repeat("a", in.N), nil
		})
		w.Handle(small, "A short answer.", nil, func(context.Context, json.RawMessage) (any, error) { return "fine", nil })
	})
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	submit := func(tool string, args any) string {
		t.Helper()
		ack, err := c.Submit(testkit.Ctx(t), session, tool, args)
		if err != nil {
			t.Fatal(err)
		}
		return ack.TaskID
	}

	// Over the message limit: the worker fails it instead of sending it.
	over := submit(big, map[string]int{"n": messageLimit + 100_000})
	done := stream.Next(t)
	if done.TaskID != over || done.Status != errand.StatusFailed || done.Error == nil || done.Error.Code != "invalid_result" {
		t.Fatalf("completion %+v (error %+v), want task %s FAILED with invalid_result", done, done.Error, over)
	}
	msg := done.Error.Message
	if !strings.Contains(msg, fmt.Sprintf("the limit is %d", messageLimit)) || !strings.Contains(msg, "--max-message-bytes") || len(msg) > 300 {
		t.Errorf("error message %q, want a short one with the limit %d", msg, messageLimit)
	}
	if done.Attempts != 1 {
		t.Errorf("attempts %d, want 1 (the worker kept its stream)", done.Attempts)
	}

	// Over the result limit but within a message: the server's own check.
	between := submit(big, map[string]int{"n": resultLimit + 1000})
	done = stream.Next(t)
	if done.TaskID != between || done.Status != errand.StatusFailed || done.Error == nil || done.Error.Code != "invalid_result" ||
		!strings.Contains(done.Error.Message, fmt.Sprintf("the limit is %d", resultLimit)) {
		t.Fatalf("completion %+v (error %+v), want task %s FAILED by the server's result limit", done, done.Error, between)
	}

	// The same connection still serves.
	ok := submit(small, nil)
	done = stream.Next(t)
	if done.TaskID != ok || done.Status != errand.StatusSucceeded || string(done.Result) != `"fine"` {
		t.Fatalf("completion %+v, want task %s SUCCEEDED with \"fine\"", done, ok)
	}
	select {
	case id := <-w.Registered:
		t.Errorf("the worker registered again (as %s): it lost its stream", id)
	default:
	}
}
