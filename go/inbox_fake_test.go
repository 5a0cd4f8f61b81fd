package errand_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/testkit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	pUnset     = pb.DeliveryPolicy_DELIVERY_POLICY_UNSPECIFIED
	pIdle      = pb.DeliveryPolicy_DELIVERY_POLICY_WHEN_IDLE
	pInterrupt = pb.DeliveryPolicy_DELIVERY_POLICY_INTERRUPT
	pSilent    = pb.DeliveryPolicy_DELIVERY_POLICY_SILENT
)

func seqs(cs []*errand.Completion) string {
	s := ""
	for _, c := range cs {
		s += fmt.Sprintf("%d%s ", c.Seq, c.Delivery)
	}
	return s
}

func TestInboxSortsByDeliveryAndAcksWhatWasDrained(t *testing.T) {
	f := &fakeTools{hold: make(chan struct{})}
	f.events = func(*pb.SessionEventsRequest, int) ([]*pb.SessionEvent, error) {
		return []*pb.SessionEvent{comp(1, "a", pIdle), comp(2, "b", pInterrupt), comp(3, "c", pSilent),
			comp(4, "d", pUnset), comp(5, "e", pInterrupt), prog("f", 1)}, nil
	}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	progress := make(chan *errand.Progress, 1)
	in := c.NewInbox(ctx, "s", errand.WithProgressFunc(func(p *errand.Progress) { progress <- p }))
	defer in.Close()

	// The progress report comes last: once seen, every completion is queued.
	select {
	case p := <-progress:
		if p.TaskID != "f" || p.Index != 1 {
			t.Errorf("progress = %+v", p)
		}
	case <-ctx.Done():
		t.Fatal("no progress reached WithProgressFunc")
	}
	f.mu.Lock()
	if !f.streams[0].GetIncludeProgress() {
		t.Error("WithProgressFunc should ask the stream for progress")
	}
	f.mu.Unlock()
	if got := <-in.Interrupts(); got.Seq != 2 || got.Message != "result of b" {
		t.Errorf("first interrupt = %+v, want seq 2", got)
	}
	// Seq 5 was not taken from Interrupts(): it joins the next turn, in seq
	// order with the idle ones (seq 4 has no delivery: an older server).
	if got := seqs(in.Ready()); got != "1when_idle 4unspecified 5interrupt " {
		t.Errorf("Ready() = %s", got)
	}
	if got := in.Ready(); len(got) != 0 {
		t.Errorf("a second Ready() = %s, want nothing", seqs(got))
	}
	// Seq 3 (silent) is still held: only 1 and 2 may be acknowledged.
	if acked, err := in.Ack(ctx); err != nil || acked != 2 {
		t.Errorf("Ack = %d, %v; want 2 (seq 3 is undrained)", acked, err)
	}
	if got := seqs(in.Silent()); got != "3silent " {
		t.Errorf("Silent() = %s", got)
	}
	if acked, err := in.Ack(ctx); err != nil || acked != 5 {
		t.Errorf("Ack = %d, %v; want 5", acked, err)
	}
	if acked, err := in.Ack(ctx); err != nil || acked != 5 {
		t.Errorf("Ack with nothing new = %d, %v", acked, err)
	}
	f.mu.Lock()
	if len(f.acks) != 2 || f.acks[0].GetUpToSeq() != 2 || f.acks[1].GetUpToSeq() != 5 || f.acks[1].GetSessionId() != "s" {
		t.Errorf("acks sent = %v, want up to 2, then up to 5, and nothing more", f.acks)
	}
	f.mu.Unlock()

	in.Close()
	if _, open := <-in.Interrupts(); open {
		t.Error("Interrupts() should be closed after Close")
	}
	if _, err := in.WaitReady(ctx); !errors.Is(err, errand.ErrInboxClosed) {
		t.Errorf("WaitReady after Close = %v, want ErrInboxClosed", err)
	}
}

func TestInboxWaitReadyCoalescesAndIsBounded(t *testing.T) {
	f := &fakeTools{hold: make(chan struct{})}
	f.events = func(*pb.SessionEventsRequest, int) ([]*pb.SessionEvent, error) {
		var evs []*pb.SessionEvent
		for i := uint64(1); i <= 7; i++ {
			evs = append(evs, comp(i, fmt.Sprint("t", i), pIdle))
		}
		return evs, nil
	}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	in := c.NewInbox(ctx, "s", errand.WithInboxLimit(3), errand.WithCoalesceWindow(200*time.Millisecond))
	defer in.Close()
	var next uint64 = 1
	for next <= 7 {
		got, err := in.WaitReady(ctx)
		if err != nil {
			t.Fatalf("WaitReady: %v", err)
		}
		if len(got) > 3 {
			t.Errorf("a turn of %d completions from an inbox limited to 3", len(got))
		}
		for _, c := range got {
			if c.Seq != next {
				t.Fatalf("got seq %d, want %d (in order, once each)", c.Seq, next)
			}
			next++
		}
	}
}

func TestInboxReportsTheStreamsEnd(t *testing.T) {
	f := &fakeTools{}
	f.events = func(*pb.SessionEventsRequest, int) ([]*pb.SessionEvent, error) {
		return []*pb.SessionEvent{comp(1, "a", pIdle)}, status.Error(codes.PermissionDenied, "a worker token cannot follow sessions")
	}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	in := c.NewInbox(ctx, "s", errand.WithCoalesceWindow(0))
	defer in.Close()
	<-in.Done()
	if !errors.Is(in.Err(), errand.ErrPermissionDenied) {
		t.Errorf("Err() = %v, want ErrPermissionDenied", in.Err())
	}
	// What arrived before the end can still be drained, then the error shows.
	if got, err := in.WaitReady(ctx); err != nil || seqs(got) != "1when_idle " {
		t.Errorf("WaitReady = %s, %v", seqs(got), err)
	}
	if _, err := in.WaitReady(ctx); !errors.Is(err, errand.ErrPermissionDenied) {
		t.Errorf("WaitReady after the end = %v, want ErrPermissionDenied", err)
	}
}

func TestInboxNotifyWakesAnIdleAgent(t *testing.T) {
	f := &fakeTools{hold: make(chan struct{})}
	f.events = func(*pb.SessionEventsRequest, int) ([]*pb.SessionEvent, error) {
		return []*pb.SessionEvent{comp(1, "a", pSilent), comp(2, "b", pIdle), comp(3, "c", pIdle)}, nil
	}
	c := dialFake(t, f)
	ctx := testkit.Ctx(t)
	in := c.NewInbox(ctx, "s", errand.WithCoalesceWindow(0))
	defer in.Close()
	var got []*errand.Completion
	for len(got) < 2 {
		select {
		case <-in.Notify():
			got = append(got, in.Ready()...)
		case <-ctx.Done():
			t.Fatalf("Notify did not fire for the idle completions (got %s)", seqs(got))
		}
	}
	if seqs(got) != "2when_idle 3when_idle " {
		t.Errorf("ready after Notify = %s", seqs(got))
	}
	// The silent one woke nobody but is there for the next user message.
	if s := seqs(in.Silent()); s != "1silent " {
		t.Errorf("silent = %s", s)
	}
}
