package worker_test

// worker.WithQueueTimeout and errand.WithQueueTimeout: a tool's default
// queue timeout on the wire, and both against the real server.

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

func TestToolQueueTimeoutOnTheWire(t *testing.T) {
	f := &fakeWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16)}
	c := testkit.Dial(t, fakeserver.Start(t, nil, f))
	noop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle("minutes", "", nil, noop, worker.WithQueueTimeout(2*time.Minute), worker.WithTimeout(time.Second))
		w.Handle("rounded", "", nil, noop, worker.WithQueueTimeout(1500*time.Microsecond))
		w.Handle("zero", "", nil, noop, worker.WithQueueTimeout(0))
		w.Handle("unset", "", nil, noop)
	})
	reg := f.next(t).GetRegister()
	want := map[string]uint64{"minutes": 120000, "rounded": 2, "zero": 0, "unset": 0} // negative: durations_test.go
	if len(reg.GetTools()) != len(want) {
		t.Fatalf("registered %v, want %d tools", reg, len(want))
	}
	for _, tool := range reg.GetTools() {
		if got := tool.GetQueueTimeoutMs(); got != want[tool.GetName()] {
			t.Errorf("tool %s: queue_timeout_ms = %d, want %d", tool.GetName(), got, want[tool.GetName()])
		}
		if tool.GetName() == "minutes" && tool.GetTimeoutMs() != 1000 {
			t.Errorf("WithQueueTimeout changed timeout_ms: %v", tool)
		}
	}
}

// A tool's queue timeout ends a call no worker takes in time as TIMED_OUT
// with code queue_timeout; a submit's own queue timeout wins over it.
func TestQueueTimeoutEndToEnd(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := testkit.Name("busy")
	started := make(chan string, 4)
	release := make(chan struct{})
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Waits for the test.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			info, _ := worker.TaskFrom(ctx)
			started <- info.TaskID
			select {
			case <-release:
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}, worker.WithQueueTimeout(300*time.Millisecond))
	}) // concurrency 1: while the first call runs, the others wait in the queue

	ctx := testkit.Ctx(t)
	tools, err := c.ListTools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range tools {
		if tl.Name == tool && tl.QueueTimeout != 300*time.Millisecond {
			t.Errorf("ListTools: %s has QueueTimeout %v, want 300ms", tool, tl.QueueTimeout)
		}
	}

	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	first, err := c.Submit(ctx, session, tool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id := await(t, started, "the first call's start"); id != first.TaskID {
		t.Fatalf("started %s, want %s", id, first.TaskID)
	}
	queued, err := c.Submit(ctx, session, tool, nil) // the tool's 300 ms
	if err != nil {
		t.Fatal(err)
	}
	patient, err := c.Submit(ctx, session, tool, nil, errand.WithQueueTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	got := stream.Next(t)
	if got.TaskID != queued.TaskID || got.Status != errand.StatusTimedOut || got.Error == nil || got.Error.Code != "queue_timeout" {
		t.Fatalf("first completion = %s %v %+v, want %s TIMED_OUT with code queue_timeout", got.TaskID, got.Status, got.Error, queued.TaskID)
	}
	close(release)
	done := map[string]errand.Status{}
	for range 2 {
		got := stream.Next(t)
		done[got.TaskID] = got.Status
	}
	if done[first.TaskID] != errand.StatusSucceeded || done[patient.TaskID] != errand.StatusSucceeded {
		t.Errorf("completions = %v, want %s and %s (its WithQueueTimeout(1h) over the tool's 300 ms) SUCCEEDED",
			done, first.TaskID, patient.TaskID)
	}
}
