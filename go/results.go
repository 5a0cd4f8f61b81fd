package errand

import (
	"context"
	"encoding/json"
	"fmt"

	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/rpcerr"
)

// Digest is what a session is waiting for, as PendingDigest returns it.
type Digest struct {
	// Pending holds the session's queued and running tasks, oldest first (at
	// most 100), each with its latest Progress.
	Pending []*Task
	// PendingCount is the number of unfinished tasks in all (Pending may list fewer).
	PendingCount uint64
	// LastSeq is the seq of the session's last completion; 0 when none.
	LastSeq uint64
	// AckedSeq is the highest seq acknowledged with AckCompletions.
	AckedSeq uint64
	// Unacknowledged counts completions with seq > AckedSeq.
	Unacknowledged uint64
	// Text is for the model, verbatim: the pending calls (tool, short
	// arguments, state, time so far, latest progress) and how many results
	// are unacknowledged. Empty when there is nothing to say; prepend it to
	// the model's next turn otherwise.
	Text string
}

// PendingDigest returns what session is waiting for. maxBytes bounds Text
// (0: the server's 4096; tasks beyond it are counted, not listed). Errors:
// ErrInvalidArgument (a bad session ID, maxBytes over the server's message
// limit), ErrUnimplemented (a server without issue 17's contract).
func (c *Client) PendingDigest(ctx context.Context, session string, maxBytes uint64) (*Digest, error) {
	resp, err := c.tools.PendingDigest(ctx, &pb.PendingDigestRequest{SessionId: session, MaxBytes: maxBytes})
	if err != nil {
		return nil, rpcerr.Wrap("PendingDigest", err)
	}
	d := &Digest{
		PendingCount:   resp.GetPendingCount(),
		LastSeq:        resp.GetLastSeq(),
		AckedSeq:       resp.GetAckedSeq(),
		Unacknowledged: resp.GetUnacknowledged(),
		Text:           resp.GetText(),
	}
	for _, t := range resp.GetPending() {
		d.Pending = append(d.Pending, taskFromPB(t))
	}
	return d, nil
}

// ResultChunk is one page of a task's result text.
type ResultChunk struct {
	// Data is the bytes [Offset, Offset+len(Data)) of the result's JSON text.
	Data string
	// Offset is where Data starts, in bytes.
	Offset uint64
	// TotalBytes is the size of the whole result text.
	TotalBytes uint64
	// EOF is true when Data reaches the end.
	EOF bool
}

// ReadResult reads one page of a task's full result text (its JSON, as the
// worker sent it), starting at byte offset and at most maxBytes long (0: the
// server's 65536; a page may end up to 3 bytes short, on a character
// boundary). Errors: ErrNotFound (unknown task), ErrInvalidArgument (a task
// ID that is not a UUID), ErrFailedPrecondition (the
// task has no result: unfinished or not successful), ErrOutOfRange (offset
// past the end), ErrUnimplemented (a server without issue 17's contract).
func (c *Client) ReadResult(ctx context.Context, taskID string, offset, maxBytes uint64) (ResultChunk, error) {
	ch, err := c.tools.ReadResult(ctx, &pb.ReadResultRequest{TaskId: taskID, Offset: offset, MaxBytes: maxBytes})
	if err != nil {
		return ResultChunk{}, rpcerr.Wrap("ReadResult", err)
	}
	return ResultChunk{Data: ch.GetData(), Offset: ch.GetOffset(), TotalBytes: ch.GetTotalBytes(), EOF: ch.GetEof()}, nil
}

// ReadFullResult pages through ReadResult and returns the whole result text,
// byte for byte as the worker sent it. It fails with ReadResult's errors, and
// with ErrInternal if the server's pages do not line up (an offset or size
// that changes, a page that makes no progress), so it never loops for ever.
func (c *Client) ReadFullResult(ctx context.Context, taskID string) (json.RawMessage, error) {
	var buf []byte
	var total uint64
	for {
		ch, err := c.ReadResult(ctx, taskID, uint64(len(buf)), 0)
		if err != nil {
			return nil, err
		}
		switch {
		case len(buf) == 0 && ch.Offset == 0:
			total = ch.TotalBytes
			buf = make([]byte, 0, min(total, 16<<20)) // the announced size, within reason
		case ch.Offset != uint64(len(buf)) || ch.TotalBytes != total:
			return nil, fmt.Errorf("errand: ReadResult %s: page at offset %d of %d bytes after %d of %d (%w)",
				taskID, ch.Offset, ch.TotalBytes, len(buf), total, ErrInternal)
		}
		buf = append(buf, ch.Data...)
		if uint64(len(buf)) > total {
			return nil, fmt.Errorf("errand: ReadResult %s: pages exceed the %d bytes announced (%w)", taskID, total, ErrInternal)
		}
		if ch.EOF || uint64(len(buf)) == total {
			if uint64(len(buf)) != total {
				return nil, fmt.Errorf("errand: ReadResult %s: end after %d of %d bytes (%w)", taskID, len(buf), total, ErrInternal)
			}
			return json.RawMessage(buf), nil
		}
		if len(ch.Data) == 0 {
			return nil, fmt.Errorf("errand: ReadResult %s: empty page at offset %d of %d (%w)", taskID, len(buf), total, ErrInternal)
		}
	}
}

// CompletionResult returns comp's whole result: Result when it is inline,
// else the text ReadFullResult fetches (a truncated result, or one left off
// with WithResultsByReference). A completion that did not succeed gives its
// Err().
func (c *Client) CompletionResult(ctx context.Context, comp *Completion) (json.RawMessage, error) {
	if err := comp.Err(); err != nil {
		return nil, err
	}
	if comp.ResultInline() {
		return comp.Result, nil
	}
	return c.ReadFullResult(ctx, comp.TaskID)
}
