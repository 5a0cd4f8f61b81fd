package errand

import (
	"context"
	"fmt"
	"time"

	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/rpcerr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
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
// system's roots unless a TLS option says otherwise).
//
// Unless WithLazyConnect is given, Dial waits until the server is reachable
// or ctx is done; in the latter case the error matches both ErrUnavailable and
// ctx's error. Once connected, the client reconnects by itself after the
// connection breaks.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("errand: dial %s: %w", addr, err)
		}
	}
	resolved, err := o.resolve(addr)
	if err != nil {
		return nil, fmt.Errorf("errand: dial %s: %w", addr, err)
	}
	addr = resolved
	conn, err := grpc.NewClient(addr, o.grpcOptions()...)
	if err != nil {
		return nil, fmt.Errorf("errand: dial %s: %w", addr, err)
	}
	if !o.lazy {
		conn.Connect()
		for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
			if !conn.WaitForStateChange(ctx, s) {
				conn.Close()
				return nil, fmt.Errorf("errand: dial %s: server not reachable (%w): %w", addr, ErrUnavailable, ctx.Err())
			}
		}
	}
	o.logger.Debug("errand: connected", "addr", addr)
	return &Client{conn: conn, tools: pb.NewToolServiceClient(conn), opts: o}, nil
}

// Close closes the connection; streams and calls in flight fail.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying gRPC connection, for the worker package and for
// calling the generated errandv1 stubs directly.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// SubmitOption configures one Submit.
type SubmitOption func(*pb.SubmitToolRequest)

// WithTaskTimeout sets the timeout of this call's run on a worker, instead of
// the tool's default. It is rounded up to whole milliseconds.
func WithTaskTimeout(d time.Duration) SubmitOption {
	return func(r *pb.SubmitToolRequest) {
		r.TimeoutMs = uint64((d + time.Millisecond - 1) / time.Millisecond)
	}
}

// WithIdempotencyKey makes a retried Submit with the same key in the same
// session return the first submit's task instead of running the tool again.
func WithIdempotencyKey(key string) SubmitOption {
	return func(r *pb.SubmitToolRequest) { r.IdempotencyKey = key }
}

// Submit queues one call of tool in session and returns at once, whatever the
// tool's latency. args is the arguments object: a struct or map (encoded with
// encoding/json), a json.RawMessage or []byte holding JSON text, or nil for {}.
// The result arrives later on Completions(ctx, session, ...).
func (c *Client) Submit(ctx context.Context, session, tool string, args any, opts ...SubmitOption) (Ack, error) {
	argsJSON, err := JSONText(args)
	if err != nil {
		return Ack{}, fmt.Errorf("errand: SubmitTool: arguments: %w (%w)", err, ErrInvalidArgument)
	}
	req := &pb.SubmitToolRequest{SessionId: session, Tool: tool, ArgumentsJson: argsJSON}
	for _, opt := range opts {
		opt(req)
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
	}, nil
}

// GetTask returns one task; ErrNotFound when it is unknown or no longer retained.
func (c *Client) GetTask(ctx context.Context, taskID string) (*Task, error) {
	t, err := c.tools.GetTask(ctx, &pb.GetTaskRequest{TaskId: taskID})
	if err != nil {
		return nil, rpcerr.Wrap("GetTask", err)
	}
	return taskFromPB(t), nil
}

// Cancel cancels a queued or running task: it completes as StatusCancelled
// and the worker running it is told to stop. Cancelling a cancelled task
// returns it unchanged; one that finished otherwise gives ErrFailedPrecondition.
func (c *Client) Cancel(ctx context.Context, taskID string) (*Task, error) {
	t, err := c.tools.CancelTask(ctx, &pb.CancelTaskRequest{TaskId: taskID})
	if err != nil {
		return nil, rpcerr.Wrap("CancelTask", err)
	}
	return taskFromPB(t), nil
}

// ListTools returns the registered tools, sorted by name.
func (c *Client) ListTools(ctx context.Context) ([]Tool, error) {
	resp, err := c.tools.ListTools(ctx, &pb.ListToolsRequest{})
	if err != nil {
		return nil, rpcerr.Wrap("ListTools", err)
	}
	tools := make([]Tool, 0, len(resp.GetTools()))
	for _, t := range resp.GetTools() {
		tools = append(tools, toolFromPB(t))
	}
	return tools, nil
}

// AckCompletions tells the server that session's completions up to and
// including upToSeq were processed and may be removed; it returns how many were.
func (c *Client) AckCompletions(ctx context.Context, session string, upToSeq uint64) (uint64, error) {
	resp, err := c.tools.AckCompletions(ctx, &pb.AckCompletionsRequest{SessionId: session, UpToSeq: upToSeq})
	if err != nil {
		return 0, rpcerr.Wrap("AckCompletions", err)
	}
	return resp.GetRemoved(), nil
}
