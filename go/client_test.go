package errand_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/internal/testserver"
	"github.com/errand-dev/errand/go/worker"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// echo returns its arguments as the result.
func echo(_ context.Context, args json.RawMessage) (any, error) { return args, nil }

func serveEcho(t *testing.T, c *errand.Client) string {
	name := testkit.Name("echo")
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(name, "Returns its arguments.", `{"type":"object"}`, echo)
	}, worker.WithConcurrency(4))
	return name
}

func TestSubmitAndOutOfOrderCompletions(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	slow, fast := testkit.Name("slow"), testkit.Name("fast")
	release := make(chan struct{})
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(slow, "Waits until the test releases it.", nil, func(ctx context.Context, args json.RawMessage) (any, error) {
			select {
			case <-release:
				return map[string]string{"speed": "slow"}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		w.Handle(fast, "Answers at once.", nil, func(context.Context, json.RawMessage) (any, error) {
			return map[string]string{"speed": "fast"}, nil
		})
	}, worker.WithConcurrency(2))

	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)

	slowAck, err := c.Submit(ctx, session, slow, map[string]int{"n": 1})
	if err != nil {
		t.Fatalf("Submit(slow): %v", err)
	}
	if slowAck.TaskID == "" || !strings.Contains(slowAck.Text, slowAck.TaskID) {
		t.Errorf("ack text should name the task ID %q: %q", slowAck.TaskID, slowAck.Text)
	}
	if slowAck.Task == nil || slowAck.Task.Status.Finished() {
		t.Errorf("ack task should be unfinished: %+v", slowAck.Task)
	}
	fastAck, err := c.Submit(ctx, session, fast, json.RawMessage(`{"n":2}`))
	if err != nil {
		t.Fatalf("Submit(fast): %v", err)
	}

	first := stream.Next(t)
	if first.TaskID != fastAck.TaskID || first.Seq != 1 || first.Status != errand.StatusSucceeded {
		t.Fatalf("first completion = seq %d task %s %v, want seq 1 fast task %s succeeded", first.Seq, first.TaskID, first.Status, fastAck.TaskID)
	}
	var out struct{ Speed string }
	if err := first.Decode(&out); err != nil || out.Speed != "fast" {
		t.Errorf("fast result = %s (%v)", first.Result, err)
	}
	if first.Message == "" || string(first.Arguments) != `{"n":2}` {
		t.Errorf("completion lacks message or arguments: %+v", first)
	}
	close(release)
	second := stream.Next(t)
	if second.TaskID != slowAck.TaskID || second.Seq != 2 || second.Status != errand.StatusSucceeded {
		t.Fatalf("second completion = seq %d task %s %v, want seq 2 slow task", second.Seq, second.TaskID, second.Status)
	}
	task, err := c.GetTask(ctx, slowAck.TaskID)
	if err != nil {
		t.Fatalf("GetTask: %v", err)
	}
	if task.Status != errand.StatusSucceeded || task.Seq != 2 || task.Attempts != 1 || task.FinishedAt.IsZero() {
		t.Errorf("GetTask = %+v, want succeeded, seq 2, 1 attempt, finished", task)
	}
}

// A broken connection in the middle of a stream: the iterator reconnects and
// resumes after the last seq it yielded, replaying what completed meanwhile.
func TestCompletionsResumeAfterReconnect(t *testing.T) {
	direct := testkit.Dial(t, testkit.Addr())
	tool := serveEcho(t, direct)
	proxy, err := testserver.NewProxy(testkit.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	viaProxy := testkit.Dial(t, proxy.Addr)

	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, viaProxy, session, 0)
	watch := testkit.Follow(t, direct, session, 0) // tells when tasks finished
	want := map[uint64]string{}
	submit := func(n int) {
		for i := 0; i < n; i++ {
			ack, err := direct.Submit(ctx, session, tool, map[string]int{"i": len(want)})
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			c := watch.Next(t)
			if c.TaskID != ack.TaskID {
				t.Fatalf("watch saw task %s, want %s", c.TaskID, ack.TaskID)
			}
			want[c.Seq] = c.TaskID
		}
	}
	var got []*errand.Completion
	submit(3)
	for len(got) < 3 {
		got = append(got, stream.Next(t))
	}

	proxy.Pause() // reconnects are refused until Resume
	proxy.Sever() // the stream breaks here
	submit(3)     // these complete while the stream is down
	proxy.Resume()
	for len(got) < 6 {
		got = append(got, stream.Next(t))
	}
	submit(2) // live again
	for len(got) < 8 {
		got = append(got, stream.Next(t))
	}

	for i, c := range got {
		if c.Seq != uint64(i+1) || c.TaskID != want[c.Seq] {
			t.Errorf("completion %d: seq %d task %s, want seq %d task %s", i, c.Seq, c.TaskID, i+1, want[uint64(i+1)])
		}
	}
	select {
	case extra := <-streamItems(stream):
		t.Errorf("unexpected extra item after 8 completions: %+v", extra)
	default:
	}
}

func streamItems(s *testkit.Stream) <-chan testkit.Item { return s.Items() }

// Resuming by hand: stop after some completions, follow again from the last
// seq processed; AckCompletions drops what is no longer needed.
func TestCompletionsAfterSeqAndAck(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := serveEcho(t, c)
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	watch := testkit.Follow(t, c, session, 0)
	var ids []string
	for i := 0; i < 4; i++ {
		if _, err := c.Submit(ctx, session, tool, map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, watch.Next(t).TaskID)
	}

	var last uint64
	for comp, err := range c.Completions(ctx, session, 0) {
		if err != nil {
			t.Fatal(err)
		}
		last = comp.Seq
		if last == 2 {
			break
		}
	}
	resumed := testkit.Follow(t, c, session, last)
	for _, seq := range []uint64{3, 4} {
		if got := resumed.Next(t); got.Seq != seq || got.TaskID != ids[seq-1] {
			t.Errorf("resumed: seq %d task %s, want seq %d task %s", got.Seq, got.TaskID, seq, ids[seq-1])
		}
	}

	removed, err := c.AckCompletions(ctx, session, 2)
	if err != nil {
		t.Fatalf("AckCompletions: %v", err)
	}
	if removed != 2 {
		t.Errorf("AckCompletions removed %d, want 2", removed)
	}
	replay := testkit.Follow(t, c, session, 0)
	if got := replay.Next(t); got.Seq != 3 {
		t.Errorf("after ack up to 2, replay from 0 starts at seq %d, want 3", got.Seq)
	}
}

func TestIdempotencyKey(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := serveEcho(t, c)
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	first, err := c.Submit(ctx, session, tool, nil, errand.WithIdempotencyKey("k1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Submit(ctx, session, tool, nil, errand.WithIdempotencyKey("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if again.TaskID != first.TaskID || !again.Deduplicated || first.Deduplicated {
		t.Errorf("resubmit with the same key: %s (dedup %v), first %s (dedup %v)", again.TaskID, again.Deduplicated, first.TaskID, first.Deduplicated)
	}
	if again.Task == nil || again.Task.IdempotencyKey != "k1" {
		t.Errorf("task should carry the key: %+v", again.Task)
	}
}

func TestListTools(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := serveEcho(t, c)
	tools, err := c.ListTools(testkit.Ctx(t))
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	for _, tl := range tools {
		if tl.Name == tool {
			if !strings.HasPrefix(tl.Description, "Returns its arguments.") || len(tl.Description) <= len("Returns its arguments.") {
				t.Errorf("description should carry the async notice: %q", tl.Description)
			}
			if tl.Workers != 1 || !json.Valid(tl.InputSchema) {
				t.Errorf("tool = %+v, want 1 worker and a JSON schema", tl)
			}
			return
		}
	}
	t.Fatalf("ListTools lacks %s: %+v", tool, tools)
}

func TestErrors(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := serveEcho(t, c)
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")

	check := func(what string, err error, sentinel error, code codes.Code) {
		t.Helper()
		if !errors.Is(err, sentinel) || status.Code(err) != code {
			t.Errorf("%s: err = %v (code %v), want %v / %v", what, err, status.Code(err), sentinel, code)
		}
		var e *errand.Error
		if errors.As(err, &e) && e.Message == "" {
			t.Errorf("%s: error has no message to act on", what)
		}
	}
	_, err := c.Submit(ctx, session, "no_such_tool_"+tool, nil)
	check("Submit(unknown tool)", err, errand.ErrNotFound, codes.NotFound)
	_, err = c.Submit(ctx, "", tool, nil)
	check("Submit(empty session)", err, errand.ErrInvalidArgument, codes.InvalidArgument)
	_, err = c.Submit(ctx, session, tool, []int{1, 2})
	check("Submit(array arguments)", err, errand.ErrInvalidArgument, codes.InvalidArgument)
	_, err = c.GetTask(ctx, "00000000-0000-4000-8000-000000000000")
	check("GetTask(unknown)", err, errand.ErrNotFound, codes.NotFound)
	_, err = c.Cancel(ctx, "00000000-0000-4000-8000-000000000000")
	check("Cancel(unknown)", err, errand.ErrNotFound, codes.NotFound)

	watch := testkit.Follow(t, c, session, 0)
	ack, err := c.Submit(ctx, session, tool, nil)
	if err != nil {
		t.Fatal(err)
	}
	watch.Next(t)
	_, err = c.Cancel(ctx, ack.TaskID)
	check("Cancel(finished task)", err, errand.ErrFailedPrecondition, codes.FailedPrecondition)
	if errors.Is(err, errand.ErrNotFound) {
		t.Errorf("a FAILED_PRECONDITION error must not match ErrNotFound")
	}

	n := 0
	for _, err := range c.Completions(ctx, "", 0) {
		n++
		check("Completions(empty session)", err, errand.ErrInvalidArgument, codes.InvalidArgument)
	}
	if n != 1 {
		t.Errorf("Completions(empty session) yielded %d items, want one error", n)
	}

	_, err = c.Submit(ctx, session, tool, func() {})
	if !errors.Is(err, errand.ErrInvalidArgument) {
		t.Errorf("Submit(unencodable arguments) = %v, want ErrInvalidArgument", err)
	}
}

func TestContextDeadlineRespected(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	tool := serveEcho(t, c)

	// A stream with nothing to deliver ends with the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	var last error
	n := 0
	for _, err := range c.Completions(ctx, testkit.Name("idle"), 0) {
		n++
		last = err
	}
	if n != 1 || !errors.Is(last, context.DeadlineExceeded) {
		t.Errorf("idle Completions yielded %d items ending with %v, want one DeadlineExceeded", n, last)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Completions returned %v after a 300ms deadline", d)
	}

	// An expired context fails a call at once, without reaching the server.
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := c.Submit(expired, testkit.Name("s"), tool, nil); !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Submit(expired ctx) = %v, want DeadlineExceeded", err)
	}
	cancelled, cancel3 := context.WithCancel(context.Background())
	cancel3()
	if _, err := c.ListTools(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("ListTools(cancelled ctx) = %v, want context.Canceled", err)
	}

	// Dial's own deadline: TestDialEndsWithCtxWhileTheFirstAttemptHangs and
	// TestDialFailsFastNamingTheCause (dial_test.go).
}

// deadAddr is a loopback address with nothing listening.
func deadAddr(t *testing.T) string {
	p, err := testserver.NewProxy("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	addr := p.Addr
	p.Close()
	return addr
}

// With the durable store, a stream follows the session across a kill -9 and
// restart of the server on the same port, without gap or duplicate.
func TestCompletionsAcrossServerRestart(t *testing.T) {
	if !testserver.SupportsDataDir() {
		t.Skip("the server binary has no `serve --data-dir` yet")
	}
	srv, err := testserver.Start(testserver.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Kill() })
	c := testkit.Dial(t, srv.Addr)
	tool := testkit.Name("echo")
	w := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Returns its arguments.", nil, echo)
	})
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	stream := testkit.Follow(t, c, session, 0)
	var ids []string
	for i := 0; i < 2; i++ {
		ack, err := c.Submit(ctx, session, tool, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ack.TaskID)
		if got := stream.Next(t); got.TaskID != ack.TaskID || got.Seq != uint64(i+1) {
			t.Fatalf("before restart: seq %d task %s", got.Seq, got.TaskID)
		}
	}
	if srv, err = srv.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	t.Cleanup(func() { srv.Kill() })
	w.AwaitRegistered(t)
	if _, err := c.GetTask(ctx, ids[0]); errors.Is(err, errand.ErrNotFound) {
		// `serve --data-dir` is accepted, but the store did not keep the task.
		t.Skip("the server forgot its tasks across a restart with --data-dir: no durable store yet")
	}
	for i := 2; i < 4; i++ {
		ack, err := c.Submit(ctx, session, tool, nil)
		if err != nil {
			t.Fatalf("Submit after restart: %v", err)
		}
		if got := stream.Next(t); got.TaskID != ack.TaskID || got.Seq != uint64(i+1) {
			t.Fatalf("after restart: seq %d task %s, want seq %d task %s", got.Seq, got.TaskID, i+1, ack.TaskID)
		}
	}
}
