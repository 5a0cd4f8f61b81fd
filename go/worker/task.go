package worker

import (
	"context"
	"time"
)

// TaskInfo is the task a handler runs for, as the server assigned it. It is
// what the Python SDK's errand.context.current_task() gives (task_id,
// session_id, tool, attempt, timeout_ms) and what `errand worker --exec`
// passes a program as ERRAND_TASK_ID, ERRAND_SESSION_ID, ERRAND_TOOL and
// ERRAND_ATTEMPT.
type TaskInfo struct {
	// TaskID is the task's ID, as Submit returned it to the agent; the same
	// on every attempt.
	TaskID string
	// SessionID is the agent session that submitted the call.
	SessionID string
	// Tool is the name of the tool called (a handler may serve several).
	Tool string
	// Attempt is 1 on the first dispatch, greater after a worker was lost
	// mid-task or the server restarted. A tool may therefore run more than
	// once: TaskID with Attempt lets it stay idempotent (key side effects on
	// TaskID, which every attempt shares; Attempt > 1 says an earlier run
	// may have done some of them).
	Attempt uint32
	// Timeout is how long the run may take: the server times the task out
	// this long after dispatching it (the submit's WithTaskTimeout, else the
	// tool's WithTimeout, else the server's default). 0 when the server gave
	// none.
	Timeout time.Duration
	// Deadline is when this worker cancels the handler's context with
	// ErrTimedOut: the assignment's arrival plus Timeout. Zero when Timeout
	// is 0. ctx.Deadline() reports the same time, unless Run's context ends
	// earlier.
	Deadline time.Time
}

// TaskFrom returns the task whose handler ctx belongs to, and whether ctx
// is a handler's (or derived from one). Outside a handler it returns the
// zero TaskInfo and false.
//
//	func(ctx context.Context, args json.RawMessage) (any, error) {
//		task, _ := worker.TaskFrom(ctx)
//		if err := payments.Charge(ctx, order, task.TaskID); err != nil { // TaskID: the charge's idempotency key
//			return nil, err
//		}
//		...
//	}
func TaskFrom(ctx context.Context) (TaskInfo, bool) {
	tc := taskFrom(ctx)
	if tc == nil {
		return TaskInfo{}, false
	}
	a := tc.a
	return TaskInfo{
		TaskID:    a.GetTaskId(),
		SessionID: a.GetSessionId(),
		Tool:      a.GetTool(),
		Attempt:   a.GetAttempt(),
		Timeout:   time.Duration(a.GetTimeoutMs()) * time.Millisecond,
		Deadline:  tc.deadline,
	}, true
}
