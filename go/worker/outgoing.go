package worker

// The one rule for what a worker sends the server. The server's transport
// refuses a message over its limit (the Registered.max_message_bytes it
// answers a worker with) and ends the worker's stream: the worker's tasks go
// to another attempt, which fails the same way, and their callers wait. So
// nothing a worker sends may be over it, and what the server would refuse or
// cut anyway is settled here, before sending, where the tool can be told:
//
//   - a progress report (progressMessage): its message is cut at
//     MaxProgressMessageBytes, as the server cuts it; a detail over
//     MaxDetailBytes (the server ignores such a report) or a report that
//     does not fit in one message is an ErrInvalidArgument error.
//   - every message as it goes out (fit): a result whose JSON does not fit
//     fails its task with "invalid_result" saying the size and the limit; a
//     failure's message and a result's summary, texts the server cuts to its
//     own bounds anyway, are cut to fit; a progress report that does not fit
//     is dropped.
//   - text that is not UTF-8, which grpc-go refuses to marshal, ending the
//     stream: a result or detail JSON that is not UTF-8 is not JSON (the
//     result fails its task with "invalid_result", the detail is an
//     ErrInvalidArgument error), as errand.JSONText says; free text (a
//     failure's code and message, a summary, a progress message) has each
//     bad byte escaped as \xNN (validText), as the Python SDK escapes what
//     UTF-8 cannot encode: the model still reads why the tool failed.

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"google.golang.org/protobuf/proto"
)

const (
	// MaxProgressMessageBytes is the most bytes of a progress message the
	// server keeps (proto Progress.message: "at most 1 KiB (longer is
	// cut)"); Progress cuts a longer one so, on a character boundary.
	MaxProgressMessageBytes = 1 << 10
	// MaxDetailBytes is the largest progress detail, as JSON, the server
	// takes (proto Progress.detail_json: "at most 64 KiB"); it ignores a
	// report with a larger one, so Progress refuses it.
	MaxDetailBytes = 64 << 10

	// defaultMaxMessageBytes is gRPC's default message limit, assumed when
	// the server does not say its own in Registered.
	defaultMaxMessageBytes = 4 << 20
	// fieldOverhead is room for a field's tag and length when a text is cut.
	fieldOverhead = 16
)

// messageLimit is the limit Registered.max_message_bytes means (0: not said).
func messageLimit(said uint64) int {
	if said == 0 {
		return defaultMaxMessageBytes
	}
	if said > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(said)
}

// progressMessage is a task's progress report as the server takes it, or an
// ErrInvalidArgument error saying what is over which bound (nothing is sent).
func progressMessage(a *pb.Assignment, progress, total float64, message, detailJSON string, limit int) (*pb.WorkerMessage, error) {
	if len(detailJSON) > MaxDetailBytes {
		return nil, fmt.Errorf("errand worker: Progress: detail is %d bytes, at most %d (the server's bound) (%w)",
			len(detailJSON), MaxDetailBytes, errand.ErrInvalidArgument)
	}
	msg := &pb.WorkerMessage{Kind: &pb.WorkerMessage_Progress{Progress: &pb.Progress{
		TaskId: a.GetTaskId(), Attempt: a.GetAttempt(), Progress: progress, Total: total,
		Message: cutUTF8(validText(message), MaxProgressMessageBytes), DetailJson: detailJSON,
	}}}
	if size := proto.Size(msg); size > limit {
		return nil, fmt.Errorf("errand worker: Progress: a report of %d bytes does not fit the server's message limit of %d bytes (its --max-message-bytes): send a smaller detail (%w)",
			size, limit, errand.ErrInvalidArgument)
	}
	return msg, nil
}

// fit is msg made to fit in limit bytes by the rule above; nil: do not send
// it. Register goes out before the limit is known; heartbeats are small.
func fit(msg *pb.WorkerMessage, limit int) *pb.WorkerMessage {
	size := proto.Size(msg)
	if size <= limit {
		return msg
	}
	var res *pb.TaskResult
	switch k := msg.GetKind().(type) {
	case *pb.WorkerMessage_Progress:
		return nil
	case *pb.WorkerMessage_Result:
		res = k.Result
	default:
		return msg
	}
	over := size - limit + fieldOverhead
	out := &pb.TaskResult{TaskId: res.GetTaskId(), Attempt: res.GetAttempt()}
	if e := res.GetError(); e != nil {
		note := fmt.Sprintf(" [cut to fit the server's message limit of %d bytes]", limit)
		text := cutUTF8(e.GetMessage(), len(e.GetMessage())-over-len(note)) + note
		out.Outcome = &pb.TaskResult_Error{Error: &pb.ToolError{Code: e.GetCode(), Message: text}}
	} else if room := len(res.GetSummary()) - over; room >= 0 {
		out.Outcome, out.Summary = res.GetOutcome(), cutUTF8(res.GetSummary(), room)
	} else {
		out.Outcome = &pb.TaskResult_Error{Error: &pb.ToolError{Code: "invalid_result", Message: tooLarge(size, limit)}}
	}
	return &pb.WorkerMessage{Kind: &pb.WorkerMessage_Result{Result: out}}
}

// tooLarge is the message of the "invalid_result" error a worker sends in
// place of a result of size bytes (as a message) over the server's limit,
// worded as the server's own for a result over --max-result-bytes.
func tooLarge(size, limit int) string {
	return fmt.Sprintf("the tool's result is %d bytes, the limit is %d (the server's largest message, --max-message-bytes)", size, limit)
}

// validText is s with each byte that is not UTF-8 written as the four
// characters \xNN ("a\xffb" reads `a\xffb`).
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// cutUTF8 is s cut to at most n bytes, on a character boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
