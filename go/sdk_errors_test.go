package errand_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/fakeserver"
	"github.com/errand-dev/errand/go/internal/testkit"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The errors the SDK raises itself, without asking the server, answer
// status.Code with the code of the sentinel they match, as the server's do
// (the README points at status.Code beside errors.Is): they read Unknown.
func TestErrorsTheSDKRaisesAnswerStatusCode(t *testing.T) {
	c := testkit.Dial(t, fakeserver.Start(t, &pb.UnimplementedToolServiceServer{}, nil))
	ctx := testkit.Ctx(t)
	submit := func(args any, opts ...errand.SubmitOption) error {
		_, err := c.Submit(ctx, "s", "fast", args, opts...)
		return err
	}
	dial := func(addr string, opts ...errand.Option) error {
		c, err := errand.Dial(ctx, addr, append(opts, errand.WithLazyConnect())...)
		if err == nil {
			c.Close()
		}
		return err
	}
	_, tlsErr := errand.TLSConfigFromFiles("/nonexistent/ca.pem", "", "")
	notInline := (&errand.Completion{TaskID: "t", Status: errand.StatusSucceeded, ResultTruncated: true, ResultBytes: 9}).Decode(new(any))
	in := c.NewInbox(ctx, "s")
	in.Close()
	_, inboxErr := in.Ack(ctx)
	for _, tc := range []struct {
		what string
		err  error
		want codes.Code
	}{
		{"Submit(raw arguments that are not JSON)", submit(json.RawMessage(`{"a":`)), codes.InvalidArgument},
		{"Submit(arguments encoding/json cannot encode)", submit(map[string]any{"c": make(chan int)}), codes.InvalidArgument},
		{"Submit(WithTaskTimeout(-1s))", submit(nil, errand.WithTaskTimeout(-time.Second)), codes.InvalidArgument},
		{"Submit(WithQueueTimeout(-1s))", submit(nil, errand.WithQueueTimeout(-time.Second)), codes.InvalidArgument},
		{"Submit(WithFallbackLastGood(-1s))", submit(nil, errand.WithFallbackLastGood(-time.Second)), codes.InvalidArgument},
		{"Dial(an IPv6 address without brackets)", dial("::1"), codes.InvalidArgument},
		{"Dial(ftp://)", dial("ftp://example.com"), codes.InvalidArgument},
		{"Dial(WithReconnectBackoff(0, 0))", dial("", errand.WithReconnectBackoff(0, 0)), codes.InvalidArgument},
		{"Dial(WithLogger(nil))", dial("", errand.WithLogger(nil)), codes.InvalidArgument},
		{"Dial(WithMaxRecvBytes(0))", dial("", errand.WithMaxRecvBytes(0)), codes.InvalidArgument},
		{"Dial(WithBearerToken(\"\"))", dial("", errand.WithBearerToken("")), codes.InvalidArgument},
		{"Dial(WithBearerToken(a token with a space))", dial("", errand.WithBearerToken("a b")), codes.InvalidArgument},
		{"Dial(WithTransportCredentials(nil))", dial("", errand.WithTransportCredentials(nil)), codes.InvalidArgument},
		{"Dial(WithPerRPCCredentials(nil))", dial("", errand.WithPerRPCCredentials(nil)), codes.InvalidArgument},
		{"Dial(WithTLSFiles(a CA that does not exist))", dial("", errand.WithTLSFiles("/nonexistent/ca.pem", "", "")), codes.InvalidArgument},
		{"Dial(WithTLSFiles(a certificate without its key))", dial("", errand.WithTLSFiles("", "cert.pem", "")), codes.InvalidArgument},
		{"TLSConfigFromFiles(a CA that does not exist)", tlsErr, codes.InvalidArgument},
		{"Decode(a result not inline)", notInline, codes.FailedPrecondition},
		{"Inbox.Ack after Close", inboxErr, codes.FailedPrecondition},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.what)
			continue
		}
		testkit.CheckCode(t, tc.what, tc.err, tc.want)
	}
}

// unavailable answers every Completions stream UNAVAILABLE at once, as a
// server going away does.
type unavailable struct {
	pb.UnimplementedToolServiceServer
}

func (unavailable) Completions(*pb.CompletionsRequest, pb.ToolService_CompletionsServer) error {
	return status.Error(codes.Unavailable, "going away")
}

// Completions ends with ctx's error when ctx ends while it waits to
// reconnect: that error answers status.Code with ctx's code, as the one it
// ends with when ctx ends during a stream does.
func TestCompletionsEndingWithCtxAnswersItsCode(t *testing.T) {
	c := testkit.Dial(t, fakeserver.Start(t, unavailable{}, nil), errand.WithReconnectBackoff(time.Hour, time.Hour))
	ctx, cancel := context.WithTimeout(testkit.Ctx(t), 200*time.Millisecond)
	defer cancel()
	var last error
	for _, err := range c.Completions(ctx, "s", 0) {
		last = err
	}
	if last == nil {
		t.Fatal("Completions ended without an error")
	}
	testkit.CheckCode(t, "Completions after ctx's deadline", last, codes.DeadlineExceeded)
	if !errors.Is(last, context.DeadlineExceeded) {
		t.Errorf("Completions after ctx's deadline = %v, want it to match context.DeadlineExceeded", last)
	}
}
