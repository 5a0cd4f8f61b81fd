package errand

import (
	"context"
	"errors"
	"io"
	"iter"

	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/backoff"
	"github.com/errand-dev/errand/go/internal/rpcerr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Completions follows a session: it yields every retained completion with
// Seq > afterSeq, then live ones as tasks finish, in Seq order, each once.
//
// When the stream breaks (the server restarts, the connection drops), it
// reconnects with jittered exponential backoff and resumes after the last Seq
// it yielded, so a loop sees no gap and no duplicate. A stream the server
// refuses for the tenant's rate (RESOURCE_EXHAUSTED with retry-after-ms)
// waits as long as the server asks instead (at most a minute). Each
// reconnect is logged at WARN (WithLogger) with the error and the wait
// ("in"). It ends when the loop breaks, or after yielding one final error:
// ctx's (errors.Is with context.Canceled or context.DeadlineExceeded), or
// one that retrying cannot fix (ErrInvalidArgument for a bad session ID,
// ErrUnauthenticated, ...).
//
//	for c, err := range client.Completions(ctx, "s1", 0) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(c.Seq, c.TaskID, c.Status, string(c.Result))
//	}
//
// To resume in another process, store the last Seq you processed and pass it
// as afterSeq; AckCompletions lets the server drop what you no longer need.
// An afterSeq beyond the session's last Seq (one it never assigned: a typo,
// another session's Seq) ends the loop with ErrOutOfRange, whose message
// names both, instead of waiting for completions it would then skip.
//
// Resuming across a server restart relies on the server's durable store: a
// server run with the memory store starts its sessions over at Seq 1, so a
// reconnect after the last Seq seen ends with ErrOutOfRange.
func (c *Client) Completions(ctx context.Context, session string, afterSeq uint64) iter.Seq2[*Completion, error] {
	return func(yield func(*Completion, error) bool) {
		last := afterSeq
		c.resume(ctx, "Completions", session, &last, func(b *backoff.Backoff) error {
			return c.follow(ctx, session, &last, b, yield)
		}, func(err error) { yield(nil, err) })
	}
}

// resume runs follow (one stream) again and again, reconnecting after
// jittered backoff (or the wait a rate limit's retry-after-ms asks), until
// the consumer stops, ctx ends or an error retrying cannot fix; it hands
// that final error to yieldErr. *last is the seq the next stream resumes
// after, for the log.
func (c *Client) resume(ctx context.Context, op, session string, last *uint64,
	follow func(b *backoff.Backoff) error, yieldErr func(error)) {
	b := backoff.Backoff{Min: c.opts.minBackoff, Max: c.opts.maxBackoff}
	for {
		err := follow(&b)
		if err == errStop {
			return
		}
		if ctx.Err() != nil {
			if werr := rpcerr.Wrap(op, err); errors.Is(werr, ctx.Err()) {
				yieldErr(werr)
			} else {
				yieldErr(rpcerr.Wrap(op, status.FromContextError(ctx.Err()).Err()))
			}
			return
		}
		if !rpcerr.Transient(err) {
			yieldErr(rpcerr.Wrap(op, err))
			return
		}
		// The server's wait when it asked for one (a rate limit), else the
		// backoff's.
		wait := rpcerr.Pause(err, &b)
		c.opts.logger.Warn("errand: "+op+" stream broke; reconnecting",
			"session_id", session, "after_seq", *last, "in", wait, "err", err)
		if werr := backoff.Sleep(ctx, wait); werr != nil {
			yieldErr(rpcerr.Wrap(op, status.FromContextError(werr).Err()))
			return
		}
	}
}

var (
	// errStop means the consumer broke out of the loop.
	errStop = errors.New("stop")
	// errEnded is a stream the server closed without an error (it shut down):
	// worth reopening, like any other broken connection.
	errEnded = status.Error(codes.Unavailable, "the server ended the stream")
)

// follow runs one stream until it fails (returning the error, io.EOF turned
// into Unavailable) or the consumer stops (errStop). It advances *last past
// every completion yielded.
func (c *Client) follow(ctx context.Context, session string, last *uint64, b *backoff.Backoff,
	yield func(*Completion, error) bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// WaitForReady: while the server is down the call waits for it to come
	// back (bounded by ctx) instead of failing at once.
	stream, err := c.tools.Completions(ctx, &pb.CompletionsRequest{SessionId: session, AfterSeq: *last},
		grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return errEnded
		}
		if err != nil {
			return err
		}
		b.Reset()
		if m.GetSeq() <= *last {
			continue // seen before a reconnect; never yield twice
		}
		*last = m.GetSeq()
		if !yield(completionFromPB(m), nil) {
			return errStop
		}
	}
}
