package errand

import (
	"context"
	"io"
	"iter"

	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/backoff"
	"google.golang.org/grpc"
)

// Event is one event of a session: exactly one of Completion and Progress is set.
type Event struct {
	Completion *Completion
	Progress   *Progress
}

// EventsOption configures SessionEvents (and an Inbox).
type EventsOption func(*pb.SessionEventsRequest)

// WithProgress also streams running tasks' progress: on (re)connecting, the
// latest report of each running task, then live reports, at most one per
// task per the server's --progress-interval (500 ms by default; the latest
// wins), never after the task's completion. Progress takes no Seq.
func WithProgress() EventsOption {
	return func(r *pb.SessionEventsRequest) { r.IncludeProgress = true }
}

// WithResultsByReference leaves every result off the stream
// (Completion.Result empty, ResultBytes its size): read the ones you need
// with Client.CompletionResult or ReadFullResult.
func WithResultsByReference() EventsOption {
	return func(r *pb.SessionEventsRequest) { r.ResultsByReference = true }
}

// SessionEvents follows a session like Completions, with progress
// (WithProgress) and results by reference (WithResultsByReference): it yields
// every retained completion with Seq > afterSeq (and above the session's
// acknowledged seq), then the latest progress of each running task, then both
// live. Completions come in Seq order, each once, as from Completions.
//
// It reconnects by itself like Completions, resuming after the last Seq it
// yielded; a progress report is yielded at most once (a reconnect's replay of
// one already seen is dropped). It ends when the loop breaks or after one
// final error, as Completions; ErrUnimplemented means a server without
// issue 17's contract (use Completions there).
func (c *Client) SessionEvents(ctx context.Context, session string, afterSeq uint64, opts ...EventsOption) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		req := &pb.SessionEventsRequest{SessionId: session}
		for _, opt := range opts {
			opt(req)
		}
		last := afterSeq
		// The highest progress index yielded per task still running; bounded
		// by the session's unfinished tasks, cleared on each completion.
		seen := map[string]uint64{}
		c.resume(ctx, "SessionEvents", session, &last, func(b *backoff.Backoff) error {
			return c.followEvents(ctx, req, &last, seen, b, yield)
		}, func(err error) { yield(Event{}, err) })
	}
}

// followEvents runs one SessionEvents stream, as follow does for Completions.
func (c *Client) followEvents(ctx context.Context, proto *pb.SessionEventsRequest, last *uint64,
	seen map[string]uint64, b *backoff.Backoff, yield func(Event, error) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &pb.SessionEventsRequest{
		SessionId: proto.GetSessionId(), AfterSeq: *last,
		IncludeProgress: proto.GetIncludeProgress(), ResultsByReference: proto.GetResultsByReference(),
	}
	stream, err := c.tools.SessionEvents(ctx, req, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return errEnded
		}
		if err != nil {
			return err
		}
		b.Reset()
		var ev Event
		switch e := m.GetEvent().(type) {
		case *pb.SessionEvent_Completion:
			if e.Completion.GetSeq() <= *last {
				continue // seen before a reconnect
			}
			*last = e.Completion.GetSeq()
			delete(seen, e.Completion.GetTaskId())
			ev.Completion = completionFromPB(e.Completion)
		case *pb.SessionEvent_Progress:
			p := e.Progress
			if p.GetIndex() != 0 && p.GetIndex() <= seen[p.GetTaskId()] {
				continue // replayed after a reconnect
			}
			seen[p.GetTaskId()] = p.GetIndex()
			ev.Progress = progressFromPB(p)
		default:
			continue // an event kind newer than this SDK
		}
		if !yield(ev, nil) {
			return errStop
		}
	}
}
