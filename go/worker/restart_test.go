package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
)

// Run restarted as soon as WaitRegistered reports the previous Run's end
// starts (it is not "Run called twice"), and WaitRegistered then waits for
// the new registration instead of returning the previous Run's error.
//
// The old Run's goroutine is held right after its end became visible
// (worker.SetEndedHook), as a scheduler may hold it: without the hold that
// window is a few instructions wide. Before the fix, Run published its end
// and only then cleared its running flag, so the restart failed with "Run
// called twice" and WaitRegistered kept returning the old Run's error.
func TestWaitRegisteredAfterARestart(t *testing.T) {
	f := &fakeWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16),
		hold: make(chan struct{}, 2)} // one token answers one Register
	c := testkit.Dial(t, fakeserver.Start(t, nil, f))
	w := worker.New(c)
	w.Handle("crawl", "Crawls.", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	ended := make(chan struct{}, 2)
	resume := make(chan struct{})
	worker.SetEndedHook(w, func() { ended <- struct{}{}; <-resume })
	ctx := testkit.Ctx(t)

	ctx1, cancel1 := context.WithCancel(ctx)
	run1 := make(chan error, 1)
	go func() { run1 <- w.Run(ctx1) }()
	if f.next(t).GetRegister() == nil {
		t.Fatal("the first Run's first message is not Register")
	}
	f.hold <- struct{}{}
	if err := w.WaitRegistered(ctx); err != nil {
		t.Fatalf("WaitRegistered = %v, want nil once the first Run registered", err)
	}
	cancel1()
	await(t, ended, "the first Run's end")
	if err := w.WaitRegistered(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitRegistered after the first Run ended = %v, want its context.Canceled", err)
	}

	// The restart, while the first Run's goroutine is held after its end.
	ctx2, cancel2 := context.WithCancel(ctx)
	run2 := make(chan error, 1)
	go func() { run2 <- w.Run(ctx2) }()
	t.Cleanup(func() {
		cancel2()
		close(resume)
		if err := await(t, run1, "the first Run's return"); !errors.Is(err, context.Canceled) {
			t.Errorf("first Run = %v, want context.Canceled", err)
		}
		await(t, run2, "the second Run's return")
	})
	// WaitRegistered with a context already past its deadline answers what
	// it sees at once: ctx's DeadlineExceeded while a Run is on its way to
	// register, the old Run's Canceled if it still reports that one.
	expired, cancel := context.WithDeadline(ctx, time.Unix(0, 0))
	defer cancel()
	select {
	case m := <-f.got:
		if m.GetRegister() == nil {
			t.Fatalf("the restarted Run's first message is %v, want Register", m)
		}
	case err := <-run2:
		run2 <- err // for the cleanup
		t.Fatalf("the restarted Run returned %v (and WaitRegistered says %v), want it to register",
			err, w.WaitRegistered(expired))
	case <-time.After(testkit.Timeout):
		t.Fatal("the restarted Run neither registered nor returned")
	}
	if err := w.WaitRegistered(expired); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitRegistered before the server answered the new Register = %v, want the expired ctx's DeadlineExceeded", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- w.WaitRegistered(ctx) }()
	f.hold <- struct{}{}
	if err := await(t, waited, "WaitRegistered"); err != nil {
		t.Errorf("WaitRegistered = %v, want nil once the restarted Run registered", err)
	}
}
