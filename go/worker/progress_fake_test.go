package worker_test

// Unit tests of the worker's issue 17 API against an in-process fake server:
// the Register it sends, Progress and summaries on the wire, resume_detail
// and cancel reasons reaching the handler.

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
	"google.golang.org/grpc"
)

// fakeWorkers runs one scripted Connect stream: it accepts the Register at
// once, hands each message the worker sends to got and sends what the test
// puts on send.
type fakeWorkers struct {
	pb.UnimplementedWorkerServiceServer
	got  chan *pb.WorkerMessage
	send chan *pb.WorkerCommand
	// hold, if set, delays the answer to Register until it is closed (the
	// Register itself reaches got at once).
	hold chan struct{}
}

func (f *fakeWorkers) Connect(s grpc.BidiStreamingServer[pb.WorkerMessage, pb.WorkerCommand]) error {
	errs := make(chan error, 1)
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				errs <- err
				return
			}
			registered := &pb.WorkerCommand{Kind: &pb.WorkerCommand_Registered{Registered: &pb.Registered{WorkerId: "w1"}}}
			if m.GetRegister() != nil && f.hold != nil {
				f.got <- m
				<-f.hold
				f.send <- registered
				continue
			}
			if m.GetRegister() != nil {
				f.send <- registered
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
		case err := <-errs:
			return err
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
}

func (f *fakeWorkers) next(t *testing.T) *pb.WorkerMessage {
	t.Helper()
	select {
	case m := <-f.got:
		return m
	case <-time.After(testkit.Timeout):
		t.Fatal("the worker sent nothing")
	}
	return nil
}

func assign(task string, attempt uint32, resume string) *pb.WorkerCommand {
	return &pb.WorkerCommand{Kind: &pb.WorkerCommand_Assignment{Assignment: &pb.Assignment{
		TaskId: task, Tool: "crawl", ArgumentsJson: `{}`, Attempt: attempt, ResumeDetailJson: resume}}}
}

func TestProgressResumeSummaryAndPoliciesOnTheWire(t *testing.T) {
	f := &fakeWorkers{got: make(chan *pb.WorkerMessage, 16), send: make(chan *pb.WorkerCommand, 16)}
	c := testkit.Dial(t, fakeserver.Start(t, nil, f))
	ctx := testkit.Ctx(t)
	causes := make(chan error, 1)
	progressErrs := make(chan error, 1)
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle("crawl", "Crawls.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			start := 0
			if d := worker.ResumeDetail(ctx); d != nil {
				var st struct{ Page int }
				if err := json.Unmarshal(d, &st); err != nil {
					return nil, err
				}
				start = st.Page
			}
			if start == 0 { // the second task: wait to be cancelled
				<-ctx.Done()
				causes <- context.Cause(ctx)
				progressErrs <- worker.Progress(ctx, 1, 2, "too late", nil)
				return nil, ctx.Err()
			}
			for p := start; p < start+2; p++ {
				if err := worker.Progress(ctx, float64(p), 10, "page", map[string]int{"page": p}); err != nil {
					return nil, err
				}
			}
			return worker.WithSummary(map[string]int{"pages": 10}, "10 pages crawled"), nil
		}, worker.WithDelivery(errand.DeliveryInterrupt), worker.WithDedup(errand.DedupJoinInFlight),
			worker.WithResultBudget(4096), worker.WithFallbackLastGood(time.Minute), worker.CancellableByModel())
	})

	reg := f.next(t).GetRegister()
	if reg == nil || len(reg.GetTools()) != 1 {
		t.Fatalf("first message = %v, want Register with one tool", reg)
	}
	tool := reg.GetTools()[0]
	if tool.GetDelivery() != pb.DeliveryPolicy_DELIVERY_POLICY_INTERRUPT || tool.GetDedup() != pb.DedupPolicy_DEDUP_POLICY_JOIN_IN_FLIGHT ||
		tool.GetResultBudgetBytes() != 4096 || tool.GetFallback().GetLastGoodMaxAgeMs() != 60000 || !tool.GetCancellableByModel() {
		t.Errorf("registered tool = %v", tool)
	}

	// An attempt that resumes from page 4.
	f.send <- assign("t1", 2, `{"page":4}`)
	for _, want := range []float64{4, 5} {
		p := f.next(t).GetProgress()
		if p == nil || p.GetTaskId() != "t1" || p.GetAttempt() != 2 || p.GetProgress() != want || p.GetTotal() != 10 ||
			p.GetMessage() != "page" || p.GetDetailJson() != `{"page":`+string(rune('0'+int(want)))+`}` {
			t.Errorf("progress = %v, want page %v of task t1 attempt 2", p, want)
		}
	}
	res := f.next(t).GetResult()
	if res == nil || res.GetResultJson() != `{"pages":10}` || res.GetSummary() != "10 pages crawled" || res.GetAttempt() != 2 {
		t.Errorf("result = %v, want the JSON with the summary beside it", res)
	}

	// A cancel with a reason: the handler's cause says it and is ErrCancelled.
	f.send <- assign("t2", 1, "")
	f.send <- &pb.WorkerCommand{Kind: &pb.WorkerCommand_Cancel{Cancel: &pb.CancelAssignment{TaskId: "t2", Reason: "cancelled: the user said stop"}}}
	select {
	case cause := <-causes:
		if !errors.Is(cause, worker.ErrCancelled) || !strings.Contains(cause.Error(), "the user said stop") {
			t.Errorf("cause = %v, want ErrCancelled carrying the reason", cause)
		}
	case <-ctx.Done():
		t.Fatal("the handler was not cancelled")
	}
	if err := <-progressErrs; !errors.Is(err, context.Canceled) {
		t.Errorf("Progress after the task ended = %v, want context.Canceled", err)
	}
}

func TestProgressRefusesBadInput(t *testing.T) {
	if err := worker.Progress(context.Background(), 1, 2, "x", nil); !errors.Is(err, worker.ErrNoTask) {
		t.Errorf("Progress outside a handler = %v, want ErrNoTask", err)
	}
	if d := worker.ResumeDetail(context.Background()); d != nil {
		t.Errorf("ResumeDetail outside a handler = %s, want nil", d)
	}
	c := testkit.Dial(t, testkit.Addr())
	tool := testkit.Name("bad_progress")
	errs := make(chan []error, 1)
	testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(tool, "Reports bad progress.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			errs <- []error{
				worker.Progress(ctx, math.NaN(), 1, "", nil),
				worker.Progress(ctx, 1, math.Inf(1), "", nil),
				worker.Progress(ctx, 1, 2, "", json.RawMessage(`{not json`)),
				worker.Progress(ctx, 1, 2, "", strings.Repeat("x", worker.MaxDetailBytes)),
			}
			return "ok", nil
		})
	})
	if _, err := c.Submit(testkit.Ctx(t), testkit.Name("session"), tool, nil); err != nil {
		t.Fatal(err)
	}
	for i, err := range <-errs {
		if !errors.Is(err, errand.ErrInvalidArgument) {
			t.Errorf("bad progress %d = %v, want ErrInvalidArgument before sending", i, err)
		}
	}
}
