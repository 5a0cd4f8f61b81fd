package worker_test

// WaitRegistered: the way to know a worker's tools exist on the server
// before submitting to them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/internal/testserver"
	"github.com/errand-dev/errand/go/worker"
)

// It returns when the server answers Register, not before; called before
// Run has started, it waits for Run.
func TestWaitRegisteredWaitsForTheServersAnswer(t *testing.T) {
	f := &fakeWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16), hold: make(chan struct{})}
	c := testkit.Dial(t, fakeserver.Start(t, nil, f))
	w := worker.New(c)
	w.Handle("crawl", "Crawls.", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	ctx := testkit.Ctx(t)

	waited := make(chan error, 1)
	go func() { waited <- w.WaitRegistered(ctx) }() // before Run
	runCtx, cancel := context.WithCancel(context.Background())
	var runErr error
	ran := make(chan struct{})
	go func() { runErr = w.Run(runCtx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran })

	if f.next(t).GetRegister() == nil {
		t.Fatal("the worker's first message is not Register")
	}
	select {
	case err := <-waited:
		t.Fatalf("WaitRegistered returned %v before the server answered Register", err)
	default:
	}
	close(f.hold)
	if err := await(t, waited, "WaitRegistered"); err != nil {
		t.Fatalf("WaitRegistered = %v, want nil once registered", err)
	}
	if err := w.WaitRegistered(ctx); err != nil {
		t.Errorf("WaitRegistered on a registered worker = %v, want nil at once", err)
	}

	// Once Run has returned, it returns Run's error.
	cancel()
	await(t, ran, "Run's return")
	if err := w.WaitRegistered(ctx); !errors.Is(err, context.Canceled) || err != runErr {
		t.Errorf("WaitRegistered after Run returned %v = %v, want Run's error", runErr, err)
	}
}

// A Run that fails (a tool name the server refuses) ends the wait with its
// error instead of leaving it hanging.
func TestWaitRegisteredReturnsRunsError(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	w := worker.New(c)
	w.Handle("bad name!", "Invalid name.", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	ran := make(chan error, 1)
	go func() { ran <- w.Run(testkit.Ctx(t)) }()
	err := w.WaitRegistered(testkit.Ctx(t))
	if !errors.Is(err, errand.ErrInvalidArgument) {
		t.Errorf("WaitRegistered = %v, want Run's ErrInvalidArgument", err)
	}
	if runErr := await(t, ran, "Run's return"); runErr != err {
		t.Errorf("Run = %v, WaitRegistered = %v: want the same error", runErr, err)
	}

	// Run without tools fails at once, too.
	empty := worker.New(c)
	go empty.Run(testkit.Ctx(t))
	if err := empty.WaitRegistered(testkit.Ctx(t)); err == nil || !strings.Contains(err.Error(), "no tools") {
		t.Errorf("WaitRegistered of a worker without tools = %v, want Run's error", err)
	}
}

func TestWaitRegisteredHonoursItsContext(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	w := worker.New(c) // never run
	w.Handle(testkit.Name("idle"), "Idle.", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.WaitRegistered(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitRegistered without Run = %v, want context.DeadlineExceeded", err)
	}
}

// The README's Usage snippet (go/README.md and the root README's Go
// section), as written, on fresh servers: without waiting for the
// registration its Submit raced the worker's Register and often got
// `not found: unknown tool "word_count"`.
func TestUsageSnippetOnAFreshServer(t *testing.T) {
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			srv, err := testserver.Start(testserver.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Kill() })
			ctx, cancel := context.WithCancel(testkit.Ctx(t))
			defer cancel()
			var out strings.Builder
			if err := usageSnippet(ctx, srv.Addr, &out); err != nil {
				t.Fatalf("the snippet: %v", err)
			}
			if !strings.Contains(out.String(), ` succeeded {"words":3}`) {
				t.Errorf("the snippet printed %q, want the word count", out.String())
			}
		})
	}
}

// usageSnippet is go/README.md's Usage snippet; only the address and the
// output differ.
func usageSnippet(ctx context.Context, addr string, out *strings.Builder) error {
	c, err := errand.Dial(ctx, addr) // errand.WithTLSFiles(...), errand.WithBearerToken(t), ...
	if err != nil {
		return err
	}
	defer c.Close()

	// A worker serving one tool (usually its own process).
	w := worker.New(c, worker.WithConcurrency(4))
	w.Handle("word_count", "Counts the words of a text.",
		`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`,
		func(ctx context.Context, args json.RawMessage) (any, error) {
			var in struct{ Text string }
			if err := json.Unmarshal(args, &in); err != nil {
				return nil, err
			}
			return map[string]int{"words": len(strings.Fields(in.Text))}, nil
		})
	go w.Run(ctx)
	if err := w.WaitRegistered(ctx); err != nil { // the server knows word_count from here on
		return err
	}

	// The agent: submit answers at once; results arrive later on one stream.
	ack, err := c.Submit(ctx, "session-1", "word_count", map[string]string{"text": "a b c"})
	if err != nil {
		return err // errors.Is(err, errand.ErrNotFound), status.Code(err), ...
	}
	fmt.Fprintln(out, ack.Text) // for the model: the result comes later, don't invent it
	// The stream replays the completions the server still holds (earlier runs'
	// too), then follows new ones: match the task ID, and acknowledge what you used.
	for comp, err := range c.Completions(ctx, "session-1", 0) { // reconnects and resumes by itself
		if err != nil {
			return err
		}
		if comp.TaskID != ack.TaskID {
			continue
		}
		fmt.Fprintln(out, comp.Seq, comp.TaskID, comp.Status, string(comp.Result), comp.Message)
		if _, err := c.AckCompletions(ctx, "session-1", comp.Seq); err != nil {
			return err // the server may drop them now
		}
		break // the result is in: leaving the loop closes the stream
	}
	return nil
}
