package worker_test

// TaskFrom: the handler reads which task it runs (ID, session, tool,
// attempt, timeout) from its context.

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

func TestTaskFromOutsideAHandler(t *testing.T) {
	if info, ok := worker.TaskFrom(context.Background()); ok || info != (worker.TaskInfo{}) {
		t.Errorf("TaskFrom(context.Background()) = %+v, %v; want the zero TaskInfo, false", info, ok)
	}
}

// Every field of the Assignment reaches the handler, whichever of the
// worker's tools it calls; the deadline is the one the handler's context has.
func TestTaskFromCarriesTheAssignment(t *testing.T) {
	f := &fakeWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16)}
	c := testkit.Dial(t, fakeserver.Start(t, nil, f))
	type seen struct {
		info        worker.TaskInfo
		ok          bool
		ctxDeadline time.Time
		hasDeadline bool
	}
	seenCh := make(chan seen, 2)
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		h := func(ctx context.Context, _ json.RawMessage) (any, error) {
			info, ok := worker.TaskFrom(ctx)
			dl, has := ctx.Deadline()
			seenCh <- seen{info, ok, dl, has}
			return "ok", nil
		}
		w.Handle("crawl", "Crawls.", nil, h)
		w.Handle("index", "Indexes.", nil, h)
	})
	if f.next(t).GetRegister() == nil {
		t.Fatal("the worker's first message is not Register")
	}

	before := time.Now()
	f.send <- &pb.WorkerCommand{Kind: &pb.WorkerCommand_Assignment{Assignment: &pb.Assignment{
		TaskId: "t7", SessionId: "s1", Tool: "index", ArgumentsJson: `{}`, Attempt: 3, TimeoutMs: 90_000}}}
	s := await(t, seenCh, "the handler of t7")
	after := time.Now()
	got := s.info
	if !s.ok || got.TaskID != "t7" || got.SessionID != "s1" || got.Tool != "index" || got.Attempt != 3 || got.Timeout != 90*time.Second {
		t.Errorf("TaskFrom = %+v, %v; want task t7 of session s1, tool index, attempt 3, timeout 90s", got, s.ok)
	}
	if got.Deadline.Before(before.Add(90*time.Second)) || got.Deadline.After(after.Add(90*time.Second)) {
		t.Errorf("Deadline = %v, want the assignment's arrival plus 90s (between %v and %v)",
			got.Deadline, before.Add(90*time.Second), after.Add(90*time.Second))
	}
	if !s.hasDeadline || !s.ctxDeadline.Equal(got.Deadline) {
		t.Errorf("ctx.Deadline() = %v, %v; want TaskInfo.Deadline %v", s.ctxDeadline, s.hasDeadline, got.Deadline)
	}
	if res := f.next(t).GetResult(); res.GetTaskId() != "t7" || res.GetAttempt() != 3 {
		t.Errorf("result = %v, want t7's, attempt 3", res)
	}

	// No timeout from the server: none in TaskInfo, no deadline on ctx.
	f.send <- &pb.WorkerCommand{Kind: &pb.WorkerCommand_Assignment{Assignment: &pb.Assignment{
		TaskId: "t8", SessionId: "s2", Tool: "crawl", Attempt: 1}}}
	s = await(t, seenCh, "the handler of t8")
	want := worker.TaskInfo{TaskID: "t8", SessionID: "s2", Tool: "crawl", Attempt: 1}
	if !s.ok || s.info != want || s.hasDeadline {
		t.Errorf("TaskFrom = %+v, %v (ctx deadline %v); want %+v and no deadline", s.info, s.ok, s.hasDeadline, want)
	}
}

// Against the real server: the handler sees the ID Submit returned, the
// session, the tool, attempt 1 and the submit's timeout.
func TestTaskFromEndToEnd(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := testkit.Name("whoami")
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Says which task it runs for.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			info, ok := worker.TaskFrom(ctx)
			if !ok {
				return nil, errors.New("no task in the handler's context")
			}
			return map[string]any{"task_id": info.TaskID, "session_id": info.SessionID, "tool": info.Tool,
				"attempt": info.Attempt, "timeout_ms": info.Timeout.Milliseconds()}, nil
		})
	})
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	ack, err := c.Submit(ctx, session, tool, nil, errand.WithTaskTimeout(7*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	comp := stream.Next(t)
	if comp.TaskID != ack.TaskID || comp.Status != errand.StatusSucceeded {
		t.Fatalf("completion = %+v", comp)
	}
	var got struct {
		TaskID    string `json:"task_id"`
		SessionID string `json:"session_id"`
		Tool      string `json:"tool"`
		Attempt   uint32 `json:"attempt"`
		TimeoutMs int64  `json:"timeout_ms"`
	}
	if err := comp.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.TaskID != ack.TaskID || got.SessionID != session || got.Tool != tool || got.Attempt != 1 || got.TimeoutMs != 7000 {
		t.Errorf("the handler saw %+v; want task %s of session %s, tool %s, attempt 1, 7000 ms", got, ack.TaskID, session, tool)
	}
}
