package errand

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/utf8field"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Status is where a task is in its life: Queued → Running → one of the
// finished states (Succeeded, Failed, Cancelled, TimedOut).
type Status int32

const (
	StatusUnspecified Status = Status(pb.TaskStatus_TASK_STATUS_UNSPECIFIED)
	StatusQueued      Status = Status(pb.TaskStatus_TASK_STATUS_QUEUED)
	StatusRunning     Status = Status(pb.TaskStatus_TASK_STATUS_RUNNING)
	StatusSucceeded   Status = Status(pb.TaskStatus_TASK_STATUS_SUCCEEDED)
	StatusFailed      Status = Status(pb.TaskStatus_TASK_STATUS_FAILED)
	StatusCancelled   Status = Status(pb.TaskStatus_TASK_STATUS_CANCELLED)
	StatusTimedOut    Status = Status(pb.TaskStatus_TASK_STATUS_TIMED_OUT)
)

// String returns "queued", "running", "succeeded", "failed", "cancelled" or "timed_out".
func (s Status) String() string {
	switch s {
	case StatusQueued:
		return "queued"
	case StatusRunning:
		return "running"
	case StatusSucceeded:
		return "succeeded"
	case StatusFailed:
		return "failed"
	case StatusCancelled:
		return "cancelled"
	case StatusTimedOut:
		return "timed_out"
	case StatusUnspecified:
		return "unspecified"
	}
	return fmt.Sprintf("Status(%d)", int32(s))
}

// Finished reports whether s is a final state.
func (s Status) Finished() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled || s == StatusTimedOut
}

// ToolError says why a task did not succeed. Codes the server uses:
// "tool_error", "timeout", "cancelled", "worker_lost", "exit_status"; workers
// may send their own.
type ToolError struct {
	Code    string
	Message string
}

func (e *ToolError) Error() string { return e.Code + ": " + e.Message }

// Tool is a tool that workers serve.
type Tool struct {
	Name        string
	Description string // with the server's asynchronous notice appended
	InputSchema json.RawMessage
	Timeout     time.Duration // default timeout of one run; 0: the server's default
	Workers     uint32        // connected workers serving it right now
	// Queued counts its tasks waiting for a worker on this server. With
	// several servers on one database, tasks waiting in the shared store are
	// not counted until a server claims them.
	Queued uint32
	// Running counts its tasks running on this server's workers.
	Running uint32
	// QueueTimeout is how long its calls may wait for a worker by default,
	// counted from submit; 0: the server's --default-queue-timeout-ms.
	QueueTimeout time.Duration
	// Delivery of its completions when a submit does not say;
	// DeliveryUnspecified: the server's default.
	Delivery Delivery
	// Dedup of its calls when a submit does not say; DedupUnspecified: off.
	Dedup Dedup
	// ResultBudget is the most bytes of result delivered inline (about 4 per
	// token); 0: the server's --result-budget-bytes (16384 by default).
	ResultBudget uint64
	// Fallback answers its failed or timed-out calls; nil: none.
	Fallback *Fallback
	// CancellableByModel: a model may cancel its calls itself.
	CancellableByModel bool
}

// Ack is the immediate answer to Submit.
type Ack struct {
	TaskID string
	// Text is for the model: the task ID, that the result will come later in
	// a message carrying this ID, and that it must not be guessed meanwhile.
	Text string
	// Task is the task as queued.
	Task *Task
	// Deduplicated is true when an idempotency key matched an earlier submit.
	Deduplicated bool
	// Joined is true when the call joined an identical call still in flight
	// (DedupJoinInFlight): TaskID is that call's, Text says it is already
	// running, and one completion will answer both.
	Joined bool
}

// Task is one tool call and its state.
type Task struct {
	ID             string
	SessionID      string
	Tool           string
	Arguments      json.RawMessage
	Status         Status
	Result         json.RawMessage // set when Status is StatusSucceeded
	Error          *ToolError      // set when the task finished otherwise
	Attempts       uint32
	CreatedAt      time.Time
	StartedAt      time.Time // zero until dispatched
	FinishedAt     time.Time // zero until finished
	Timeout        time.Duration
	Seq            uint64 // seq of its completion; 0 while unfinished
	Elapsed        time.Duration
	IdempotencyKey string
	// WorkerID is the server-chosen ID of the worker connection running the
	// task (as worker.OnRegistered receives it); "" unless it is running on
	// a worker of this server.
	WorkerID string
	// WorkerName is that worker's name (worker.WithName); "" when WorkerID is.
	WorkerName string
	RetryOf    string // the task this one retries; "" for a submitted task
	// Delivery is how its completion reaches the model, as resolved at submit.
	Delivery Delivery
	// Progress is the latest progress of its current run; nil when none was
	// reported (or the server restarted: progress is not stored).
	Progress *Progress
	// Fallback is set when a fallback answered, as on its completion:
	// Status, Result and Error are then the fallback's.
	Fallback *FallbackUsed
}

// Completion is one finished task, as delivered by Completions.
type Completion struct {
	Seq       uint64
	TaskID    string
	SessionID string
	Tool      string
	Arguments json.RawMessage
	Status    Status
	Result    json.RawMessage // set when Status is StatusSucceeded
	Error     *ToolError      // set otherwise
	Elapsed   time.Duration   // from submit to completion
	Attempts  uint32
	// Message is for the model: it names the task and tool and carries the
	// result (or its preview) or the error, and says when a fallback, a stale
	// result or a cancel reason is involved. Pass it on verbatim.
	Message     string
	CompletedAt time.Time
	// Delivery is how it should reach the model, as resolved at submit.
	Delivery Delivery
	// ResultTruncated: the result was larger than the task's result budget,
	// so Result is empty and ResultPreview holds the worker's summary or the
	// result's head and tail. Client.CompletionResult or ReadFullResult
	// fetch the full text.
	ResultTruncated bool
	// ResultBytes is the size of the full result in bytes (also when it is
	// inline, and when SessionEvents left it off with WithResultsByReference).
	ResultBytes uint64
	// ResultPreview is set when ResultTruncated: a preview within the budget.
	ResultPreview string
	// Fallback is set when a fallback answered; Status, Result and Error are
	// then the fallback's.
	Fallback *FallbackUsed
}

// Err returns the completion's *ToolError when it did not succeed, else nil.
func (c *Completion) Err() error {
	if c.Status == StatusSucceeded {
		return nil
	}
	if c.Error != nil {
		return c.Error
	}
	return &ToolError{Code: c.Status.String(), Message: "task " + c.TaskID + " " + c.Status.String()}
}

// ResultInline reports whether Result holds the whole result: false for a
// failed task, a truncated result or one left off by reference.
func (c *Completion) ResultInline() bool {
	return c.Status == StatusSucceeded && !c.ResultTruncated && (len(c.Result) > 0 || c.ResultBytes == 0)
}

// Decode unmarshals a successful result into v; it returns Err() when the task
// did not succeed, and an error matching ErrResultNotInline when the result
// is not on the completion (truncated or by reference: use
// Client.CompletionResult).
func (c *Completion) Decode(v any) error {
	if err := c.Err(); err != nil {
		return err
	}
	if !c.ResultInline() {
		return fmt.Errorf("errand: task %s: %w (%d bytes)", c.TaskID, ErrResultNotInline, c.ResultBytes)
	}
	return json.Unmarshal(c.Result, v)
}

func rawJSON(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

func ms(n uint64) time.Duration { return time.Duration(n) * time.Millisecond }

func ts(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func toolErr(e *pb.ToolError) *ToolError {
	if e == nil {
		return nil
	}
	return &ToolError{Code: e.GetCode(), Message: e.GetMessage()}
}

func taskFromPB(t *pb.Task) *Task {
	if t == nil {
		return nil
	}
	return &Task{
		ID:             t.GetTaskId(),
		SessionID:      t.GetSessionId(),
		Tool:           t.GetTool(),
		Arguments:      rawJSON(t.GetArgumentsJson()),
		Status:         Status(t.GetStatus()),
		Result:         rawJSON(t.GetResultJson()),
		Error:          toolErr(t.GetError()),
		Attempts:       t.GetAttempts(),
		CreatedAt:      ts(t.GetCreatedAt()),
		StartedAt:      ts(t.GetStartedAt()),
		FinishedAt:     ts(t.GetFinishedAt()),
		Timeout:        ms(t.GetTimeoutMs()),
		Seq:            t.GetSeq(),
		Elapsed:        ms(t.GetElapsedMs()),
		IdempotencyKey: t.GetIdempotencyKey(),
		WorkerID:       t.GetWorkerId(),
		WorkerName:     t.GetWorkerName(),
		RetryOf:        t.GetRetryOf(),
		Delivery:       Delivery(t.GetDelivery()),
		Progress:       progressFromPB(t.GetProgress()),
		Fallback:       fallbackUsedFromPB(t.GetFallback()),
	}
}

func completionFromPB(c *pb.Completion) *Completion {
	return &Completion{
		Seq:         c.GetSeq(),
		TaskID:      c.GetTaskId(),
		SessionID:   c.GetSessionId(),
		Tool:        c.GetTool(),
		Arguments:   rawJSON(c.GetArgumentsJson()),
		Status:      Status(c.GetStatus()),
		Result:      rawJSON(c.GetResultJson()),
		Error:       toolErr(c.GetError()),
		Elapsed:     ms(c.GetElapsedMs()),
		Attempts:    c.GetAttempts(),
		Message:     c.GetMessage(),
		CompletedAt: ts(c.GetCompletedAt()),

		Delivery:        Delivery(c.GetDelivery()),
		ResultTruncated: c.GetResultTruncated(),
		ResultBytes:     c.GetResultBytes(),
		ResultPreview:   c.GetResultPreview(),
		Fallback:        fallbackUsedFromPB(c.GetFallback()),
	}
}

func toolFromPB(t *pb.Tool) Tool {
	return Tool{
		Name:        t.GetName(),
		Description: t.GetDescription(),
		InputSchema: rawJSON(t.GetInputSchemaJson()),
		Timeout:     ms(t.GetTimeoutMs()),
		Workers:     t.GetWorkers(),
		Queued:      t.GetQueued(),
		Running:     t.GetRunning(),

		QueueTimeout: ms(t.GetQueueTimeoutMs()),

		Delivery:           Delivery(t.GetDelivery()),
		Dedup:              Dedup(t.GetDedup()),
		ResultBudget:       t.GetResultBudgetBytes(),
		Fallback:           fallbackFromPB(t.GetFallback()),
		CancellableByModel: t.GetCancellableByModel(),
	}
}

// JSONText encodes v as JSON text for the wire: json.RawMessage and []byte
// are taken as JSON already (and checked), a nil v gives "", anything else
// goes through json.Marshal. Used for tool arguments, results and schemas.
// JSON text is UTF-8: text that is not (raw JSON, or what a MarshalJSON
// returned) is not valid JSON.
func JSONText(v any) (string, error) {
	var text string
	switch x := v.(type) {
	case nil:
		return "", nil
	case json.RawMessage:
		text = string(x)
	case []byte:
		text = string(x)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return "", err
		}
		return checkUTF8(string(b))
	}
	if text == "" {
		return "", nil
	}
	if !json.Valid([]byte(text)) {
		return "", fmt.Errorf("not valid JSON: %.80q", text)
	}
	return checkUTF8(text)
}

// checkUTF8 is text, or an error if it is not UTF-8 (encoding/json's
// parser lets that pass).
func checkUTF8(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", fmt.Errorf("not valid JSON: not UTF-8 (%s): JSON text must be UTF-8: "+
			"decode text to UTF-8, and encode binary data (as base64, say)", utf8field.Where(text))
	}
	return text, nil
}
