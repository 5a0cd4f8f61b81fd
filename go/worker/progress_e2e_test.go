package worker_test

// End-to-end tests of worker progress and resume details against the real
// server; skipped while it answers UNIMPLEMENTED for SessionEvents.

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

// events follows SessionEvents with progress until the end of the test.
func events(t *testing.T, c *errand.Client, session string) <-chan errand.Event {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan errand.Event, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range c.SessionEvents(ctx, session, 0, errand.WithProgress()) {
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("SessionEvents: %v", err)
				}
				return
			}
			ch <- ev
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

func TestE2EProgressReachesSessionEvents(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	testkit.RequireRPC(t, c, "SessionEvents")
	tool := testkit.Name("steps")
	release := make(chan struct{})
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Five steps, then waits.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			for i := 1; i <= 5; i++ {
				if err := worker.Progress(ctx, float64(i), 5, "step", map[string]int{"step": i}); err != nil {
					return nil, err
				}
			}
			select {
			case <-release:
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	})
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	completions := testkit.Follow(t, c, session, 0)
	first := events(t, c, session)
	ack, err := c.Submit(ctx, session, tool, nil)
	if err != nil {
		t.Fatal(err)
	}

	// The latest report wins: the last one (5 of 5) always arrives.
	var seen []*errand.Progress
	for len(seen) == 0 || seen[len(seen)-1].Progress != 5 {
		ev := await(t, first, "progress")
		if ev.Completion != nil {
			t.Fatalf("completion %+v before the task was released", ev.Completion)
		}
		seen = append(seen, ev.Progress)
	}
	last := seen[len(seen)-1]
	if len(seen) > 5 || last.TaskID != ack.TaskID || last.Tool != tool || last.Total != 5 || string(last.Detail) != `{"step":5}` {
		t.Errorf("%d progress events, the last %+v; want at most 5, for this task", len(seen), last)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].Index <= seen[i-1].Index {
			t.Errorf("progress index went from %d to %d", seen[i-1].Index, seen[i].Index)
		}
	}
	// A stream opened mid-task gets the latest progress first.
	if ev := await(t, events(t, c, session), "the replayed progress"); ev.Progress == nil || ev.Progress.Index != last.Index {
		t.Errorf("a new stream's first event = %+v, want progress index %d", ev, last.Index)
	}
	// The digest (once the server has it) and the task show it too.
	if testkit.HasRPC(t, c, "PendingDigest") {
		d, err := c.PendingDigest(ctx, session, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("digest text: %s", d.Text)
		if d.PendingCount != 1 || len(d.Pending) != 1 || d.Pending[0].ID != ack.TaskID || d.Pending[0].Progress == nil || d.Text == "" {
			t.Errorf("digest mid-task = %+v", d)
		}
	}
	if task, err := c.GetTask(ctx, ack.TaskID); err != nil || task.Progress == nil || task.Progress.Index != last.Index {
		t.Errorf("GetTask mid-task: progress %+v, %v", task.Progress, err)
	}

	close(release)
	for {
		ev := await(t, first, "the completion")
		if ev.Completion != nil {
			if ev.Completion.TaskID != ack.TaskID || ev.Completion.Seq != 1 {
				t.Errorf("completion = %+v", ev.Completion)
			}
			break
		}
		if ev.Progress.Index <= last.Index {
			t.Errorf("stale progress %+v after index %d", ev.Progress, last.Index)
		}
	}
	// Progress takes no seq: Completions still numbers the session from 1.
	if got := completions.Next(t); got.Seq != 1 || got.TaskID != ack.TaskID {
		t.Errorf("Completions after progress: seq %d", got.Seq)
	}
}

func TestE2EResumeDetailReachesTheNextAttempt(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	testkit.RequireRPC(t, c, "SessionEvents")
	tool := testkit.Name("resumable")
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	evs := events(t, c, session)

	// The first worker reports where it is, then loses the server.
	lost := testkit.Dial(t, testkit.Addr())
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	registered := make(chan string, 4)
	w1 := worker.New(lost, worker.WithName("first"), worker.OnRegistered(func(id string) { registered <- id }))
	w1.Handle(tool, "Resumable.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
		if err := worker.Progress(ctx, 3, 10, "page 3", map[string]int{"page": 3}); err != nil {
			return nil, err
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ran := make(chan error, 1)
	go func() { ran <- w1.Run(runCtx) }()
	await(t, registered, "the first worker's registration")
	ack, err := c.Submit(ctx, session, tool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev := await(t, evs, "the first attempt's progress"); ev.Progress == nil || ev.Progress.TaskID != ack.TaskID {
		t.Fatalf("first event = %+v, want the progress", ev)
	}
	stop()
	lost.Close()
	await(t, ran, "the first worker's end")

	// Its successor reads the detail and finishes.
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Resumable.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			return worker.ResumeDetail(ctx), nil
		})
	})
	for {
		ev := await(t, evs, "the completion")
		if ev.Completion == nil {
			continue
		}
		if ev.Completion.Status != errand.StatusSucceeded || string(ev.Completion.Result) != `{"page":3}` || ev.Completion.Attempts < 2 {
			t.Errorf("completion = %v %s after %d attempts; want the resume detail from attempt 2",
				ev.Completion.Status, ev.Completion.Result, ev.Completion.Attempts)
		}
		break
	}
}

func TestE2ERegisterRefusesBadPolicies(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	// Budgets and fallbacks come with ReadResult's server part, their checks
	// at registration (and delivery) with SessionEvents'.
	testkit.RequireRPC(t, c, "ReadResult")
	testkit.RequireRPC(t, c, "SessionEvents")
	noop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	type badPolicy struct {
		what string
		opt  func(name string) worker.ToolOption
	}
	cases := []badPolicy{
		{"a budget above the maximum", func(string) worker.ToolOption { return worker.WithResultBudget(1 << 40) }},
		{"a fallback to itself", func(name string) worker.ToolOption { return worker.WithFallbackTool(name) }},
		{"an unknown delivery", func(string) worker.ToolOption { return worker.WithDelivery(errand.Delivery(9)) }},
	}
	for _, tc := range cases {
		w := worker.New(c)
		name := testkit.Name("bad_policy")
		w.Handle(name, "Refused.", nil, noop, tc.opt(name))
		if err := w.Run(testkit.Ctx(t)); !errors.Is(err, errand.ErrInvalidArgument) {
			t.Errorf("Run with %s = %v, want ErrInvalidArgument", tc.what, err)
		}
	}
}
