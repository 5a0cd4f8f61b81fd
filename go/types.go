package errand

import (
	"encoding/json"
	"fmt"
	"time"

	pb "github.com/errand-dev/errand/go/errandv1"
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
	// result or the error.
	Message     string
	CompletedAt time.Time
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

// Decode unmarshals a successful result into v; it returns Err() otherwise.
func (c *Completion) Decode(v any) error {
	if err := c.Err(); err != nil {
		return err
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
	}
}

func toolFromPB(t *pb.Tool) Tool {
	return Tool{
		Name:        t.GetName(),
		Description: t.GetDescription(),
		InputSchema: rawJSON(t.GetInputSchemaJson()),
		Timeout:     ms(t.GetTimeoutMs()),
		Workers:     t.GetWorkers(),
	}
}

// JSONText encodes v as JSON text for the wire: json.RawMessage and []byte
// are taken as JSON already (and checked), a nil v gives "", anything else
// goes through json.Marshal. Used for tool arguments, results and schemas.
func JSONText(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case json.RawMessage:
		return checked(x)
	case []byte:
		return checked(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func checked(b []byte) (string, error) {
	if len(b) == 0 {
		return "", nil
	}
	if !json.Valid(b) {
		return "", fmt.Errorf("not valid JSON: %.80q", b)
	}
	return string(b), nil
}
