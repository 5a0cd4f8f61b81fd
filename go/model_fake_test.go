package errand_test

// Unit tests of issue 17's client API against an in-process fake server
// (internal/fakeserver): what goes on the wire, and what the SDK makes of
// the server's answers.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeTools records requests and answers as its fields say.
type fakeTools struct {
	pb.UnimplementedToolServiceServer

	mu      sync.Mutex
	submits []*pb.SubmitToolRequest
	cancels []*pb.CancelTaskRequest
	acks    []*pb.AckCompletionsRequest
	ackErr  error
	digest  *pb.PendingDigestResponse
	result  string // ReadResult serves this text
	page    int    // bytes per page
	badPage bool   // answer every page at offset 0
	// events returns the events of one SessionEvents stream, given its
	// request and how many streams were opened before; a nil error after
	// sending them ends the stream as the server shutting down would.
	events  func(req *pb.SessionEventsRequest, n int) ([]*pb.SessionEvent, error)
	streams []*pb.SessionEventsRequest
	hold    chan struct{} // if set, a stream waits on it after its events
}

func (f *fakeTools) SubmitTool(_ context.Context, r *pb.SubmitToolRequest) (*pb.SubmitToolResponse, error) {
	f.mu.Lock()
	f.submits = append(f.submits, r)
	f.mu.Unlock()
	return &pb.SubmitToolResponse{TaskId: "t1", Ack: "task t1 is already running", Joined: true,
		Task: &pb.Task{TaskId: "t1", Delivery: pb.DeliveryPolicy_DELIVERY_POLICY_SILENT,
			Progress: &pb.Progress{TaskId: "t1", Index: 3, Progress: 1, Total: 4, Message: "a quarter"}}}, nil
}

func (f *fakeTools) CancelTask(_ context.Context, r *pb.CancelTaskRequest) (*pb.Task, error) {
	f.mu.Lock()
	f.cancels = append(f.cancels, r)
	f.mu.Unlock()
	return &pb.Task{TaskId: r.GetTaskId(), Status: pb.TaskStatus_TASK_STATUS_CANCELLED}, nil
}

func (f *fakeTools) AckCompletions(_ context.Context, r *pb.AckCompletionsRequest) (*pb.AckCompletionsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ackErr != nil {
		return nil, f.ackErr
	}
	f.acks = append(f.acks, r)
	return &pb.AckCompletionsResponse{Removed: 1, AckedSeq: r.GetUpToSeq()}, nil
}

func (f *fakeTools) PendingDigest(_ context.Context, r *pb.PendingDigestRequest) (*pb.PendingDigestResponse, error) {
	if r.GetSessionId() == "" {
		return nil, status.Error(codes.InvalidArgument, "session_id is empty")
	}
	return f.digest, nil
}

func (f *fakeTools) ReadResult(_ context.Context, r *pb.ReadResultRequest) (*pb.ResultChunk, error) {
	if r.GetTaskId() != "big" {
		return nil, status.Error(codes.NotFound, "no task "+r.GetTaskId())
	}
	total := uint64(len(f.result))
	if r.GetOffset() > total {
		return nil, status.Error(codes.OutOfRange, "offset past the end")
	}
	off := r.GetOffset()
	if f.badPage {
		off = 0
	}
	end := min(off+uint64(f.page), total)
	for end < total && !utf8.RuneStart(f.result[end]) {
		end-- // as the server does: a page ends on a character boundary
	}
	return &pb.ResultChunk{Data: f.result[off:end], Offset: off, TotalBytes: total, Eof: end == total}, nil
}

func (f *fakeTools) SessionEvents(r *pb.SessionEventsRequest, s grpc.ServerStreamingServer[pb.SessionEvent]) error {
	f.mu.Lock()
	n := len(f.streams)
	f.streams = append(f.streams, r)
	f.mu.Unlock()
	evs, err := f.events(r, n)
	for _, ev := range evs {
		if serr := s.Send(ev); serr != nil {
			return serr
		}
	}
	if err != nil {
		return err
	}
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-s.Context().Done():
		}
	}
	return nil
}

func dialFake(t *testing.T, f *fakeTools) *errand.Client {
	return testkit.Dial(t, fakeserver.Start(t, f, nil))
}

func comp(seq uint64, task string, d pb.DeliveryPolicy) *pb.SessionEvent {
	return &pb.SessionEvent{Event: &pb.SessionEvent_Completion{Completion: &pb.Completion{
		Seq: seq, TaskId: task, Status: pb.TaskStatus_TASK_STATUS_SUCCEEDED, Outcome: &pb.Completion_ResultJson{ResultJson: `{"ok":true}`},
		ResultBytes: 11, Message: "result of " + task, Delivery: d,
	}}}
}

func prog(task string, index uint64) *pb.SessionEvent {
	return &pb.SessionEvent{Event: &pb.SessionEvent_Progress{Progress: &pb.Progress{
		TaskId: task, Index: index, Progress: float64(index), Total: 10, Message: "step", DetailJson: `{"i":1}`,
	}}}
}

func TestSubmitOptionsOnTheWire(t *testing.T) {
	f := &fakeTools{}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	ack, err := c.Submit(ctx, "s", "tool", nil,
		errand.WithDelivery(errand.DeliveryInterrupt), errand.WithDedup(errand.DedupJoinInFlight),
		errand.WithResultBudget(16384), errand.WithFallbackTool("backup"))
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Joined || ack.Text != "task t1 is already running" || ack.Task.Delivery != errand.DeliverySilent {
		t.Errorf("ack = %+v, want Joined, the server's text verbatim and the task's delivery", ack)
	}
	if p := ack.Task.Progress; p == nil || p.Index != 3 || p.Total != 4 || p.Message != "a quarter" {
		t.Errorf("task progress = %+v", p)
	}
	if _, err := c.Submit(ctx, "s", "tool", nil, errand.WithFallbackLastGood(1500*time.Microsecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(ctx, "s", "tool", nil); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.submits[0]
	if r.GetDelivery() != pb.DeliveryPolicy_DELIVERY_POLICY_INTERRUPT || r.GetDedup() != pb.DedupPolicy_DEDUP_POLICY_JOIN_IN_FLIGHT ||
		r.GetResultBudgetBytes() != 16384 || r.GetFallback().GetTool() != "backup" {
		t.Errorf("first submit = %v", r)
	}
	if got := f.submits[1].GetFallback().GetLastGoodMaxAgeMs(); got != 2 {
		t.Errorf("WithFallbackLastGood(1.5ms) sent %d ms, want 2 (rounded up)", got)
	}
	if r := f.submits[2]; r.GetDelivery() != 0 || r.GetDedup() != 0 || r.GetResultBudgetBytes() != 0 || r.GetFallback() != nil {
		t.Errorf("a submit without options should leave the policies unset: %v", r)
	}
}

// WithQueueTimeout sends queue_timeout_ms in whole milliseconds, rounded
// up; zero or no option leaves it 0 (the tool's, then the server's). A
// negative one fails Submit (durations_test.go).
func TestQueueTimeoutOnTheWire(t *testing.T) {
	f := &fakeTools{}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	cases := []struct {
		opts []errand.SubmitOption
		want uint64
	}{
		{[]errand.SubmitOption{errand.WithQueueTimeout(2 * time.Minute)}, 120000},
		{[]errand.SubmitOption{errand.WithQueueTimeout(1500 * time.Microsecond)}, 2},
		{[]errand.SubmitOption{errand.WithQueueTimeout(0)}, 0},
		{nil, 0},
		{[]errand.SubmitOption{errand.WithTaskTimeout(time.Second), errand.WithQueueTimeout(3 * time.Second)}, 3000},
	}
	for _, tc := range cases {
		if _, err := c.Submit(ctx, "s", "tool", nil, tc.opts...); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, tc := range cases {
		if got := f.submits[i].GetQueueTimeoutMs(); got != tc.want {
			t.Errorf("submit %d: queue_timeout_ms = %d, want %d", i, got, tc.want)
		}
	}
	if r := f.submits[4]; r.GetTimeoutMs() != 1000 {
		t.Errorf("WithQueueTimeout changed timeout_ms: %v", r)
	}
}

func TestCancelWithReasonAndAcknowledge(t *testing.T) {
	f := &fakeTools{}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	if _, err := c.Cancel(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	task, err := c.Cancel(ctx, "t2", errand.WithReason("the user changed their mind"))
	if err != nil || task.Status != errand.StatusCancelled {
		t.Fatalf("Cancel = %+v, %v", task, err)
	}
	f.mu.Lock()
	if f.cancels[0].GetReason() != "" || f.cancels[1].GetReason() != "the user changed their mind" {
		t.Errorf("cancel requests = %v", f.cancels)
	}
	f.mu.Unlock()

	a, err := c.Acknowledge(ctx, "s", 7)
	if err != nil || a.Seq != 7 || a.Removed != 1 {
		t.Errorf("Acknowledge = %+v, %v", a, err)
	}
	f.mu.Lock()
	f.ackErr = status.Error(codes.OutOfRange, "up_to_seq 9 is beyond the last seq 7")
	f.mu.Unlock()
	if _, err := c.AckCompletions(ctx, "s", 9); !errors.Is(err, errand.ErrOutOfRange) {
		t.Errorf("ack beyond the last seq = %v, want ErrOutOfRange", err)
	}
}

func TestPendingDigestVerbatim(t *testing.T) {
	text := "You are waiting for 1 tool call:\n- t1 slow {\"n\":1} running 3s, 50% (half)\n"
	f := &fakeTools{digest: &pb.PendingDigestResponse{
		Pending: []*pb.Task{{TaskId: "t1", Tool: "slow", Status: pb.TaskStatus_TASK_STATUS_RUNNING,
			Progress: &pb.Progress{TaskId: "t1", Index: 2, Progress: 1, Total: 2, Message: "half"}}},
		LastSeq: 4, AckedSeq: 3, Text: text, Unacknowledged: 1, PendingCount: 1,
	}}
	c := dialFake(t, f)
	d, err := c.PendingDigest(testkit.Ctx(t), "s", 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Text != text || d.LastSeq != 4 || d.AckedSeq != 3 || d.Unacknowledged != 1 || d.PendingCount != 1 {
		t.Errorf("digest = %+v", d)
	}
	if len(d.Pending) != 1 || d.Pending[0].Status != errand.StatusRunning || d.Pending[0].Progress.Message != "half" {
		t.Errorf("pending = %+v", d.Pending)
	}
	if _, err := c.PendingDigest(testkit.Ctx(t), "", 0); !errors.Is(err, errand.ErrInvalidArgument) {
		t.Errorf("PendingDigest(\"\") = %v, want ErrInvalidArgument", err)
	}
}

func TestReadFullResultPages(t *testing.T) {
	// Multi-byte characters, so pages cut inside them are put back together.
	big := `{"text":"` + strings.Repeat("añ€😀 ", 3000) + `"}`
	f := &fakeTools{result: big, page: 4093}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	got, err := c.ReadFullResult(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256([]byte(big)) {
		t.Fatalf("ReadFullResult returned %d bytes that differ from the %d sent", len(got), len(big))
	}
	ch, err := c.ReadResult(ctx, "big", 10, 5)
	if err != nil || ch.Offset != 10 || ch.TotalBytes != uint64(len(big)) || ch.EOF {
		t.Errorf("ReadResult page = %+v, %v", ch, err)
	}
	if _, err := c.ReadResult(ctx, "big", uint64(len(big))+1, 0); !errors.Is(err, errand.ErrOutOfRange) {
		t.Errorf("offset past the end = %v, want ErrOutOfRange", err)
	}
	if _, err := c.ReadFullResult(ctx, "nope"); !errors.Is(err, errand.ErrNotFound) {
		t.Errorf("unknown task = %v, want ErrNotFound", err)
	}

	// A truncated completion: Decode refuses, CompletionResult fetches.
	trunc := &errand.Completion{TaskID: "big", Status: errand.StatusSucceeded, ResultTruncated: true,
		ResultBytes: uint64(len(big)), ResultPreview: "head … tail"}
	var v any
	if err := trunc.Decode(&v); !errors.Is(err, errand.ErrResultNotInline) {
		t.Errorf("Decode(truncated) = %v, want ErrResultNotInline", err)
	}
	if full, err := c.CompletionResult(ctx, trunc); err != nil || !bytes.Equal(full, []byte(big)) {
		t.Errorf("CompletionResult(truncated) = %d bytes, %v", len(full), err)
	}
	byRef := &errand.Completion{TaskID: "big", Status: errand.StatusSucceeded, ResultBytes: uint64(len(big))}
	if byRef.ResultInline() {
		t.Error("a completion without its result (by reference) reports it inline")
	}
	if full, err := c.CompletionResult(ctx, byRef); err != nil || !bytes.Equal(full, []byte(big)) {
		t.Errorf("CompletionResult(by reference) = %d bytes, %v", len(full), err)
	}
	failed := &errand.Completion{TaskID: "big", Status: errand.StatusFailed, Error: &errand.ToolError{Code: "tool_error", Message: "x"}}
	if _, err := c.CompletionResult(ctx, failed); err == nil || err.Error() != "tool_error: x" {
		t.Errorf("CompletionResult(failed) = %v, want its ToolError", err)
	}
	inline := &errand.Completion{TaskID: "other", Status: errand.StatusSucceeded, Result: json.RawMessage(`1`), ResultBytes: 1}
	if r, err := c.CompletionResult(ctx, inline); err != nil || string(r) != "1" {
		t.Errorf("CompletionResult(inline) = %s, %v (must not call ReadResult)", r, err)
	}

	// Pages that do not line up end in an error, not a loop.
	f.badPage = true
	if _, err := c.ReadFullResult(ctx, "big"); !errors.Is(err, errand.ErrInternal) {
		t.Errorf("misaligned pages = %v, want ErrInternal", err)
	}
}

func TestSessionEventsResumesWithoutDuplicates(t *testing.T) {
	const (
		idle      = pb.DeliveryPolicy_DELIVERY_POLICY_WHEN_IDLE
		interrupt = pb.DeliveryPolicy_DELIVERY_POLICY_INTERRUPT
	)
	f := &fakeTools{hold: make(chan struct{})}
	f.events = func(r *pb.SessionEventsRequest, n int) ([]*pb.SessionEvent, error) {
		if n == 0 {
			// Cut mid-task: the reconnect must resume after seq 2.
			return []*pb.SessionEvent{comp(1, "a", idle), prog("b", 1), prog("b", 2), comp(2, "c", interrupt)},
				status.Error(codes.Unavailable, "connection reset")
		}
		// The replay repeats what was seen; only the new ones may come out.
		return []*pb.SessionEvent{comp(2, "c", interrupt), prog("b", 2), prog("b", 3), comp(3, "b", idle), prog("b", 4)}, nil
	}
	c := dialFake(t, f)
	ctx, cancel := context.WithCancel(testkit.Ctx(t))
	defer cancel()
	var got []string
	for ev, err := range c.SessionEvents(ctx, "s", 0, errand.WithProgress(), errand.WithResultsByReference()) {
		if err != nil {
			t.Fatalf("SessionEvents: %v", err)
		}
		switch {
		case ev.Completion != nil:
			got = append(got, "c"+ev.Completion.TaskID)
			if ev.Completion.Message != "result of "+ev.Completion.TaskID || ev.Completion.ResultBytes != 11 {
				t.Errorf("completion = %+v", ev.Completion)
			}
		case ev.Progress != nil:
			got = append(got, "p"+ev.Progress.TaskID+string(rune('0'+ev.Progress.Index)))
			if string(ev.Progress.Detail) != `{"i":1}` || ev.Progress.Total != 10 {
				t.Errorf("progress = %+v", ev.Progress)
			}
		}
		if len(got) == 7 {
			break
		}
	}
	// pb4 follows cb's completion in this fake: a real server never sends it,
	// and the SDK passes on what it gets rather than guessing.
	want := "ca pb1 pb2 cc pb3 cb pb4"
	if strings.Join(got, " ") != want {
		t.Errorf("events = %s, want %s", strings.Join(got, " "), want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.streams) != 2 || f.streams[1].GetAfterSeq() != 2 || !f.streams[1].GetIncludeProgress() || !f.streams[1].GetResultsByReference() {
		t.Errorf("streams = %v, want the second to resume after seq 2 with the same flags", f.streams)
	}
}

func TestSessionEventsUnimplemented(t *testing.T) {
	c := testkit.Dial(t, fakeserver.Start(t, &pb.UnimplementedToolServiceServer{}, nil))
	for _, err := range c.SessionEvents(testkit.Ctx(t), "s", 0) {
		if !errors.Is(err, errand.ErrUnimplemented) {
			t.Errorf("SessionEvents on an old server = %v, want ErrUnimplemented", err)
		}
		break
	}
}
