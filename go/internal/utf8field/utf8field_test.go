package utf8field

import (
	"strings"
	"testing"

	pb "github.com/errand-dev/errand/go/errandv1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestCheckNamesTheFieldThatIsNotUTF8(t *testing.T) {
	for _, tc := range []struct {
		msg  proto.Message
		path string // "" for none
	}{
		{&pb.SubmitToolRequest{SessionId: "s", Tool: "t", ArgumentsJson: `{"a":"é"}`}, ""},
		{&pb.SubmitToolRequest{SessionId: "s\xff"}, "session_id"},
		{&pb.SubmitToolRequest{SessionId: "s", Fallback: &pb.Fallback{Kind: &pb.Fallback_Tool{Tool: "\xc3"}}}, "fallback.tool"},
		{&pb.WorkerMessage{Kind: &pb.WorkerMessage_Register{Register: &pb.Register{WorkerName: "w",
			Tools: []*pb.Tool{{Name: "a"}, {Name: "b", Description: "\xe2\x82"}}}}}, "register.tools[1].description"},
		{&pb.WorkerMessage{Kind: &pb.WorkerMessage_Result{Result: &pb.TaskResult{TaskId: "t",
			Outcome: &pb.TaskResult_Error{Error: &pb.ToolError{Code: "c", Message: "m\xff"}}}}}, "result.error.message"},
		{&structpb.Struct{Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("v\xff")}}, `fields["k"].string_value`},
		{&structpb.Struct{Fields: map[string]*structpb.Value{"k\xff": structpb.NewNullValue()}}, "fields (a key)"},
		{&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("ok"), structpb.NewStringValue("\xff")}}, "values[1].string_value"},
	} {
		err := Check(tc.msg)
		if tc.path == "" {
			if _, merr := proto.Marshal(tc.msg); err != nil || merr != nil {
				t.Errorf("Check(%v) = %v, want nil (proto.Marshal: %v)", tc.msg, err, merr)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), tc.path+" is not valid UTF-8 (") {
			t.Errorf("Check(%v) = %v, want InvalidArgument naming %s", tc.msg, err, tc.path)
		}
		// What Check refuses, protobuf would not marshal.
		if _, merr := proto.Marshal(tc.msg); merr == nil {
			t.Errorf("%v: protobuf marshals it, so Check should not refuse it", tc.msg)
		}
	}
}

func TestWhereShowsTheBadByte(t *testing.T) {
	for s, want := range map[string]string{
		"a\xffb": `byte 0xff at offset 1 of "a\xffb"`,
		"é\xc3":  `byte 0xc3 at offset 2 of "é\xc3"`,
		strings.Repeat("x", 100) + "\xff" + strings.Repeat("y", 100): `byte 0xff at offset 100 of ..."` +
			strings.Repeat("x", 32) + `\xff` + strings.Repeat("y", 31) + `"...`,
	} {
		if got := Where(s); got != want {
			t.Errorf("Where(%.20q...) = %s, want %s", s, got, want)
		}
	}
}
