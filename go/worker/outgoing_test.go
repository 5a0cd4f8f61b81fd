package worker

import (
	"errors"
	"strings"
	"testing"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"google.golang.org/protobuf/proto"
)

func result(r *pb.TaskResult) *pb.WorkerMessage {
	return &pb.WorkerMessage{Kind: &pb.WorkerMessage_Result{Result: r}}
}

func TestEveryOutgoingMessageFitsTheServersLimit(t *testing.T) {
	const limit = 4096
	// A summary the server would cut anyway is cut to fit; the result stays.
	got := fit(result(&pb.TaskResult{TaskId: "t", Attempt: 1, Summary: strings.Repeat("s", 10_000),
		Outcome: &pb.TaskResult_ResultJson{ResultJson: `"ok"`}}), limit)
	if proto.Size(got) > limit || got.GetResult().GetResultJson() != `"ok"` || !strings.HasPrefix(got.GetResult().GetSummary(), "sss") {
		t.Errorf("summary over the limit: %d bytes, %.40v", proto.Size(got), got)
	}
	// A result JSON that does not fit fails its task, saying the size and limit.
	got = fit(result(&pb.TaskResult{TaskId: "t", Outcome: &pb.TaskResult_ResultJson{ResultJson: `"` + strings.Repeat("a", 10_000) + `"`}}), limit)
	if e := got.GetResult().GetError(); e.GetCode() != "invalid_result" || !strings.Contains(e.GetMessage(), "the limit is 4096") {
		t.Errorf("result over the limit: %v", e)
	}
	// A failure keeps its code, its text cut to fit (on a character) and saying so.
	got = fit(result(&pb.TaskResult{TaskId: "t", Outcome: &pb.TaskResult_Error{Error: &pb.ToolError{Code: "busy", Message: strings.Repeat("é", 10_000)}}}), limit)
	if e := got.GetResult().GetError(); proto.Size(got) > limit || e.GetCode() != "busy" ||
		!strings.HasSuffix(e.GetMessage(), "message limit of 4096 bytes]") || !strings.HasPrefix(e.GetMessage(), "éé") {
		t.Errorf("failure over the limit: %d bytes, %.60v", proto.Size(got), e)
	}
	// A progress report over the limit (checked when reported) is not sent.
	if got := fit(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Progress{Progress: &pb.Progress{DetailJson: strings.Repeat("d", 10_000)}}}, limit); got != nil {
		t.Errorf("progress over the limit: %v, want nil", got)
	}
	if cutUTF8("aé", 2) != "a" || cutUTF8("aé", 3) != "aé" {
		t.Error("cutUTF8 split a character")
	}
}

func TestProgressMessageKeepsTheServersBounds(t *testing.T) {
	a := &pb.Assignment{TaskId: "t", Attempt: 2}
	msg, err := progressMessage(a, 1, 2, strings.Repeat("ü", 5000), "", 4096)
	if err != nil || msg.GetProgress().GetMessage() != strings.Repeat("ü", 512) {
		t.Errorf("a long message: %v, %d bytes kept; want cut to 1024", err, len(msg.GetProgress().GetMessage()))
	}
	if _, err := progressMessage(a, 1, 2, "", `"`+strings.Repeat("x", 300)+`"`, 200); !errors.Is(err, errand.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "message limit of 200 bytes") {
		t.Errorf("a report over the message limit: %v", err)
	}
}

func TestValidTextEscapesOnlyTheBytesThatAreNotUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"plain":         "plain",
		"a\xffb":        `a\xffb`,
		"é\xc3\xa9\xe2": `é` + "é" + `\xe2`,
		"\ufffd kept":   "\ufffd kept",
	} {
		if got := validText(in); got != want {
			t.Errorf("validText(%q) = %q, want %q", in, got, want)
		}
	}
}
