package worker_test

// End-to-end: nothing a worker sends ends its stream. A progress report
// larger than the server's message limit was refused by the transport: the
// stream ended, the task went to another attempt and its caller waited.
// Now Progress cuts the message at the server's 1 KiB, returns an
// ErrInvalidArgument error for a detail that does not fit, and a failure's
// long text is cut to fit, keeping its code.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/internal/testserver"
	"github.com/errand-dev/errand/go/worker"
)

// smallLimit is below the 64 KiB a progress detail may take; the other
// limits are the largest it allows.
const smallLimit = 32 << 10

func startSmallServer(t *testing.T) *errand.Client {
	t.Helper()
	srv, err := testserver.Start(testserver.Options{Args: []string{
		"--max-message-bytes", fmt.Sprint(smallLimit),
		"--max-arguments-bytes", "4096",
		"--max-result-bytes", "4096",
		"--max-schema-bytes", "4096",
		"--max-description-bytes", "1024",
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	return testkit.Dial(t, srv.Addr)
}

func TestE2EOversizedProgressIsCutOrRefusedAndTheStreamStays(t *testing.T) {
	c := startSmallServer(t)
	tool := testkit.Name("chatty")
	seenCut := make(chan struct{})
	refusals := make(chan error, 2)
	w := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Reports too much.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			// 1 MiB of status: cut to the server's 1 KiB on a character boundary.
			if err := worker.Progress(ctx, 1, 3, strings.Repeat("é", 512<<10), map[string]int{"step": 1}); err != nil {
				return nil, err
			}
			select {
			case <-seenCut:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			// Within the server's 64 KiB detail bound but over this server's
			// message limit; then over the bound.
			for _, n := range []int{smallLimit + 1000, worker.MaxDetailBytes + 1} {
				refusals <- worker.Progress(ctx, 2, 3, "big detail", strings.Repeat("x", n))
			}
			if err := worker.Progress(ctx, 3, 3, "done", map[string]int{"step": 3}); err != nil {
				return nil, err
			}
			return "finished", nil
		})
	})
	session := testkit.Name("session")
	evs := events(t, c, session)
	ack, err := c.Submit(testkit.Ctx(t), session, tool, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := await(t, evs, "the first progress")
	if first.Progress == nil {
		t.Fatalf("first event %+v, want progress", first)
	}
	if want := strings.Repeat("é", worker.MaxProgressMessageBytes/2); first.Progress.Message != want {
		t.Errorf("progress message of %d bytes, want the first %d", len(first.Progress.Message), len(want))
	}
	if string(first.Progress.Detail) != `{"step":1}` {
		t.Errorf("detail %s", first.Progress.Detail)
	}
	close(seenCut)
	var done *errand.Completion
	for done == nil {
		done = await(t, evs, "the completion").Completion
	}
	if done.TaskID != ack.TaskID || done.Status != errand.StatusSucceeded || string(done.Result) != `"finished"` || done.Attempts != 1 {
		t.Fatalf("completion %+v (error %+v), want %s SUCCEEDED on attempt 1", done, done.Error, ack.TaskID)
	}
	overLimit, overBound := <-refusals, <-refusals
	for _, err := range []error{overLimit, overBound} {
		if !errors.Is(err, errand.ErrInvalidArgument) {
			t.Errorf("Progress error %v, want one matching ErrInvalidArgument", err)
		}
	}
	if err := overLimit; err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the server's message limit of %d bytes", smallLimit)) {
		t.Errorf("over the message limit: %v", err)
	}
	if err := overBound; err == nil || !strings.Contains(err.Error(), fmt.Sprintf("at most %d", worker.MaxDetailBytes)) {
		t.Errorf("over the detail bound: %v", err)
	}
	select {
	case id := <-w.Registered:
		t.Errorf("the worker registered again (as %s): it lost its stream", id)
	default:
	}
}

func TestE2EAFailureLongerThanAMessageKeepsItsCode(t *testing.T) {
	c := startSmallServer(t)
	tool := testkit.Name("loud")
	w := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Fails at length.", nil, func(context.Context, json.RawMessage) (any, error) {
			return nil, &errand.ToolError{Code: "rate_limited", Message: "slow down " + strings.Repeat("z", 2*smallLimit)}
		})
	})
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	ack, err := c.Submit(testkit.Ctx(t), session, tool, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := stream.Next(t)
	if done.TaskID != ack.TaskID || done.Status != errand.StatusFailed || done.Error == nil || done.Attempts != 1 {
		t.Fatalf("completion %+v (error %+v), want %s FAILED on attempt 1", done, done.Error, ack.TaskID)
	}
	if done.Error.Code != "rate_limited" || !strings.HasPrefix(done.Error.Message, "slow down zzz") {
		t.Errorf("error %s: %.80s, want rate_limited: slow down zzz...", done.Error.Code, done.Error.Message)
	}
	select {
	case id := <-w.Registered:
		t.Errorf("the worker registered again (as %s): it lost its stream", id)
	default:
	}
}
