package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/internal/testserver"
	"github.com/errand-dev/errand/go/worker"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func TestServesTool(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := testkit.Name("add")
	gotArgs := make(chan string, 1)
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Adds two numbers.",
			map[string]any{"type": "object", "properties": map[string]any{"a": map[string]string{"type": "number"}, "b": map[string]string{"type": "number"}}, "required": []string{"a", "b"}},
			func(ctx context.Context, args json.RawMessage) (any, error) {
				gotArgs <- string(args)
				var in struct{ A, B float64 }
				if err := json.Unmarshal(args, &in); err != nil {
					return nil, err
				}
				return map[string]float64{"sum": in.A + in.B}, nil
			})
	})
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	ack, err := c.Submit(ctx, session, tool, map[string]int{"a": 2, "b": 3})
	if err != nil {
		t.Fatal(err)
	}
	got := stream.Next(t)
	if got.TaskID != ack.TaskID || got.Status != errand.StatusSucceeded || got.Attempts != 1 {
		t.Fatalf("completion = %+v", got)
	}
	var out struct{ Sum float64 }
	if err := got.Decode(&out); err != nil || out.Sum != 5 {
		t.Errorf("result %s (%v), want sum 5", got.Result, err)
	}
	if a := <-gotArgs; a != `{"a":2,"b":3}` {
		t.Errorf("handler got args %s", a)
	}

	// The schema is enforced by the server.
	if _, err := c.Submit(ctx, session, tool, map[string]string{"a": "x"}); !errors.Is(err, errand.ErrInvalidArgument) {
		t.Errorf("Submit(args failing the schema) = %v, want ErrInvalidArgument", err)
	}
}

func TestHandlerErrorBecomesFailedCompletion(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	plain, coded, panics := testkit.Name("plain"), testkit.Name("coded"), testkit.Name("panics")
	unencodable := testkit.Name("unencodable")
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(plain, "Always fails.", nil, func(context.Context, json.RawMessage) (any, error) {
			return nil, fmt.Errorf("disk on fire")
		})
		w.Handle(coded, "Fails with a code.", nil, func(context.Context, json.RawMessage) (any, error) {
			return nil, fmt.Errorf("lookup: %w", worker.ToolError("quota", "daily quota used up"))
		})
		w.Handle(panics, "Panics.", nil, func(context.Context, json.RawMessage) (any, error) {
			panic("boom")
		})
		// A result JSON cannot carry is an invalid result, as one too large
		// is, and as the Python SDK and the server name it.
		w.Handle(unencodable, "Returns a channel.", nil, func(context.Context, json.RawMessage) (any, error) {
			return make(chan int), nil
		})
	}, worker.WithConcurrency(4))
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)

	for _, tc := range []struct{ tool, code, msg string }{
		{plain, "tool_error", "disk on fire"},
		{coded, "quota", "daily quota used up"},
		{panics, "tool_error", "panic: boom"},
		{unencodable, "invalid_result", "could not be encoded as JSON"},
	} {
		ack, err := c.Submit(ctx, session, tc.tool, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := stream.Next(t)
		if got.TaskID != ack.TaskID || got.Status != errand.StatusFailed || got.Error == nil {
			t.Fatalf("%s: completion = %+v, want FAILED", tc.tool, got)
		}
		if got.Error.Code != tc.code || !strings.Contains(got.Error.Message, tc.msg) {
			t.Errorf("%s: error = %+v, want code %q and %q", tc.tool, got.Error, tc.code, tc.msg)
		}
		var te *errand.ToolError
		if err := got.Err(); !errors.As(err, &te) || te.Code != tc.code {
			t.Errorf("%s: Err() = %v", tc.tool, err)
		}
		if got.Message == "" {
			t.Errorf("%s: no message for the model", tc.tool)
		}
	}
}

func TestCancellationReachesHandler(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := testkit.Name("forever")
	started := make(chan string, 1)
	stopped := make(chan error, 1)
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Runs until cancelled.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			started <- "started"
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return nil, ctx.Err()
		})
	})
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	ack, err := c.Submit(ctx, session, tool, nil)
	if err != nil {
		t.Fatal(err)
	}
	await(t, started, "handler start")
	task, err := c.Cancel(ctx, ack.TaskID)
	if err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if task.Status != errand.StatusCancelled {
		t.Errorf("Cancel returned status %v", task.Status)
	}
	if cause := await(t, stopped, "handler context cancelled"); !errors.Is(cause, worker.ErrCancelled) {
		t.Errorf("context.Cause = %v, want worker.ErrCancelled", cause)
	}
	got := stream.Next(t)
	if got.TaskID != ack.TaskID || got.Status != errand.StatusCancelled {
		t.Errorf("completion = %v %v, want CANCELLED", got.TaskID, got.Status)
	}
	// Cancelling again returns the task unchanged.
	if again, err := c.Cancel(ctx, ack.TaskID); err != nil || again.Status != errand.StatusCancelled {
		t.Errorf("second Cancel = %v, %v", again, err)
	}
}

func TestTimeoutCancelsHandler(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := testkit.Name("stuck")
	stopped := make(chan error, 1)
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Never answers by itself.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return nil, ctx.Err()
		})
	})
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	ack, err := c.Submit(ctx, session, tool, nil, errand.WithTaskTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if cause := await(t, stopped, "handler context timed out"); !errors.Is(cause, worker.ErrTimedOut) {
		t.Errorf("context.Cause = %v, want worker.ErrTimedOut", cause)
	}
	got := stream.Next(t)
	if got.TaskID != ack.TaskID || got.Status != errand.StatusTimedOut {
		t.Errorf("completion = %v %v %+v, want TIMED_OUT", got.TaskID, got.Status, got.Error)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := testkit.Name("gate")
	var inFlight, peak atomic.Int32
	started := make(chan struct{}, 8)
	release := make(chan struct{})
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Waits for the gate.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			started <- struct{}{}
			select {
			case <-release:
				return "ok", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	}, worker.WithConcurrency(2))
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	for i := 0; i < 4; i++ {
		if _, err := c.Submit(ctx, session, tool, nil); err != nil {
			t.Fatal(err)
		}
	}
	await(t, started, "first start")
	await(t, started, "second start")
	close(release)
	for i := 0; i < 4; i++ {
		if got := stream.Next(t); got.Status != errand.StatusSucceeded {
			t.Errorf("completion %d: %v", i, got.Status)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrency %d, want 2", p)
	}
}

// After a kill -9 and restart of the server on the same port, the worker
// cancels what it was running, registers again and serves new tasks, and an
// open Completions stream reconnects and delivers them.
func TestReconnectAfterServerRestart(t *testing.T) {
	srv, err := testserver.Start(testserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	c := testkit.Dial(t, srv.Addr)
	tool := testkit.Name("echo")
	blocker := testkit.Name("blocker")
	started := make(chan struct{}, 1)
	stopped := make(chan error, 1)
	w := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Returns its arguments.", nil, func(_ context.Context, a json.RawMessage) (any, error) { return a, nil })
		w.Handle(blocker, "Runs until its context ends.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return nil, ctx.Err()
		})
	}, worker.WithConcurrency(2))
	if _, err := c.Submit(testkit.Ctx(t), testkit.Name("before"), blocker, nil); err != nil {
		t.Fatal(err)
	}
	// A stream opened before the restart reconnects by itself. (Its session
	// has no completions yet, so the memory store's restart from seq 1 loses
	// nothing.)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	await(t, started, "blocker start")
	if srv, err = srv.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { srv.Kill() })
	if cause := await(t, stopped, "running handler cancelled"); !errors.Is(cause, worker.ErrConnectionLost) {
		t.Errorf("running handler's context.Cause = %v, want worker.ErrConnectionLost", cause)
	}
	w.AwaitRegistered(t)

	ack, err := c.Submit(testkit.Ctx(t), session, tool, map[string]string{"after": "restart"})
	if err != nil {
		t.Fatalf("Submit after restart: %v", err)
	}
	if got := stream.Next(t); got.TaskID != ack.TaskID || string(got.Result) != `{"after":"restart"}` {
		t.Errorf("completion after restart = %s %s", got.TaskID, got.Result)
	}
}

func TestRunErrors(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	if err := worker.New(c).Run(testkit.Ctx(t)); err == nil {
		t.Error("Run without tools should fail")
	}
	w := worker.New(c)
	w.Handle("bad name!", "Invalid name.", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	if err := w.Run(testkit.Ctx(t)); !errors.Is(err, errand.ErrInvalidArgument) {
		t.Errorf("Run with an invalid tool name = %v, want ErrInvalidArgument", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	ok := worker.New(c)
	ok.Handle(testkit.Name("idle"), "Idle.", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	if err := ok.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run = %v after its deadline, want context.DeadlineExceeded", err)
	}
}

func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testkit.Timeout):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}
