package errand

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/errand-dev/errand/go/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// ErrInboxClosed: the Inbox was closed, or its context ended. It matches
// ErrFailedPrecondition too, and status.Code gives codes.FailedPrecondition.
var ErrInboxClosed = rpcerr.Sentinel(codes.FailedPrecondition, "errand: inbox closed")

// Inbox sorts a session's completions by their delivery policy, for an agent
// loop. It follows SessionEvents in the background (reconnecting by itself)
// and holds what arrived until the agent takes it:
//
//   - Interrupts() yields DeliveryInterrupt completions as they arrive, for
//     an agent that can be interrupted mid-turn;
//   - Ready() (or WaitReady) drains DeliveryWhenIdle completions, and
//     interrupt completions nobody took from Interrupts(), for the agent's
//     next turn, between turns;
//   - Silent() drains DeliverySilent completions, which never start a turn:
//     put them in front of the next user message.
//
// Each drain returns completions in Seq order. A completion with no delivery
// (a server without issue 17's contract) counts as DeliveryWhenIdle. Pass each
// Completion.Message to the model verbatim; Digest gives the text to prepend
// to a turn. After a turn, Ack tells the server what was drained, so a
// restarted agent (a new Inbox) starts after it.
//
// An Inbox holds at most WithInboxLimit completions (1024 by default); when
// it is full it stops reading the stream until the agent drains some.
type Inbox struct {
	c       *Client
	session string
	cfg     inboxConfig

	interrupts chan *Completion
	arrivals   chan *Completion
	reqs       chan inboxReq
	signal     chan struct{} // capacity 1: something became Ready
	cancel     context.CancelFunc
	streamDone chan struct{} // the SessionEvents reader returned
	loopDone   chan struct{} // the inbox stopped

	mu    sync.Mutex
	err   error  // why the stream ended
	acked uint64 // highest seq acknowledged through Ack
}

type inboxConfig struct {
	afterSeq   uint64
	window     time.Duration
	limit      int
	onProgress func(*Progress)
	events     []EventsOption
}

// InboxOption configures NewInbox.
type InboxOption func(*inboxConfig)

// WithAfterSeq starts the inbox after this seq (default 0: after the
// session's acknowledged seq, as the server starts every stream there). A seq
// beyond the session's last one stops the inbox with ErrOutOfRange (see Err).
func WithAfterSeq(seq uint64) InboxOption { return func(c *inboxConfig) { c.afterSeq = seq } }

// WithCoalesceWindow sets how long Notify and WaitReady wait, once a
// completion is ready, for others to arrive and share the turn (default
// 100 ms; 0: none).
func WithCoalesceWindow(d time.Duration) InboxOption {
	return func(c *inboxConfig) {
		if d >= 0 {
			c.window = d
		}
	}
}

// WithInboxLimit bounds how many undrained completions the inbox holds
// (default 1024, at least 1).
func WithInboxLimit(n int) InboxOption {
	return func(c *inboxConfig) {
		if n > 0 {
			c.limit = n
		}
	}
}

// WithProgressFunc receives running tasks' progress (see WithProgress); it
// is called on the inbox's reader goroutine, in stream order, and must
// return quickly. Progress never starts a turn: show it as a status.
func WithProgressFunc(f func(*Progress)) InboxOption {
	return func(c *inboxConfig) { c.onProgress = f }
}

// WithEventsOptions passes options to the inbox's SessionEvents stream, such
// as WithResultsByReference (then fetch results with CompletionResult).
func WithEventsOptions(opts ...EventsOption) InboxOption {
	return func(c *inboxConfig) { c.events = append(c.events, opts...) }
}

// NewInbox starts following session. It runs until ctx is done or Close is
// called; Close it when done.
func (c *Client) NewInbox(ctx context.Context, session string, opts ...InboxOption) *Inbox {
	cfg := inboxConfig{window: 100 * time.Millisecond, limit: 1024}
	for _, opt := range opts {
		opt(&cfg)
	}
	ctx, cancel := context.WithCancel(ctx)
	in := &Inbox{
		c: c, session: session, cfg: cfg,
		interrupts: make(chan *Completion),
		arrivals:   make(chan *Completion),
		reqs:       make(chan inboxReq),
		signal:     make(chan struct{}, 1),
		cancel:     cancel,
		streamDone: make(chan struct{}),
		loopDone:   make(chan struct{}),
	}
	go in.read(ctx)
	go in.loop(ctx)
	return in
}

// read follows the session and hands completions to loop.
func (in *Inbox) read(ctx context.Context) {
	defer close(in.streamDone)
	opts := in.cfg.events
	if in.cfg.onProgress != nil {
		opts = append(opts[:len(opts):len(opts)], WithProgress())
	}
	for ev, err := range in.c.SessionEvents(ctx, in.session, in.cfg.afterSeq, opts...) {
		if err != nil {
			in.mu.Lock()
			in.err = err
			in.mu.Unlock()
			return
		}
		if ev.Progress != nil {
			if in.cfg.onProgress != nil {
				in.cfg.onProgress(ev.Progress)
			}
			continue
		}
		select {
		case in.arrivals <- ev.Completion:
		case <-ctx.Done():
			return
		}
	}
}

type inboxReq struct {
	kind  int // reqReady, reqSilent, reqAckable
	reply chan inboxReply
}

type inboxReply struct {
	items   []*Completion
	ackable uint64
}

const (
	reqReady = iota
	reqSilent
	reqAckable
)

// loop owns the queues: one goroutine, so an interrupt completion goes either
// to Interrupts() or to Ready(), never both.
func (in *Inbox) loop(ctx context.Context) {
	defer close(in.loopDone)
	defer close(in.interrupts)
	var interrupt, idle, silent []*Completion
	var lastSeq uint64 // of the last completion received
	// The coalescing window: Notify fires once it has passed since the first
	// completion that became ready, so completions arriving together share a turn.
	var window <-chan time.Time
	notify := func() {
		if len(interrupt)+len(idle) == 0 {
			return // taken meanwhile
		}
		select {
		case in.signal <- struct{}{}:
		default:
		}
	}
	for {
		var out chan *Completion
		var head *Completion
		if len(interrupt) > 0 {
			out, head = in.interrupts, interrupt[0]
		}
		arrivals := in.arrivals
		if len(interrupt)+len(idle)+len(silent) >= in.cfg.limit {
			arrivals = nil // full: leave the stream waiting until the agent drains
		}
		select {
		case comp := <-arrivals:
			lastSeq = comp.Seq
			switch comp.Delivery {
			case DeliveryInterrupt:
				interrupt = append(interrupt, comp)
			case DeliverySilent:
				silent = append(silent, comp)
			default:
				idle = append(idle, comp)
			}
			if comp.Delivery != DeliverySilent && window == nil {
				if in.cfg.window == 0 {
					notify()
				} else {
					window = time.After(in.cfg.window)
				}
			}
		case <-window:
			window = nil
			notify()
		case out <- head:
			interrupt = interrupt[1:]
		case r := <-in.reqs:
			var rep inboxReply
			switch r.kind {
			case reqReady:
				rep.items = bySeq(append(interrupt, idle...))
				interrupt, idle = nil, nil
			case reqSilent:
				rep.items, silent = silent, nil
			case reqAckable:
				// Everything at or below the lowest undrained seq's
				// predecessor has been drained.
				rep.ackable = lastSeq
				for _, q := range [][]*Completion{interrupt, idle, silent} {
					if len(q) > 0 && q[0].Seq-1 < rep.ackable {
						rep.ackable = q[0].Seq - 1
					}
				}
			}
			r.reply <- rep
		case <-ctx.Done():
			return
		}
	}
}

func bySeq(cs []*Completion) []*Completion {
	sort.Slice(cs, func(i, j int) bool { return cs[i].Seq < cs[j].Seq })
	return cs
}

func (in *Inbox) ask(kind int) (inboxReply, bool) {
	r := inboxReq{kind: kind, reply: make(chan inboxReply, 1)}
	select {
	case in.reqs <- r:
		return <-r.reply, true
	case <-in.loopDone:
		return inboxReply{}, false
	}
}

// Interrupts yields DeliveryInterrupt completions in Seq order as they
// arrive; taking one counts as draining it. Those not taken before the next
// Ready() go to Ready() instead. It is closed when the inbox stops.
func (in *Inbox) Interrupts() <-chan *Completion { return in.interrupts }

// Ready drains, without waiting, the completions for the agent's next turn:
// DeliveryWhenIdle ones and DeliveryInterrupt ones not taken from
// Interrupts(), in Seq order. nil when there are none or the inbox stopped.
func (in *Inbox) Ready() []*Completion {
	rep, _ := in.ask(reqReady)
	return rep.items
}

// Silent drains, without waiting, the DeliverySilent completions, in Seq
// order: they start no turn, and lead the next user message.
func (in *Inbox) Silent() []*Completion {
	rep, _ := in.ask(reqSilent)
	return rep.items
}

// Notify receives a value when completions are ready for Ready(): the
// coalescing window (WithCoalesceWindow) after the first of them arrived, so
// that completions arriving together share a turn. Wake-ups merge (the
// channel holds one), and one may find Ready() empty if Interrupts() took its
// completion. Select on it in an agent loop that also waits for user input;
// WaitReady consumes the same signal, so use one or the other.
func (in *Inbox) Notify() <-chan struct{} { return in.signal }

// WaitReady returns the completions Ready() holds, or waits for some (see
// Notify). Errors: ctx's error; the stream's final error (Err) once it ended
// and nothing is left; ErrInboxClosed.
func (in *Inbox) WaitReady(ctx context.Context) ([]*Completion, error) {
	for {
		if got := in.Ready(); len(got) > 0 {
			return got, nil
		}
		select {
		case <-in.signal:
		case <-in.streamDone:
			select {
			case <-in.loopDone: // closed: the stream's error is just that
				return nil, ErrInboxClosed
			default:
			}
			if got := in.Ready(); len(got) > 0 {
				return got, nil
			}
			if err := in.Err(); err != nil {
				return nil, err
			}
			return nil, ErrInboxClosed
		case <-in.loopDone:
			return nil, ErrInboxClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Ack acknowledges to the server every completion the agent has drained (up
// to the highest seq below which nothing is left undrained) and returns the
// seq acknowledged. Call it after the turn that used them: the server then
// releases them (a new Inbox or stream starts above it) and drops their
// tasks, except results still to be read (delivered over their budget:
// ReadFullResult still works) or reused by a last-good fallback, which stay
// until retention. Nothing is sent
// when nothing new was drained. Errors are AckCompletions'.
func (in *Inbox) Ack(ctx context.Context) (uint64, error) {
	rep, ok := in.ask(reqAckable)
	if !ok {
		return 0, ErrInboxClosed
	}
	in.mu.Lock()
	acked := in.acked
	in.mu.Unlock()
	if rep.ackable <= acked {
		return acked, nil
	}
	a, err := in.c.Acknowledge(ctx, in.session, rep.ackable)
	if err != nil {
		return acked, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.acked = max(in.acked, rep.ackable, a.Seq)
	return in.acked, nil
}

// Digest returns the session's pending digest (PendingDigest with the
// server's default size); prepend a non-empty Digest.Text to the next turn.
func (in *Inbox) Digest(ctx context.Context) (*Digest, error) {
	return in.c.PendingDigest(ctx, in.session, 0)
}

// Err is why the event stream ended (an error SessionEvents could not retry
// past, such as ErrUnauthenticated or ErrUnimplemented); nil while it runs.
func (in *Inbox) Err() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.err
}

// Done is closed when the event stream ends (see Err) or the inbox stops;
// what was received can still be drained until Close.
func (in *Inbox) Done() <-chan struct{} { return in.streamDone }

// Close stops the inbox and waits for its goroutines; Interrupts() is closed.
func (in *Inbox) Close() {
	in.cancel()
	<-in.streamDone
	<-in.loopDone
}
