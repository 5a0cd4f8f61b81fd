package worker_test

// Against the server: text that is not UTF-8 from a tool (in its result, its
// error, its summary, its progress) or in a tool's definition never ends
// the worker's stream (grpc-go refuses to marshal it and ends the stream,
// and the task then runs again, failing the same way): a result JSON cannot
// carry fails its task with "invalid_result", as the Python SDK and the
// server name it; free text (a failure's code and message, a summary, a
// progress message) has its bad bytes escaped, as the Python SDK escapes
// them; a definition the client cannot send is refused naming the field,
// as the server refuses one.

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	errand "github.com/errand-dev/errand/go"
	"github.com/errand-dev/errand/go/internal/testkit"
	"github.com/errand-dev/errand/go/worker"
	"google.golang.org/grpc/codes"
)

func TestE2ETextThatIsNotUTF8NeverEndsTheWorkersStream(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	raw, failing, coded, summarised, progress, ok := testkit.Name("raw"), testkit.Name("failing"),
		testkit.Name("coded"), testkit.Name("summarised"), testkit.Name("progress"), testkit.Name("ok")
	reported := make(chan [2]error, 1)
	tw := testkit.StartWorker(t, c, func(w *worker.Worker) {
		w.Handle(raw, "Returns raw JSON that is not UTF-8.", nil, func(context.Context, json.RawMessage) (any, error) {
			return json.RawMessage("{\"a\":\"\xff\"}"), nil
		})
		w.Handle(failing, "Fails with a message that is not UTF-8.", nil, func(context.Context, json.RawMessage) (any, error) {
			return nil, errors.New("file a\xffb not found")
		})
		w.Handle(coded, "Fails with a code and message that are not UTF-8.", nil, func(context.Context, json.RawMessage) (any, error) {
			return nil, worker.ToolError("quota\xfe", "used \xff up")
		})
		w.Handle(summarised, "Summarises its result in text that is not UTF-8.", nil, func(context.Context, json.RawMessage) (any, error) {
			return worker.WithSummary(map[string]int{"n": 1}, "one \xff row"), nil
		})
		w.Handle(progress, "Reports progress that is not UTF-8.", nil, func(ctx context.Context, _ json.RawMessage) (any, error) {
			msg := worker.Progress(ctx, 1, 2, "half \xff done", nil)
			detail := worker.Progress(ctx, 1, 2, "half", json.RawMessage("\"\xff\""))
			select {
			case reported <- [2]error{msg, detail}:
			default: // a second attempt
			}
			return "done", nil
		})
		w.Handle(ok, "Answers.", nil, func(context.Context, json.RawMessage) (any, error) { return "fine", nil })
	}, worker.WithConcurrency(4))
	ctx := testkit.Ctx(t)
	session := testkit.Name("session")
	completions := testkit.Follow(t, c, session, 0)
	call := func(tool string) *errand.Completion {
		t.Helper()
		ack, err := c.Submit(ctx, session, tool, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := completions.Next(t)
		if got.TaskID != ack.TaskID {
			t.Fatalf("%s: completion of task %s, want %s", tool, got.TaskID, ack.TaskID)
		}
		if got.Attempts != 1 {
			t.Errorf("%s: %d attempts: the worker's stream broke", tool, got.Attempts)
		}
		return got
	}

	got := call(raw)
	t.Logf("raw JSON that is not UTF-8: %v", got.Err())
	if got.Status != errand.StatusFailed || got.Error == nil || got.Error.Code != "invalid_result" ||
		!strings.Contains(got.Error.Message, "UTF-8") {
		t.Errorf("raw JSON that is not UTF-8: %v %+v, want FAILED invalid_result saying UTF-8", got.Status, got.Error)
	}
	got = call(failing)
	if got.Status != errand.StatusFailed || got.Error == nil || got.Error.Code != "tool_error" ||
		got.Error.Message != `file a\xffb not found` {
		t.Errorf("an error message that is not UTF-8: %v %+v, want tool_error with the byte escaped", got.Status, got.Error)
	}
	got = call(coded)
	if got.Status != errand.StatusFailed || got.Error == nil || got.Error.Code != `quota\xfe` || got.Error.Message != `used \xff up` {
		t.Errorf("a ToolError that is not UTF-8: %v %+v, want its code and message with the bytes escaped", got.Status, got.Error)
	}
	got = call(summarised)
	if got.Status != errand.StatusSucceeded || string(got.Result) != `{"n":1}` {
		t.Errorf("a summary that is not UTF-8: %v %s, want the result", got.Status, got.Result)
	}
	got = call(progress)
	if got.Status != errand.StatusSucceeded {
		t.Errorf("a progress report that is not UTF-8: %v %+v, want the call to succeed", got.Status, got.Error)
	}
	errs := <-reported
	t.Logf("a detail that is not UTF-8: %v", errs[1])
	if errs[0] != nil {
		t.Errorf("Progress(a message that is not UTF-8) = %v, want it sent with the byte escaped", errs[0])
	}
	if testkit.CheckCode(t, "Progress(a detail that is not UTF-8)", errs[1], codes.InvalidArgument); errs[1] == nil ||
		!strings.Contains(errs[1].Error(), "detail") || !strings.Contains(errs[1].Error(), "UTF-8") {
		t.Errorf("Progress(a detail that is not UTF-8) = %v, want it to name the detail and say UTF-8", errs[1])
	}
	for _, m := range []string{got.Message} {
		if !utf8.ValidString(m) {
			t.Errorf("a message that is not UTF-8 reached the agent: %q", m)
		}
	}
	if got := call(ok); got.Status != errand.StatusSucceeded {
		t.Errorf("the last call: %v %+v", got.Status, got.Error)
	}
	select {
	case id := <-tw.Registered:
		t.Errorf("the worker registered again (as %s): its stream broke", id)
	default:
	}

	// A tool handled while Run runs whose definition is not UTF-8 is
	// refused alone, naming the field, as the server refuses a definition;
	// the tools handled after it are registered, and the stream goes on.
	bad, after := testkit.Name("bad"), testkit.Name("after")
	tw.Handle(bad, "Weather in \xff.", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	tw.Handle(after, "Answers.", nil, func(context.Context, json.RawMessage) (any, error) { return "after", nil })
	err := tw.WaitRegistered(ctx, bad)
	t.Logf("a description that is not UTF-8: %v", err)
	testkit.CheckCode(t, "WaitRegistered(a tool whose description is not UTF-8)", err, codes.InvalidArgument)
	if err == nil || !strings.Contains(err.Error(), "description") || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("WaitRegistered(a tool whose description is not UTF-8) = %v, want it to name the description and say UTF-8", err)
	}
	if err := tw.WaitRegistered(ctx, after); err != nil {
		t.Fatalf("WaitRegistered(the tool handled after it) = %v", err)
	}
	if got := call(after); got.Status != errand.StatusSucceeded {
		t.Errorf("the tool handled after it: %v %+v", got.Status, got.Error)
	}
	select {
	case id := <-tw.Registered:
		t.Errorf("the worker registered again (as %s): its stream broke", id)
	default:
	}
}

// A tool whose definition is not UTF-8 in a connection's first Register
// makes Run fail, naming the field, as the server's refusal of a first
// Register does; a schema that is not UTF-8 is not JSON, and Handle panics.
func TestE2EAFirstRegisterThatIsNotUTF8FailsRun(t *testing.T) {
	c := testkit.Dial(t, testkit.Addr())
	w := worker.New(c, worker.WithName("worker \xff"))
	w.Handle(testkit.Name("t"), "A tool.", nil, func(context.Context, json.RawMessage) (any, error) { return nil, nil })
	err := w.Run(testkit.Ctx(t))
	t.Logf("a worker name that is not UTF-8: %v", err)
	testkit.CheckCode(t, "Run(a worker name that is not UTF-8)", err, codes.InvalidArgument)
	if err == nil || !strings.Contains(err.Error(), "worker_name") {
		t.Errorf("Run(a worker name that is not UTF-8) = %v, want it to name worker_name", err)
	}

	defer func() {
		p := recover()
		t.Logf("a schema that is not UTF-8: %v", p)
		if s, _ := p.(string); !strings.Contains(s, "UTF-8") {
			t.Errorf("Handle(a schema that is not UTF-8) panicked with %v, want it to say UTF-8", p)
		}
	}()
	worker.New(c).Handle(testkit.Name("s"), "", "{\"description\":\"\xff\"}", func(context.Context, json.RawMessage) (any, error) { return nil, nil })
}
