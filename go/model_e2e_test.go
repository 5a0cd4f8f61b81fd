package errand_test

// End-to-end tests of issue 17 ("what the model sees") against the real
// server binary. Each skips while the server answers UNIMPLEMENTED for the
// RPC that stands for its part (testkit.RequireRPC), and runs once it lands.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

// eventStream follows SessionEvents in the background; read it with next.
type eventStream struct{ ch chan eventItem }

type eventItem struct {
	ev  errand.Event
	err error
}

func followEvents(t *testing.T, c *errand.Client, session string, after uint64, opts ...errand.EventsOption) *eventStream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &eventStream{ch: make(chan eventItem, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range c.SessionEvents(ctx, session, after, opts...) {
			s.ch <- eventItem{ev, err}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func (s *eventStream) next(t *testing.T) errand.Event {
	t.Helper()
	select {
	case it := <-s.ch:
		if it.err != nil {
			t.Fatalf("SessionEvents: %v", it.err)
		}
		return it.ev
	case <-testkit.Ctx(t).Done():
		t.Fatalf("no session event within %v", testkit.Timeout)
	}
	return errand.Event{}
}

// recv waits for one value of ch, at most testkit.Timeout.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
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

// nextCompletion skips progress events.
func (s *eventStream) nextCompletion(t *testing.T) *errand.Completion {
	t.Helper()
	for {
		if ev := s.next(t); ev.Completion != nil {
			return ev.Completion
		}
	}
}

func TestE2EDeliveryPoliciesReachTheInbox(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	testkit.RequireRPC(t, c, "PendingDigest")
	testkit.RequireRPC(t, c, "SessionEvents")
	quiet, plain := testkit.Name("quiet"), testkit.Name("plain")
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(quiet, "Echo, silent by default.", nil, echo, worker.WithDelivery(errand.DeliverySilent))
		w.Handle(plain, "Echo.", nil, echo)
	})
	ctx := testkit.Ctx(t)
	tools, err := c.ListTools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools {
		if tool.Name == quiet && tool.Delivery != errand.DeliverySilent {
			t.Errorf("ListTools: %s has delivery %v, registered silent", quiet, tool.Delivery)
		}
	}
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	// One at a time, so the seqs are known: 1 silent (the tool's), 2 idle
	// (the default), 3 interrupt and 4 idle (each the submit's, over the tool's).
	calls := []struct {
		tool string
		opts []errand.SubmitOption
		want errand.Delivery
	}{
		{quiet, nil, errand.DeliverySilent},
		{plain, nil, errand.DeliveryWhenIdle},
		{plain, []errand.SubmitOption{errand.WithDelivery(errand.DeliveryInterrupt)}, errand.DeliveryInterrupt},
		{quiet, []errand.SubmitOption{errand.WithDelivery(errand.DeliveryWhenIdle)}, errand.DeliveryWhenIdle},
	}
	for i, call := range calls {
		ack, err := c.Submit(ctx, session, call.tool, map[string]int{"i": i}, call.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Task.Delivery != call.want {
			t.Errorf("call %d: task delivery %v, want %v", i, ack.Task.Delivery, call.want)
		}
		got := stream.Next(t)
		if got.Seq != uint64(i+1) || got.Delivery != call.want {
			t.Fatalf("call %d: completion seq %d delivery %v, want seq %d %v", i, got.Seq, got.Delivery, i+1, call.want)
		}
	}

	in := c.NewInbox(ctx, session, errand.WithCoalesceWindow(0))
	defer in.Close()
	// The replay comes in seq order: once seq 3 is out, 1 and 2 are queued.
	if got := recv(t, in.Interrupts(), "the interrupt"); got == nil || got.Seq != 3 {
		t.Fatalf("interrupt = %+v, want seq 3", got)
	}
	var ready []*errand.Completion
	for len(ready) < 2 {
		got, err := in.WaitReady(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ready = append(ready, got...)
	}
	if s := seqs(ready); s != "2when_idle 4when_idle " {
		t.Errorf("ready = %s", s)
	}
	if s := seqs(in.Silent()); s != "1silent " {
		t.Errorf("silent = %s", s)
	}
	if acked, err := in.Ack(ctx); err != nil || acked != 4 {
		t.Errorf("Ack = %d, %v; want 4", acked, err)
	}
	d, err := c.PendingDigest(ctx, session, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Text != "" || d.PendingCount != 0 || d.Unacknowledged != 0 || d.AckedSeq != 4 || d.LastSeq != 4 {
		t.Errorf("digest once everything is done and acknowledged = %+v, want an empty text", d)
	}
	// A stream from 0 starts after the acknowledged seq.
	events := followEvents(t, c, session, 0)
	if _, err := c.Submit(ctx, session, plain, nil); err != nil {
		t.Fatal(err)
	}
	if got := events.nextCompletion(t); got.Seq != 5 {
		t.Errorf("first completion after the ack = seq %d, want 5", got.Seq)
	}
	if _, err := c.Submit(ctx, session, plain, nil, errand.WithDelivery(errand.Delivery(9))); !errors.Is(err, errand.ErrInvalidArgument) {
		t.Errorf("an unknown delivery = %v, want ErrInvalidArgument", err)
	}
	// Acknowledgement is monotonic.
	if a, err := c.Acknowledge(ctx, session, 2); err != nil || a.Seq != 4 {
		t.Errorf("Acknowledge(2) after 4 = %+v, %v; want Seq 4", a, err)
	}
	if _, err := c.Acknowledge(ctx, session, 99); !errors.Is(err, errand.ErrOutOfRange) {
		t.Errorf("Acknowledge beyond the last seq = %v, want ErrOutOfRange", err)
	}
}

func TestE2ECancelWithReason(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	testkit.RequireRPC(t, c, "PendingDigest")
	tool := testkit.Name("forever")
	started := make(chan struct{}, 2)
	causes := make(chan error, 2)
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Runs until cancelled.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			causes <- context.Cause(ctx)
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
	recv(t, started, "the handler's start")
	if _, err := c.Cancel(ctx, ack.TaskID, errand.WithReason(strings.Repeat("x", 1025))); !errors.Is(err, errand.ErrInvalidArgument) {
		t.Errorf("a reason over 1 KiB = %v, want ErrInvalidArgument", err)
	}
	const reason = "the user found the answer elsewhere"
	if _, err := c.Cancel(ctx, ack.TaskID, errand.WithReason(reason)); err != nil {
		t.Fatal(err)
	}
	if cause := recv(t, causes, "the handler's cancellation"); !errors.Is(cause, worker.ErrCancelled) || !strings.Contains(cause.Error(), reason) {
		t.Errorf("handler's cause = %v, want ErrCancelled with the reason", cause)
	}
	got := stream.Next(t)
	t.Logf("cancelled completion message: %s", got.Message)
	if got.Status != errand.StatusCancelled || !strings.Contains(got.Message, reason) {
		t.Errorf("completion = %v %q, want cancelled with the reason in its message", got.Status, got.Message)
	}
}

func TestE2EJoinInFlight(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	testkit.RequireRPC(t, c, "ReadResult")
	tool := testkit.Name("slow")
	release := make(chan struct{})
	runs := make(chan struct{}, 64)
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Waits to be released.", nil, func(ctx context.Context, args json.RawMessage) (any, error) {
			runs <- struct{}{}
			select {
			case <-release:
				return args, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	}, worker.WithConcurrency(20))
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)

	acks := make(chan errand.Ack, 20)
	errs := make(chan error, 20)
	for i := range 20 {
		args := json.RawMessage(`{"a":1,"b":[2,3]}`)
		if i%2 == 1 {
			args = json.RawMessage(`{"b":[2,3],"a":1}`)
		}
		go func() {
			ack, err := c.Submit(ctx, session, tool, args, errand.WithDedup(errand.DedupJoinInFlight))
			acks <- ack
			errs <- err
		}()
	}
	ids := map[string]int{}
	joined := 0
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		ack := <-acks
		ids[ack.TaskID]++
		if ack.Joined {
			joined++
			if ack.Text == "" {
				t.Error("a joined ack has no text for the model")
			} else if joined == 1 {
				t.Logf("joined ack text: %s", ack.Text)
			}
		}
	}
	if len(ids) != 1 || joined != 19 {
		t.Fatalf("20 identical submits gave tasks %v and %d joined; want one task, 19 joined", ids, joined)
	}
	recv(t, runs, "the run")
	close(release)
	first := stream.Next(t)
	if ids[first.TaskID] != 20 || first.Status != errand.StatusSucceeded {
		t.Errorf("completion = %+v", first)
	}
	// Finished: the same call runs again.
	again, err := c.Submit(ctx, session, tool, json.RawMessage(`{"a":1,"b":[2,3]}`), errand.WithDedup(errand.DedupJoinInFlight))
	if err != nil || again.Joined || again.TaskID == first.TaskID {
		t.Errorf("submit after the completion = %+v, %v; want a new task", again, err)
	}
	if got := stream.Next(t); got.TaskID != again.TaskID || got.Seq != first.Seq+1 {
		t.Errorf("second completion = seq %d task %s; one completion per run", got.Seq, got.TaskID)
	}
	// With OFF, every submit runs.
	seen := map[string]bool{}
	for range 5 {
		ack, err := c.Submit(ctx, session, tool, json.RawMessage(`{"a":1}`), errand.WithDedup(errand.DedupOff))
		if err != nil || ack.Joined || seen[ack.TaskID] {
			t.Fatalf("submit with dedup off = %+v, %v", ack, err)
		}
		seen[ack.TaskID] = true
	}
}

// bigResult is a result of about n bytes: {"text":"..."} with multi-byte text.
func bigResult(n int) json.RawMessage {
	return json.RawMessage(`{"text":"` + strings.Repeat("αβγ-ok ", n/10) + `"}`)
}

func TestE2EResultBudgetAndReadResult(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	testkit.RequireRPC(t, c, "ReadResult")
	big, summarized := testkit.Name("big"), testkit.Name("summarized")
	const mib = 1 << 20
	result := bigResult(mib)
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(big, "Returns about 1 MiB, or n bytes.", nil, func(_ context.Context, args json.RawMessage) (any, error) {
			var in struct{ N int }
			if err := json.Unmarshal(args, &in); err != nil {
				return nil, err
			}
			if in.N > 0 {
				return bigResult(in.N), nil
			}
			return result, nil
		})
		w.Handle(summarized, "Returns about 1 MiB with a summary.", nil, func(context.Context, json.RawMessage) (any, error) {
			return worker.WithSummary(result, "about a megabyte of Greek letters"), nil
		})
	}, worker.WithConcurrency(2))
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)

	ack, err := c.Submit(ctx, session, big, nil, errand.WithResultBudget(16384))
	if err != nil {
		t.Fatal(err)
	}
	got := stream.Next(t)
	if got.TaskID != ack.TaskID || !got.ResultTruncated || got.ResultBytes != uint64(len(result)) || len(got.Result) != 0 {
		t.Fatalf("completion: truncated %v, %d bytes, %d inline; want truncated, %d bytes, none inline",
			got.ResultTruncated, got.ResultBytes, len(got.Result), len(result))
	}
	t.Logf("truncated completion message: %.600s", got.Message)
	if len(got.ResultPreview) == 0 || len(got.ResultPreview) > 16384 || got.Message == "" {
		t.Errorf("preview of %d bytes (budget 16384), message %q", len(got.ResultPreview), got.Message)
	}
	full, err := c.CompletionResult(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(full) != sha256.Sum256(result) {
		t.Errorf("ReadResult pages rebuilt %d bytes that differ from the %d the worker sent", len(full), len(result))
	}

	// A worker summary replaces the cut preview.
	if _, err := c.Submit(ctx, session, summarized, nil); err != nil {
		t.Fatal(err)
	}
	if got := stream.Next(t); !got.ResultTruncated || got.ResultPreview != "about a megabyte of Greek letters" {
		t.Errorf("summarized completion: truncated %v, preview %q", got.ResultTruncated, got.ResultPreview)
	}

	// A budget above the result's size delivers it whole.
	if _, err := c.Submit(ctx, session, big, map[string]int{"n": 20000}, errand.WithResultBudget(32768)); err != nil {
		t.Fatal(err)
	}
	whole := stream.Next(t)
	if whole.ResultTruncated || !whole.ResultInline() || uint64(len(whole.Result)) != whole.ResultBytes {
		t.Errorf("completion under a larger budget: truncated %v, %d of %d bytes inline", whole.ResultTruncated, len(whole.Result), whole.ResultBytes)
	}
	// By reference, SessionEvents leaves every result off, the whole one too
	// (checked once the server has SessionEvents).
	if testkit.HasRPC(t, c, "SessionEvents") {
		byRef := followEvents(t, c, session, whole.Seq-1, errand.WithResultsByReference())
		got := byRef.nextCompletion(t)
		if got.Seq != whole.Seq || len(got.Result) != 0 || got.ResultBytes != whole.ResultBytes || got.ResultInline() {
			t.Errorf("by reference: seq %d with %d bytes inline of %d", got.Seq, len(got.Result), got.ResultBytes)
		}
		if full, err := c.CompletionResult(ctx, got); err != nil || string(full) != string(whole.Result) {
			t.Errorf("CompletionResult(by reference) = %d bytes, %v", len(full), err)
		}
	}

	// Bad input.
	if _, err := c.Submit(ctx, session, big, nil, errand.WithResultBudget(1<<40)); !errors.Is(err, errand.ErrInvalidArgument) {
		t.Errorf("a budget above the maximum = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.ReadResult(ctx, ack.TaskID, uint64(len(result))+1, 0); !errors.Is(err, errand.ErrOutOfRange) {
		t.Errorf("ReadResult past the end = %v, want ErrOutOfRange", err)
	}
}

func TestE2EFallbacks(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	testkit.RequireRPC(t, c, "ReadResult")
	primary, backup, last, flaky := testkit.Name("primary"), testkit.Name("backup"), testkit.Name("last"), testkit.Name("flaky")
	lastRuns := make(chan struct{}, 8)
	var hang atomic.Bool
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		// primary fails or blocks when its arguments say so, else echoes.
		w.Handle(primary, "Fails on demand.", nil, func(ctx context.Context, args json.RawMessage) (any, error) {
			var in struct{ Fail, Block bool }
			if err := json.Unmarshal(args, &in); err != nil {
				return nil, err
			}
			switch {
			case in.Block:
				<-ctx.Done()
				return nil, ctx.Err()
			case in.Fail:
				return nil, errors.New("primary is down")
			}
			return args, nil
		})
		// backup always fails, and has a fallback of its own (never chained).
		w.Handle(backup, "Always fails.", nil, func(context.Context, json.RawMessage) (any, error) {
			return nil, errors.New("backup is down too")
		}, worker.WithFallbackTool(last))
		w.Handle(last, "Answers.", nil, func(context.Context, json.RawMessage) (any, error) {
			lastRuns <- struct{}{}
			return "from the fallback", nil
		})
		// flaky answers until the test makes it hang.
		w.Handle(flaky, "Answers, then hangs.", nil, func(ctx context.Context, args json.RawMessage) (any, error) {
			if hang.Load() {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return map[string]int{"v": 1}, nil
		})
	}, worker.WithConcurrency(4))
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)

	// A fallback tool answers a failure.
	if _, err := c.Submit(ctx, session, primary, map[string]bool{"fail": true}, errand.WithFallbackTool(last)); err != nil {
		t.Fatal(err)
	}
	got := stream.Next(t)
	recv(t, lastRuns, "the fallback's run")
	t.Logf("fallback completion message: %s", got.Message)
	if got.Status != errand.StatusSucceeded || got.Fallback == nil || got.Fallback.Tool != last ||
		got.Fallback.PrimaryStatus != errand.StatusFailed || got.Fallback.PrimaryError == nil || got.Message == "" {
		t.Errorf("completion answered by a fallback tool = %+v (fallback %+v)", got, got.Fallback)
	}
	// One hop only: backup fails, and its own fallback does not run.
	if _, err := c.Submit(ctx, session, primary, map[string]bool{"fail": true}, errand.WithFallbackTool(backup)); err != nil {
		t.Fatal(err)
	}
	if got := stream.Next(t); got.Status != errand.StatusFailed || got.Fallback == nil || got.Fallback.Tool != backup {
		t.Errorf("completion after a failed fallback = %v, fallback %+v; want FAILED from %s", got.Status, got.Fallback, backup)
	}
	if len(lastRuns) != 0 {
		t.Error("a fallback's fallback ran: fallbacks must not chain")
	}

	// A last-good result answers a timeout, with its age (a success counts
	// as last good only when it asked for a last-good fallback itself).
	good, err := c.Submit(ctx, session, flaky, map[string]int{"q": 1}, errand.WithFallbackLastGood(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := stream.Next(t); got.TaskID != good.TaskID || got.Status != errand.StatusSucceeded {
		t.Fatalf("good run = %+v", got)
	}
	hang.Store(true)
	if _, err := c.Submit(ctx, session, flaky, map[string]int{"q": 1},
		errand.WithTaskTimeout(300*time.Millisecond), errand.WithFallbackLastGood(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got = stream.Next(t)
	t.Logf("stale completion message: %s", got.Message)
	if got.Status != errand.StatusSucceeded || got.Fallback == nil || got.Fallback.PrimaryStatus != errand.StatusTimedOut ||
		got.Fallback.TaskID != good.TaskID || got.Fallback.LastGoodAge <= 0 || got.Fallback.Tool != "" || string(got.Result) != `{"v":1}` {
		t.Errorf("completion answered by the last good result = %v %s, fallback %+v", got.Status, got.Result, got.Fallback)
	}

	// A cancel never falls back.
	blocked, err := c.Submit(ctx, session, primary, map[string]bool{"block": true}, errand.WithFallbackTool(last))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cancel(ctx, blocked.TaskID); err != nil {
		t.Fatal(err)
	}
	if got := stream.Next(t); got.Status != errand.StatusCancelled || got.Fallback != nil {
		t.Errorf("cancelled completion = %v, fallback %+v; want CANCELLED without a fallback", got.Status, got.Fallback)
	}
	// Bad input.
	if _, err := c.Submit(ctx, session, primary, nil, errand.WithFallbackTool(primary)); !errors.Is(err, errand.ErrInvalidArgument) {
		t.Errorf("a fallback to the tool itself = %v, want ErrInvalidArgument", err)
	}
	if _, err := c.Submit(ctx, session, primary, nil, errand.WithFallbackTool(testkit.Name("nope"))); !errors.Is(err, errand.ErrNotFound) {
		t.Errorf("an unknown fallback tool = %v, want ErrNotFound", err)
	}
}
