package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// ErrNoTask: Progress was called with a context that is not a handler's. It
// matches errand.ErrInvalidArgument too, and status.Code gives
// codes.InvalidArgument.
var ErrNoTask = rpcerr.Sentinel(codes.InvalidArgument, "errand worker: not a tool handler's context")

type taskKey struct{}

// taskCtx is what a handler's context carries: the stream its task came on,
// the assignment, and when the worker times the run out (zero: never).
type taskCtx struct {
	s        *session
	a        *pb.Assignment
	deadline time.Time
}

func taskFrom(ctx context.Context) *taskCtx {
	tc, _ := ctx.Value(taskKey{}).(*taskCtx)
	return tc
}

// Progress reports the progress of the task whose handler ctx belongs to:
// progress done of total, in the tool's own unit (either 0 when unknown;
// both finite), a short status message for people and models (cut here at
// MaxProgressMessageBytes, 1 KiB, on a character boundary, as the server
// would cut it; bytes that are not UTF-8 are sent escaped as \xNN), and an optional detail the tool could resume from (encoded
// like a result: json.RawMessage, []byte of JSON, a value for encoding/json,
// or nil for none; at most MaxDetailBytes, the server's bound). If the
// worker is lost, the next attempt's ResumeDetail returns the last detail
// sent.
//
// Agents see progress on SessionEvents (WithProgress), at most one report
// per task per --progress-interval, the latest winning; it is kept in memory
// only. Each call sends one message, so report a few times a second at most.
//
// Errors: ErrNoTask (ctx is not a handler's), ctx's error once the task
// ended, an error matching ErrInvalidArgument for a bad value (a detail that
// is not JSON or is over MaxDetailBytes, or a report larger than the
// server's message limit, Registered.max_message_bytes, which would
// otherwise end the worker's stream; nothing is sent and the task goes on),
// or the stream's error when the connection is lost (the task then runs
// again elsewhere, and ctx is cancelled).
func Progress(ctx context.Context, progress, total float64, message string, detail any) error {
	tc := taskFrom(ctx)
	if tc == nil {
		return ErrNoTask
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, v := range []float64{progress, total} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("errand worker: Progress: progress and total must be finite, got %v of %v (%w)",
				progress, total, errand.ErrInvalidArgument)
		}
	}
	detailJSON, err := errand.JSONText(detail)
	if err != nil {
		return fmt.Errorf("errand worker: Progress: detail: %w (%w)", err, errand.ErrInvalidArgument)
	}
	msg, err := progressMessage(tc.a, progress, total, message, detailJSON, tc.s.maxMessage)
	if err != nil {
		return err
	}
	if err := tc.s.sendMsg(msg); err != nil {
		return fmt.Errorf("errand worker: Progress: the stream to the server broke: %w", err)
	}
	return nil
}

// ResumeDetail returns the detail of the last Progress an earlier attempt of
// this task reported (JSON text), so a long tool can resume where a lost
// worker stopped; nil on a first attempt, when none was reported, or when ctx
// is not a handler's.
func ResumeDetail(ctx context.Context) json.RawMessage {
	tc := taskFrom(ctx)
	if tc == nil || tc.a.GetResumeDetailJson() == "" {
		return nil
	}
	return json.RawMessage(tc.a.GetResumeDetailJson())
}

// Summarized is a result with a summary for the model; see WithSummary.
type Summarized struct {
	Result  any
	Summary string
}

// WithSummary wraps a handler's result with a short summary (at most the
// task's result budget, in bytes): when the result is larger than the
// budget, the model sees the summary instead of a cut preview of the JSON,
// and reads the whole result with ReadResult if it needs to.
//
//	return worker.WithSummary(rows, fmt.Sprintf("%d rows; the first: %v", len(rows), rows[0])), nil
func WithSummary(result any, summary string) Summarized {
	return Summarized{Result: result, Summary: summary}
}

// cancelCause turns CancelAssignment.reason into the handler's cause:
// "timeout", "cancelled", or "cancelled: " and the canceller's reason; or,
// with several servers on one database, "lease_lost: " and why: the server
// lost the task's lease and another took the task over (ErrCancelled too,
// saying so, since no client cancelled it).
func cancelCause(reason string) error {
	if reason == "timeout" {
		return ErrTimedOut
	}
	if why, ok := strings.CutPrefix(reason, "cancelled: "); ok && why != "" {
		return fmt.Errorf("%w: %s", ErrCancelled, why)
	}
	if why, ok := strings.CutPrefix(reason, "lease_lost: "); ok {
		return fmt.Errorf("%w: lease lost: %s", ErrCancelled, why)
	}
	return ErrCancelled
}
