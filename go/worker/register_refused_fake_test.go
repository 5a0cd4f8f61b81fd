package worker_test

// A later Register the server refuses (a tool handled while Run runs) is
// answered with RegisterRefused and the stream goes on. The worker used to
// ignore that answer: WaitRegistered waited for it forever, and the refused
// tool went out again with every later Register and reconnect.

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const refusal = `this worker's token may not serve tool "denied"`

// refusingWorkers answers each Register in order, as the server does: with
// RegisterRefused (PERMISSION_DENIED) when it lists a tool it refuses
// (refused), with Registered otherwise. It hands each message the worker sends to got,
// sends what the test puts on send, and ends the current stream
// (UNAVAILABLE) when the test puts a value on end.
type refusingWorkers struct {
	pb.UnimplementedWorkerServiceServer
	got  chan *pb.WorkerMessage
	send chan *pb.WorkerCommand
	end  chan struct{}
	// How many Registers listing the tool "flaky" are still to be refused
	// UNAVAILABLE (the database could not be reached to check it).
	unavailable atomic.Int32
}

func (f *refusingWorkers) Connect(s grpc.BidiStreamingServer[pb.WorkerMessage, pb.WorkerCommand]) error {
	errs := make(chan error, 1)
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				errs <- err
				return
			}
			if reg := m.GetRegister(); reg != nil {
				// Queued before the test sees the Register: it is answered
				// before anything the test sends after.
				if slices.ContainsFunc(reg.GetTools(), func(t *pb.Tool) bool { return t.GetName() == "flaky" }) &&
					f.unavailable.Add(-1) >= 0 {
					f.send <- &pb.WorkerCommand{Kind: &pb.WorkerCommand_RegisterRefused{RegisterRefused: &pb.RegisterRefused{
						Code: int32(codes.Unavailable), Message: "the database could not be reached"}}}
				} else {
					f.send <- answer(reg)
				}
			}
			f.got <- m
		}
	}()
	for {
		select {
		case cmd := <-f.send:
			if err := s.Send(cmd); err != nil {
				return err
			}
		case <-f.end:
			return status.Error(codes.Unavailable, "the fake server ends the stream")
		case err := <-errs:
			return err
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
}

func answer(reg *pb.Register) *pb.WorkerCommand {
	if slices.ContainsFunc(reg.GetTools(), refused) {
		return &pb.WorkerCommand{Kind: &pb.WorkerCommand_RegisterRefused{RegisterRefused: &pb.RegisterRefused{
			Code: int32(codes.PermissionDenied), Message: refusal}}}
	}
	return &pb.WorkerCommand{Kind: &pb.WorkerCommand_Registered{Registered: &pb.Registered{WorkerId: "w1"}}}
}

// refused says whether the fake server refuses t: the tool "denied" as
// first handled ("Refused."), not once handled again with another
// description.
func refused(t *pb.Tool) bool {
	return t.GetName() == "denied" && t.GetDescription() == "Refused."
}

func toolNames(reg *pb.Register) []string {
	var names []string
	for _, t := range reg.GetTools() {
		names = append(names, t.GetName())
	}
	return names
}

func (f *refusingWorkers) nextRegister(t *testing.T) *pb.Register {
	t.Helper()
	m := await(t, f.got, "a message from the worker")
	if m.GetRegister() == nil {
		t.Fatalf("the worker sent %v, want Register", m)
	}
	return m.GetRegister()
}

func TestALaterRegisterRefusedFailsOnlyItsTool(t *testing.T) {
	f := &refusingWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16), end: make(chan struct{}, 1)}
	c := testkit.Dial(t, fakeserver.Start(t, nil, f))
	ctx := testkit.Ctx(t)
	started, release := make(chan struct{}, 1), make(chan struct{})
	noop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	tw := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle("crawl", "Waits.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			started <- struct{}{}
			select {
			case <-release:
				return "crawled", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	})
	if got := toolNames(f.nextRegister(t)); !slices.Equal(got, []string{"crawl"}) {
		t.Fatalf("first Register lists %v, want [crawl]", got)
	}
	f.send <- assign("t1", 1, "")
	await(t, started, "the running task's start")

	// A tool the server refuses, handled while a task runs.
	tw.Handle("denied", "Refused.", nil, noop)
	if got := toolNames(f.nextRegister(t)); !slices.Contains(got, "denied") {
		t.Fatalf("the later Register lists %v, want denied among them", got)
	}
	waited := make(chan error, 1)
	go func() { waited <- tw.WaitRegistered(ctx) }()
	err := await(t, waited, "WaitRegistered's answer to the refusal")
	if status.Code(err) != codes.PermissionDenied || !errors.Is(err, errand.ErrPermissionDenied) ||
		!strings.Contains(err.Error(), refusal) {
		t.Fatalf("WaitRegistered = %v, want the refusal: PERMISSION_DENIED, %q", err, refusal)
	}
	var e *errand.Error
	if !errors.As(err, &e) || e.Code != codes.PermissionDenied || e.Message != refusal {
		t.Errorf("WaitRegistered = %#v, want an *errand.Error with the refusal's code and message", err)
	}

	// The stream went on: the running task's result goes out on it.
	close(release)
	m := await(t, f.got, "the running task's result")
	if res := m.GetResult(); res.GetTaskId() != "t1" || res.GetResultJson() != `"crawled"` {
		t.Fatalf("the worker sent %v, want t1's result", m)
	}

	// A tool handled after it goes out without the refused one, and is
	// accepted; WaitRegistered for every tool still reports the refused one.
	tw.Handle("later", "Accepted.", nil, noop)
	if got := toolNames(f.nextRegister(t)); slices.Contains(got, "denied") || !slices.Contains(got, "later") {
		t.Fatalf("the next later Register lists %v, want later without denied", got)
	}
	if err := tw.WaitRegistered(ctx); status.Code(err) != codes.PermissionDenied {
		t.Errorf("WaitRegistered after the refusal = %v, want the refusal still", err)
	}

	// A reconnect registers the tools the server accepted, not the refused one.
	f.end <- struct{}{}
	if got := toolNames(f.nextRegister(t)); !slices.Equal(got, []string{"crawl", "later"}) {
		t.Fatalf("the Register after a reconnect lists %v, want [crawl later]", got)
	}
	tw.AwaitRegistered(t)
}

// A refusal is reported only to a WaitRegistered that waits for the refused
// tool, and its name is free again: handled again (fixed), it is registered
// and served. WaitRegistered returned the refusal for any tool waited for
// after it, and Handle panicked on the name as a duplicate.
func TestARefusedToolIsWaitedForAloneAndCanBeHandledAgain(t *testing.T) {
	f := &refusingWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16), end: make(chan struct{}, 1)}
	c := testkit.Dial(t, fakeserver.Start(t, nil, f))
	ctx := testkit.Ctx(t)
	noop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	tw := testkit.StartWorker(t, c, func(w *worker.Worker) { w.Handle("crawl", "Crawls.", nil, noop) })
	f.nextRegister(t)

	tw.Handle("denied", "Refused.", nil, noop)
	f.nextRegister(t)
	if err := tw.WaitRegistered(ctx, "denied"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("WaitRegistered(denied) = %v, want the refusal", err)
	}
	tw.Handle("later", "Accepted.", nil, noop)
	f.nextRegister(t)
	if err := tw.WaitRegistered(ctx, "later"); err != nil {
		t.Fatalf("WaitRegistered(later) after another tool's refusal = %v, want nil", err)
	}
	if err := tw.WaitRegistered(ctx, "crawl", "later"); err != nil {
		t.Errorf("WaitRegistered(crawl, later) = %v, want nil", err)
	}
	// Waiting for every tool includes the refused one until it is handled again.
	if err := tw.WaitRegistered(ctx); status.Code(err) != codes.PermissionDenied {
		t.Errorf("WaitRegistered() with denied refused = %v, want the refusal", err)
	}
	if err := tw.WaitRegistered(ctx, "nothing"); !errors.Is(err, errand.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), `"nothing"`) {
		t.Errorf("WaitRegistered(nothing) = %v, want ErrInvalidArgument naming the tool", err)
	}

	// Handled again, fixed: registered, and its calls reach the new handler.
	tw.Handle("denied", "Fixed.", nil, func(context.Context, json.RawMessage) (any, error) { return "fixed", nil })
	reg := f.nextRegister(t)
	if got := reg.GetTools(); len(got) != 1 || got[0].GetName() != "denied" || got[0].GetDescription() != "Fixed." {
		t.Fatalf("the Register of the tool handled again lists %v, want denied alone, Fixed.", got)
	}
	if err := tw.WaitRegistered(ctx, "denied"); err != nil {
		t.Fatalf("WaitRegistered(denied) once handled again = %v, want nil", err)
	}
	if err := tw.WaitRegistered(ctx); err != nil {
		t.Errorf("WaitRegistered() once every tool is registered = %v, want nil", err)
	}
	f.send <- &pb.WorkerCommand{Kind: &pb.WorkerCommand_Assignment{Assignment: &pb.Assignment{
		TaskId: "t1", Tool: "denied", ArgumentsJson: `{}`, Attempt: 1}}}
	m := await(t, f.got, "the call's result")
	if res := m.GetResult(); res.GetTaskId() != "t1" || res.GetResultJson() != `"fixed"` {
		t.Fatalf("the worker sent %v, want t1's result from the new handler", m)
	}

	// A reconnect registers each tool once, the fixed one with its new definition.
	f.end <- struct{}{}
	reg = f.nextRegister(t)
	if got := toolNames(reg); !slices.Equal(got, []string{"crawl", "later", "denied"}) {
		t.Fatalf("the Register after a reconnect lists %v, want [crawl later denied]", got)
	}
	tw.AwaitRegistered(t)
}

// A later Register refused UNAVAILABLE (the server could not reach its
// database to check the definition) is sent again on the same stream until
// it is answered otherwise; WaitRegistered waits meanwhile. The worker took
// it as a refusal for good: the tool was never registered again.
func TestALaterRegisterRefusedUnavailableIsSentAgain(t *testing.T) {
	f := &refusingWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16), end: make(chan struct{}, 1)}
	f.unavailable.Store(2)
	c := testkit.Dial(t, fakeserver.Start(t, nil, f))
	ctx := testkit.Ctx(t)
	noop := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	tw := testkit.StartWorker(t, c, func(w *worker.Worker) { w.Handle("crawl", "Crawls.", nil, noop) })
	f.nextRegister(t)

	tw.Handle("flaky", "Checked late.", nil, noop)
	waited := make(chan error, 1)
	go func() { waited <- tw.WaitRegistered(ctx, "flaky") }()
	for i := 0; i < 3; i++ { // two refused UNAVAILABLE, then accepted
		if got := toolNames(f.nextRegister(t)); !slices.Equal(got, []string{"flaky"}) {
			t.Fatalf("Register %d lists %v, want [flaky]", i+1, got)
		}
	}
	if err := await(t, waited, "WaitRegistered(flaky)"); err != nil {
		t.Fatalf("WaitRegistered(flaky) = %v, want nil once the server accepted it", err)
	}
	if err := tw.WaitRegistered(ctx); err != nil {
		t.Errorf("WaitRegistered() = %v, want nil", err)
	}
}
