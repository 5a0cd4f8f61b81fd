package errand

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/millis"
	"github.com/errand-dev/errand/go/internal/rpcerr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Client is a connection to an errand server, for agents. It is safe for
// concurrent use; make one per process and Close it when done.
type Client struct {
	conn  *grpc.ClientConn
	tools pb.ToolServiceClient
	opts  options
}

// Dial connects to the errand server at addr ("host:port"; "" means
// $ERRAND_SERVER, else DefaultAddr; an "https://" prefix means TLS with the
// system's roots unless a TLS option says otherwise). Addresses read as the
// errand CLI reads them: without a port, port 7466 (DefaultPort), so
// "localhost" is localhost:7466, "[::1]" is [::1]:7466 and
// "https://errand.example.com" is errand.example.com:7466 over TLS; an IPv6
// address goes in brackets. A gRPC target URI ("dns:///host:port",
// "unix:///path") is passed to grpc-go as it is.
//
// Unless WithLazyConnect is given, Dial makes the first connection attempt
// and waits for its outcome: it returns the client once connected, or an
// error matching ErrUnavailable as soon as the attempt fails, naming the
// cause (connection refused, a host name that does not resolve, a TLS
// handshake that failed, ...; status.Code gives codes.Unavailable). If ctx
// ends first (a server that accepts the connection but does not answer), the
// error matches both ErrUnavailable and ctx's error. To dial a server that
// is not up yet, use WithLazyConnect: the client connects when it is needed,
// and retries with backoff meanwhile. Once connected, the client reconnects
// by itself after the connection breaks.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, badDial(addr, err)
		}
	}
	resolved, err := o.resolve(addr)
	if err != nil {
		return nil, badDial(addr, err)
	}
	addr = resolved
	conn, err := grpc.NewClient(addr, o.grpcOptions()...)
	if err != nil {
		return nil, badDial(addr, err)
	}
	if !o.lazy {
		conn.Connect()
		for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
			if s == connectivity.TransientFailure {
				if cause := failedAttempt(ctx, conn, addr); cause != nil {
					conn.Close()
					return nil, fmt.Errorf("errand: dial %s: server not reachable (%w): %w%s", addr, ErrUnavailable, cause, dialAdvice(o, cause))
				}
			}
			if !conn.WaitForStateChange(ctx, s) {
				conn.Close()
				return nil, fmt.Errorf("errand: dial %s: server not reachable (%w): %w", addr, ErrUnavailable, ctx.Err())
			}
		}
	}
	o.logger.Debug("errand: connected", "addr", addr)
	return &Client{conn: conn, tools: pb.NewToolServiceClient(conn), opts: o}, nil
}

// badDial is Dial's error for err, an option, address or setting it cannot
// use (a nil logger, a CA file it cannot read, ...): the caller's to fix, so
// it matches ErrInvalidArgument unless it has a code of its own.
func badDial(addr string, err error) error {
	if status.Code(err) == codes.Unknown {
		return fmt.Errorf("errand: dial %s: %w (%w)", addr, err, ErrInvalidArgument)
	}
	return fmt.Errorf("errand: dial %s: %w", addr, err)
}

// failedAttempt returns why conn's connection attempt failed, for a conn in
// TRANSIENT_FAILURE: grpc-go keeps the cause for the RPCs it fails at once
// (those without wait-for-ready), so it makes one, a gRPC health Check. It
// returns nil if the call got through (the server came up meanwhile) or
// ended otherwise (ctx).
func failedAttempt(ctx context.Context, conn *grpc.ClientConn, addr string) error {
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	st, ok := status.FromError(err)
	if err == nil || !ok || st.Code() != codes.Unavailable {
		return nil
	}
	// grpc-go's DNS resolver reports a name that does not exist as "produced
	// zero addresses"; the lookup's own error names the host.
	if strings.Contains(st.Message(), "produced zero addresses") {
		if host, _, err := net.SplitHostPort(addr); err == nil && net.ParseIP(host) == nil {
			if _, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
				st = status.New(codes.Unavailable, fmt.Sprintf("%s (%v)", st.Message(), err))
			}
		}
	}
	return dialFailure{st}
}

// dialFailure is the cause of a failed Dial: the transport's message, and
// the status for status.Code.
type dialFailure struct{ st *status.Status }

func (d dialFailure) Error() string              { return d.st.Message() }
func (d dialFailure) GRPCStatus() *status.Status { return d.st }

// Close closes the connection; streams and calls in flight fail.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying gRPC connection, for the worker package and for
// calling the generated errandv1 stubs directly.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// MaxRecvBytes is the largest message the client accepts (WithMaxRecvBytes).
func (c *Client) MaxRecvBytes() int { return c.opts.maxRecvBytes }

// SubmitOption configures one Submit. It sets fields of the request; a
// non-nil error (an option given a value it cannot send, such as a negative
// duration) makes Submit return it, wrapped, without calling the server.
type SubmitOption func(*pb.SubmitToolRequest) error

// WithTaskTimeout sets the timeout of this call's run on a worker, counted
// from dispatch, instead of the tool's default (then the server's
// --default-timeout-ms). It is rounded up to whole milliseconds; 0 leaves it
// unset. A negative d makes Submit fail with ErrInvalidArgument (nothing is
// sent); above the server's --max-timeout-ms the server answers
// ErrInvalidArgument.
func WithTaskTimeout(d time.Duration) SubmitOption {
	return func(r *pb.SubmitToolRequest) (err error) {
		r.TimeoutMs, err = millis.RoundUp("errand.WithTaskTimeout", d)
		return err
	}
}

// WithQueueTimeout sets how long this call may wait in the queue for a
// worker, counted from submit, instead of the tool's queue timeout (then the
// server's --default-queue-timeout-ms, 5 minutes by default). A call no
// worker has taken by then completes as StatusTimedOut with error code
// "queue_timeout". It is rounded up to whole milliseconds; 0 leaves it
// unset. A negative d makes Submit fail with ErrInvalidArgument (nothing is
// sent); above the server's --max-timeout-ms the server answers
// ErrInvalidArgument.
func WithQueueTimeout(d time.Duration) SubmitOption {
	return func(r *pb.SubmitToolRequest) (err error) {
		r.QueueTimeoutMs, err = millis.RoundUp("errand.WithQueueTimeout", d)
		return err
	}
}

// WithIdempotencyKey makes a retried Submit with the same key in the same
// session return the first submit's task instead of running the tool again.
func WithIdempotencyKey(key string) SubmitOption {
	return func(r *pb.SubmitToolRequest) error { r.IdempotencyKey = key; return nil }
}

// WithDelivery sets how this call's completion reaches the model, instead of
// the tool's policy (then the server's default, DeliveryWhenIdle). A value
// the server does not know gives ErrInvalidArgument.
func WithDelivery(d Delivery) SubmitOption {
	return func(r *pb.SubmitToolRequest) error { r.Delivery = pb.DeliveryPolicy(d); return nil }
}

// WithDedup sets whether this call joins an identical call in flight
// (DedupJoinInFlight; Ack.Joined then says it did), instead of the tool's
// policy (off by default). An idempotency key is checked first.
func WithDedup(d Dedup) SubmitOption {
	return func(r *pb.SubmitToolRequest) error { r.Dedup = pb.DedupPolicy(d); return nil }
}

// WithResultBudget sets the most bytes of result delivered inline on the
// completion (about 4 bytes per token), instead of the tool's budget (then
// the server's --result-budget-bytes, 16384 by default). A larger result is
// delivered as a preview (Completion.ResultTruncated) and read in full with
// ReadResult. 0 means unset; above the server's --max-result-budget-bytes:
// ErrInvalidArgument.
func WithResultBudget(bytes uint64) SubmitOption {
	return func(r *pb.SubmitToolRequest) error { r.ResultBudgetBytes = bytes; return nil }
}

// WithFallbackTool makes tool (with the same arguments) answer this call if
// it ends failed or timed out after its retries; never after a cancel, and
// one hop only. An unknown tool gives ErrNotFound, the call's own tool
// ErrInvalidArgument. It replaces the tool's fallback and WithFallbackLastGood.
func WithFallbackTool(tool string) SubmitOption {
	return func(r *pb.SubmitToolRequest) error {
		r.Fallback = &pb.Fallback{Kind: &pb.Fallback_Tool{Tool: tool}}
		return nil
	}
}

// WithFallbackLastGood makes the session's last successful result of the
// same tool and arguments answer this call if it ends failed or timed out,
// provided that result is at most maxAge old (whole milliseconds, rounded
// up; it must be positive: a negative maxAge makes Submit fail with
// ErrInvalidArgument without calling the server, and the server refuses 0).
// The completion's Message says the result is stale and how old. It
// replaces the tool's fallback and WithFallbackTool.
func WithFallbackLastGood(maxAge time.Duration) SubmitOption {
	return func(r *pb.SubmitToolRequest) error {
		ms, err := millis.RoundUp("errand.WithFallbackLastGood", maxAge)
		r.Fallback = &pb.Fallback{Kind: &pb.Fallback_LastGoodMaxAgeMs{LastGoodMaxAgeMs: ms}}
		return err
	}
}

// Submit queues one call of tool in session and returns at once, whatever the
// tool's latency. args is the arguments object: a struct or map (encoded with
// encoding/json), a json.RawMessage or []byte holding JSON text, or nil for {}.
// The result arrives later on Completions(ctx, session, ...). An option that
// fails (a negative duration) fails the call with its error, which matches
// ErrInvalidArgument and names the option and its value; nothing is sent.
func (c *Client) Submit(ctx context.Context, session, tool string, args any, opts ...SubmitOption) (Ack, error) {
	argsJSON, err := JSONText(args)
	if err != nil {
		return Ack{}, fmt.Errorf("errand: SubmitTool: arguments: %w (%w)", err, ErrInvalidArgument)
	}
	req := &pb.SubmitToolRequest{SessionId: session, Tool: tool, ArgumentsJson: argsJSON}
	for _, opt := range opts {
		if err := opt(req); err != nil {
			return Ack{}, fmt.Errorf("errand: SubmitTool: %w", err)
		}
	}
	resp, err := c.tools.SubmitTool(ctx, req)
	if err != nil {
		return Ack{}, rpcerr.Wrap("SubmitTool", err)
	}
	return Ack{
		TaskID:       resp.GetTaskId(),
		Text:         resp.GetAck(),
		Task:         taskFromPB(resp.GetTask()),
		Deduplicated: resp.GetDeduplicated(),
		Joined:       resp.GetJoined(),
	}, nil
}

// GetTask returns one task; ErrNotFound when it is unknown or no longer
// retained, ErrInvalidArgument when taskID is not a UUID (not an ID Submit
// returned).
func (c *Client) GetTask(ctx context.Context, taskID string) (*Task, error) {
	t, err := c.tools.GetTask(ctx, &pb.GetTaskRequest{TaskId: taskID})
	if err != nil {
		return nil, rpcerr.Wrap("GetTask", err)
	}
	return taskFromPB(t), nil
}

// CancelOption configures one Cancel.
type CancelOption func(*pb.CancelTaskRequest)

// WithReason says why the task is cancelled (at most 1 KiB of UTF-8, else
// ErrInvalidArgument): the worker sees it (its handler's context.Cause) and
// the completion's Message carries it to the model.
func WithReason(reason string) CancelOption {
	return func(r *pb.CancelTaskRequest) { r.Reason = reason }
}

// Cancel cancels a queued or running task: it completes as StatusCancelled
// and the worker running it is told to stop. Cancelling a cancelled task
// returns it unchanged; one that finished otherwise gives ErrFailedPrecondition.
// An unknown task gives ErrNotFound, a taskID that is not a UUID
// ErrInvalidArgument, as for GetTask.
func (c *Client) Cancel(ctx context.Context, taskID string, opts ...CancelOption) (*Task, error) {
	req := &pb.CancelTaskRequest{TaskId: taskID}
	for _, opt := range opts {
		opt(req)
	}
	t, err := c.tools.CancelTask(ctx, req)
	if err != nil {
		return nil, rpcerr.Wrap("CancelTask", err)
	}
	return taskFromPB(t), nil
}

// ListTools returns every tool the server knows, sorted by name: those a
// connected worker serves (Workers > 0) and those no worker serves right now
// (Workers == 0; calls to them wait in the queue). The server answers in
// pages (as many tools as fit in its --max-message-bytes); ListTools follows
// their tokens to the last page, one call each, and returns nothing but the
// error if a call fails (an *Error from the server). A server that gives the
// same page token twice would make it loop: it fails with ErrInternal then.
func (c *Client) ListTools(ctx context.Context) ([]Tool, error) {
	var tools []Tool
	seen := map[string]bool{}
	for token := ""; ; {
		resp, err := c.tools.ListTools(ctx, &pb.ListToolsRequest{PageToken: token})
		if err != nil {
			return nil, rpcerr.Wrap("ListTools", err)
		}
		for _, t := range resp.GetTools() {
			tools = append(tools, toolFromPB(t))
		}
		token = resp.GetNextPageToken()
		if token == "" {
			if tools == nil {
				tools = []Tool{}
			}
			return tools, nil
		}
		if seen[token] {
			return nil, fmt.Errorf("errand: ListTools: the server gave page token %q twice, after %d tools (%w)",
				token, len(tools), ErrInternal)
		}
		seen[token] = true
	}
}

// AckCompletions tells the server that session's completions up to and
// including upToSeq were processed: they are released (never replayed) and
// their tasks removed, except results delivered over their budget or kept
// for a last-good fallback, which stay until retention. It returns how many
// completions this call released.
// Acknowledgement is monotonic (a lower upToSeq changes nothing); beyond the
// session's last seq it fails with ErrOutOfRange. Acknowledge also returns
// the session's acknowledged seq.
func (c *Client) AckCompletions(ctx context.Context, session string, upToSeq uint64) (uint64, error) {
	a, err := c.Acknowledge(ctx, session, upToSeq)
	return a.Removed, err
}

// Acked is the answer to Acknowledge.
type Acked struct {
	// Removed is how many completions this call released (see AckCompletions).
	Removed uint64
	// Seq is the session's acknowledged seq after the call: streams opened
	// after it start above it. 0 from a server without issue 17's contract.
	Seq uint64
}

// Acknowledge is AckCompletions returning the session's acknowledged seq too.
func (c *Client) Acknowledge(ctx context.Context, session string, upToSeq uint64) (Acked, error) {
	resp, err := c.tools.AckCompletions(ctx, &pb.AckCompletionsRequest{SessionId: session, UpToSeq: upToSeq})
	if err != nil {
		return Acked{}, rpcerr.Wrap("AckCompletions", err)
	}
	return Acked{Removed: resp.GetRemoved(), Seq: resp.GetAckedSeq()}, nil
}
