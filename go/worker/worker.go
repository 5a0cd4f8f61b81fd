// Package worker serves errand tools written in Go.
//
// A Worker holds one stream to the server (WorkerService.Connect), registers
// its tools and concurrency limit, runs each Assignment in its own goroutine
// and sends back the result. The handler's context is cancelled when the
// server cancels the task (CancelAssignment), when the task's timeout passes,
// or when the connection is lost (the server then gives the task to another
// worker as a new attempt). After a server restart it reconnects with backoff
// and registers again.
//
//	c, err := errand.Dial(ctx, "127.0.0.1:7466")
//	...
//	w := worker.New(c, worker.WithName("geo"), worker.WithConcurrency(8))
//	w.Handle("weather", "Current weather for a city.",
//		`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`,
//		func(ctx context.Context, args json.RawMessage) (any, error) {
//			var in struct{ City string }
//			if err := json.Unmarshal(args, &in); err != nil {
//				return nil, err
//			}
//			return map[string]any{"city": in.City, "celsius": 21}, nil
//		})
//	err = w.Run(ctx) // until ctx is done
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
	"github.com/errand-dev/errand/go/internal/backoff"
	"github.com/errand-dev/errand/go/internal/millis"
	"github.com/errand-dev/errand/go/internal/rpcerr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Handler runs one tool call. args is the JSON arguments object. The result
// is encoded like Submit's arguments (json.RawMessage and []byte as JSON
// text, anything else through encoding/json; a result that cannot be encoded,
// or JSON text that is not valid or not UTF-8, fails the task with code
// "invalid_result"). A non-nil error fails the task with code "tool_error"
// and the error's text, or with the code and message of an *errand.ToolError
// found in its chain (see ToolError); bytes of these texts, and of a
// summary, that are not UTF-8 are sent escaped as \xNN.
//
// ctx is cancelled when the task is cancelled, times out or its worker loses
// the server; context.Cause(ctx) tells which (errors.Is with ErrCancelled,
// whose text then carries the cancel's reason if it had one, ErrTimedOut,
// ErrConnectionLost, or the Run context's own error). Through ctx the handler
// reads which task it runs (TaskFrom: task ID, session, tool, attempt and
// timeout), reports progress (Progress) and reads what an earlier attempt
// left to resume from (ResumeDetail). A task may run more than once (a new
// attempt after a lost worker or a server restart): its task ID and attempt
// let the handler stay idempotent. Return WithSummary(result, summary) to
// give the model a summary instead of a cut preview when the result exceeds
// the task's budget.
type Handler func(ctx context.Context, args json.RawMessage) (any, error)

// Causes of a handler's context being cancelled, as returned by context.Cause.
var (
	// ErrCancelled: the task was cancelled through CancelTask.
	ErrCancelled = errors.New("errand worker: task cancelled")
	// ErrTimedOut: the task's timeout passed.
	ErrTimedOut = errors.New("errand worker: task timed out")
	// ErrConnectionLost: the stream to the server broke; the server will run
	// the task again as a new attempt.
	ErrConnectionLost = errors.New("errand worker: connection to the server lost")
)

// ToolError returns an error that fails a task with the given code and
// message (the code "tool_error" is used for any other error).
func ToolError(code, message string) error {
	return &errand.ToolError{Code: code, Message: message}
}

// Worker serves tools. Register them with Handle, then call Run.
type Worker struct {
	client       *errand.Client
	name         string
	concurrency  uint32
	logger       *slog.Logger
	minBackoff   time.Duration
	maxBackoff   time.Duration
	onRegistered func(workerID string)

	mu     sync.Mutex
	tools  []*tool
	byName map[string]*tool
	live   *session // Run's registered stream, if any (a later Register goes there)

	// Whether Run runs, guarded by regMu; regChanged is closed (and
	// replaced) at every change of it and of what WaitRegistered waits for
	// (live and the tools' registration, guarded by mu). Run's start and
	// end change running and the rest in one critical section, so no one
	// sees a Run that has ended and yet cannot be started again, or a new
	// Run beside the old one's end.
	regMu      sync.Mutex
	regChanged chan struct{}
	running    bool  // Run is running
	runEnded   bool  // Run has returned (runErr says why) and not started again
	runErr     error // Run's error, when runEnded

	// testHookEnded, if set (export_test.go), is called by Run once its end
	// is visible to WaitRegistered, before Run returns.
	testHookEnded func()
}

type tool struct {
	name        string
	description string
	schema      string
	handler     Handler
	policy      *pb.Tool // timeouts, delivery, dedup, budget, fallback, cancellable_by_model
	err         error    // the first option's error (a negative duration): Run returns it

	// Its registration, guarded by Worker.mu: the stream its Register went
	// out on and the one whose server accepted it (it is registered while
	// that one is Worker.live), or the server's refusal of a later Register
	// of it (RegisterRefused), after which it is registered no more and a
	// Handle of its name replaces it.
	sentOn, acceptedOn *session
	refused            error
	// Later Registers of it refused UNAVAILABLE in a row (the server could
	// not reach its database to check it): each is sent again after
	// unavailableDelay.
	unavailable int
}

// millis converts an option's duration for the wire (internal/millis); the
// first error is kept for Run to return.
func (t *tool) millis(option string, d time.Duration) uint64 {
	ms, err := millis.RoundUp(option, d)
	if err != nil && t.err == nil {
		t.err = err
	}
	return ms
}

// Option configures a Worker.
type Option func(*Worker)

// WithName names the worker in the server's logs (default: the host name).
func WithName(name string) Option { return func(w *Worker) { w.name = name } }

// WithConcurrency sets how many tasks the worker runs at once (default 1).
// The server never assigns more.
func WithConcurrency(n int) Option {
	return func(w *Worker) {
		if n > 0 {
			w.concurrency = uint32(n)
		}
	}
}

// WithLogger receives connection events and handler panics. By default
// nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(w *Worker) {
		if l != nil {
			w.logger = l
		}
	}
}

// WithReconnectBackoff bounds the delay between reconnect attempts
// (default 100ms to 5s, doubling, jittered). A connection refused for the
// tenant's rate waits as long as the server asks instead (at most a minute).
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(w *Worker) {
		if min > 0 && max >= min {
			w.minBackoff, w.maxBackoff = min, max
		}
	}
}

// OnRegistered is called each time the server accepts the worker's
// registration: at start and after every reconnect. To wait for the first,
// use WaitRegistered.
func OnRegistered(f func(workerID string)) Option {
	return func(w *Worker) { w.onRegistered = f }
}

// ToolOption configures one tool in Handle.
type ToolOption func(*tool)

// WithTimeout sets the tool's default timeout per run, counted from dispatch
// to a worker, rounded up to whole milliseconds; 0 means the server's default
// (--default-timeout-ms). A negative d is an error: Run returns one matching
// errand.ErrInvalidArgument that names the tool, the option and d, before
// connecting. Above the server's --max-timeout-ms the registration is refused
// (errand.ErrInvalidArgument too).
func WithTimeout(d time.Duration) ToolOption {
	return func(t *tool) { t.policy.TimeoutMs = t.millis("worker.WithTimeout", d) }
}

// WithQueueTimeout sets how long a call of the tool may wait in the queue for
// a worker by default, counted from submit; a submit's
// errand.WithQueueTimeout wins over it. A call no worker has taken by then
// completes as TIMED_OUT with error code "queue_timeout". It is rounded up to
// whole milliseconds; 0 means the server's default
// (--default-queue-timeout-ms, 5 minutes unless configured). A negative d is
// an error, as for WithTimeout. Above the server's --max-timeout-ms the
// registration is refused (Run returns an error matching
// errand.ErrInvalidArgument).
func WithQueueTimeout(d time.Duration) ToolOption {
	return func(t *tool) { t.policy.QueueTimeoutMs = t.millis("worker.WithQueueTimeout", d) }
}

// New returns a worker that connects through c. c may be shared with agent
// calls; the worker does not close it.
func New(c *errand.Client, opts ...Option) *Worker {
	host, _ := os.Hostname()
	w := &Worker{
		client:      c,
		name:        host,
		concurrency: 1,
		logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		minBackoff:  100 * time.Millisecond,
		maxBackoff:  5 * time.Second,
		byName:      map[string]*tool{},
		regChanged:  make(chan struct{}),
	}
	for _, opt := range opts {
		opt(w)
	}
	return w
}

// Handle registers a tool: its name (1-64 of [A-Za-z0-9_-]), a description
// for the model, the JSON Schema of its arguments (a string or []byte of JSON
// text, or a value encoded with encoding/json; nil accepts any object) and
// the handler. Call it before Run, or while Run runs: a tool handled then is
// registered on Run's stream at once (a later Register of it alone; running
// tasks go on), and with every reconnect. WaitRegistered waits for the
// server to accept it too; OnRegistered is called only for a connection's
// first registration. If the server refuses it (RegisterRefused: a name or
// definition it rejects, a tool the token may not serve, a limit), only that
// tool fails: the worker goes on serving its other tools and running its
// tasks, the refused tool is not registered again (by a reconnect or a later
// Run), and WaitRegistered for it returns the refusal until its name is
// handled again: Handle it again (with a definition the server accepts) to
// replace it, and it is registered then. A refusal with UNAVAILABLE (the
// server could not reach its database to check the tool) is no verdict: the
// Register is sent again (after 250 ms, doubling to 10 s) and WaitRegistered
// waits on. (A tool refused in a connection's
// first Register, one handled before Run or while Run reconnects, makes Run
// fail instead.) It panics on a duplicate name (but a refused tool's), a nil
// handler or a schema that is not JSON, as these are programming errors. An option given a
// value it cannot send (a negative duration) makes Run fail instead, naming
// the tool and the option; while Run runs, Handle panics with it.
func (w *Worker) Handle(name, description string, schema any, h Handler, opts ...ToolOption) {
	if h == nil {
		panic("worker: Handle " + name + ": nil handler")
	}
	var schemaJSON string
	var err error
	if s, ok := schema.(string); ok {
		schemaJSON, err = errand.JSONText(json.RawMessage(s))
	} else {
		schemaJSON, err = errand.JSONText(schema)
	}
	if err != nil {
		panic(fmt.Sprintf("worker: Handle %s: schema: %v", name, err))
	}
	t := &tool{name: name, description: description, schema: schemaJSON, handler: h, policy: &pb.Tool{}}
	for _, opt := range opts {
		opt(t)
	}
	w.mu.Lock()
	old, dup := w.byName[name]
	if dup && old.refused == nil {
		w.mu.Unlock()
		panic("worker: Handle " + name + ": tool registered twice")
	}
	if w.live != nil && t.err != nil {
		w.mu.Unlock()
		panic(fmt.Sprintf("worker: Handle %s: %v", name, t.err))
	}
	if dup {
		// The server refused it: this definition replaces it.
		w.tools = slices.DeleteFunc(w.tools, func(x *tool) bool { return x == old })
	}
	w.byName[name] = t
	w.tools = append(w.tools, t)
	live := w.live
	if live != nil {
		t.sentOn = live
	}
	w.mu.Unlock()
	if live != nil {
		// The server adds it to the tools it serves. A failed send means
		// the stream broke: the reconnection registers every tool.
		if err := live.sendRegister(t); err != nil {
			w.logger.Warn("errand worker: registering a tool on the live stream failed; the next connection registers it", "tool", name, "err", err)
		}
	}
}

// toolsLocked is every tool handled so far that the server has not
// refused, and the first tool option's error; w.mu is held.
func (w *Worker) toolsLocked() ([]*tool, error) {
	var tools []*tool
	var optErr error
	for _, t := range w.tools {
		if t.err != nil && optErr == nil {
			optErr = fmt.Errorf("errand worker: tool %q: %w", t.name, t.err)
		}
		if t.refused == nil {
			tools = append(tools, t)
		}
	}
	return tools, optErr
}

// register is the Register of tools.
func (w *Worker) register(tools []*tool) *pb.Register {
	reg := &pb.Register{WorkerName: w.name, MaxConcurrency: w.concurrency}
	for _, t := range tools {
		reg.Tools = append(reg.Tools, &pb.Tool{
			Name: t.name, Description: t.description, InputSchemaJson: t.schema,
			TimeoutMs:          t.policy.GetTimeoutMs(),
			QueueTimeoutMs:     t.policy.GetQueueTimeoutMs(),
			Delivery:           t.policy.GetDelivery(),
			Dedup:              t.policy.GetDedup(),
			ResultBudgetBytes:  t.policy.GetResultBudgetBytes(),
			Fallback:           t.policy.GetFallback(),
			CancellableByModel: t.policy.GetCancellableByModel(),
		})
	}
	return reg
}

// Run connects, registers and serves until ctx is done, reconnecting with
// backoff whenever the stream breaks (or, refused for the tenant's rate,
// after the wait the server's retry-after-ms asks, at most a minute; each
// reconnect is logged at WARN with the error and the wait, "in"). It
// returns ctx's error once ctx is done and every handler has returned
// (handlers must honour their context), or an *errand.Error the server
// answered that retrying cannot fix (a tool name or schema it rejects, bad
// credentials, ...). It fails at once, without
// connecting, when no tool was registered with Handle (an error matching
// errand.ErrFailedPrecondition) or a tool's option was given a negative
// duration (an error matching errand.ErrInvalidArgument),
// or with the refusal of a tool when the server refused every tool (see
// Handle). A tool handled while Run runs that the server refuses does not
// end Run (WaitRegistered reports it).
// WaitRegistered tells when the server knows the tools. One Run at a time: a
// Run called while another runs returns an error at once (matching
// errand.ErrFailedPrecondition); once Run has returned, it may be called
// again.
func (w *Worker) Run(ctx context.Context) (err error) {
	started := false
	w.setRegistration(func() {
		if !w.running {
			w.running, w.runEnded, w.runErr = true, false, nil
			started = true
		}
	})
	if !started {
		return fmt.Errorf("errand worker: Run called twice: one Run at a time (%w)", errand.ErrFailedPrecondition)
	}
	// Deferred first, so it runs last: after every handler has returned.
	// Ended and no longer running in one step: a Run started as soon as
	// WaitRegistered returns this one's error is not "called twice".
	defer func() {
		w.setRegistration(func() { w.running, w.runEnded, w.runErr = false, true, err })
		if w.testHookEnded != nil {
			w.testHookEnded()
		}
	}()
	w.mu.Lock()
	tools, optErr := w.toolsLocked()
	_, refused, _ := w.registeredLocked(nil)
	w.mu.Unlock()
	if len(tools) == 0 {
		if refused != nil {
			return refused // every tool was refused by an earlier Run's server
		}
		return fmt.Errorf("errand worker: no tools: call Handle before Run (%w)", errand.ErrFailedPrecondition)
	}
	if optErr != nil {
		return optErr
	}

	var handlers sync.WaitGroup
	defer handlers.Wait()
	b := backoff.Backoff{Min: w.minBackoff, Max: w.maxBackoff}
	for {
		// Every tool handled so far, those handled while Run ran too,
		// but those the server refused.
		w.mu.Lock()
		tools, _ := w.toolsLocked()
		w.mu.Unlock()
		err := w.serve(ctx, tools, &b, &handlers)
		w.setRegistration(func() {})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !rpcerr.Transient(err) {
			return rpcerr.Wrap("Connect", err)
		}
		// The server's wait when it asked for one (a rate limit), else the
		// backoff's.
		wait := rpcerr.Pause(err, &b)
		w.logger.Warn("errand worker: stream broke; reconnecting", "worker", w.name, "in", wait, "err", err)
		if err := backoff.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// WaitRegistered waits until the server has accepted the worker's
// registration, so that its tools are known there and a Submit to them is
// accepted (before it, a fresh server answers errand.ErrNotFound, "unknown
// tool"). Start Run in another goroutine, then wait:
//
//	go w.Run(ctx)
//	if err := w.WaitRegistered(ctx); err != nil {
//		return err // Run's error (a tool the server refuses, a bad token, ...) or ctx's
//	}
//
// It waits for the tools named, or, with no names, for every tool handled so
// far; a name no Handle gave is an error matching errand.ErrInvalidArgument.
// It returns nil at once while Run's stream is registered with those tools
// (a tool handled while Run runs is sent in a later Register: it waits for
// the server's answer to that too); otherwise it waits for the next
// registration (it also waits for Run to start, and through reconnects). If
// Run returns first, or has returned, it returns Run's error; if ctx ends
// first, ctx's error. If the server refused one of those tools handled
// while Run ran (see Handle), it returns that refusal at once, and again
// until the tool's name is handled again: an *errand.Error (op "Connect")
// with the server's status code and message, as Run returns for a refused
// first registration (errors.Is(err, errand.ErrPermissionDenied),
// status.Code(err), ...). A refusal of another tool is not reported: name
// the tools handled after a refusal to wait for them alone. OnRegistered is
// the callback form.
//
// Run may be started again once it has returned, even from the moment
// WaitRegistered reports its end; from the new Run's start on,
// WaitRegistered waits for that Run's registration. It cannot know of a Run
// that has not started yet: right after `go w.Run(ctx)` on a worker whose
// earlier Run has returned, it may still return that earlier Run's error
// (the new goroutine may not have run). To restart and wait for certain,
// select on the new Run's result and on a channel OnRegistered signals.
func (w *Worker) WaitRegistered(ctx context.Context, names ...string) error {
	for {
		w.regMu.Lock()
		ended, err, changed := w.runEnded, w.runErr, w.regChanged
		w.regMu.Unlock()
		w.mu.Lock()
		registered, refused, unknown := w.registeredLocked(names)
		w.mu.Unlock()
		switch {
		case unknown != "":
			return fmt.Errorf("errand worker: WaitRegistered: no tool %q was handled: call Handle first (%w)",
				unknown, errand.ErrInvalidArgument)
		case refused != nil:
			return refused
		case registered:
			return nil
		case ended:
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// registeredLocked says whether Run's stream is registered with the tools
// named (none: every tool handled so far), or returns the refusal of the
// first of them the server refused, or the first name no Handle gave;
// w.mu is held.
func (w *Worker) registeredLocked(names []string) (registered bool, refused error, unknown string) {
	tools := w.tools
	if len(names) > 0 {
		tools = make([]*tool, 0, len(names))
		for _, name := range names {
			t, ok := w.byName[name]
			if !ok {
				return false, nil, name
			}
			tools = append(tools, t)
		}
	}
	for _, t := range tools {
		if t.refused != nil {
			return false, t.refused, ""
		}
	}
	if w.live == nil {
		return false, nil, ""
	}
	for _, t := range tools {
		if t.acceptedOn != w.live {
			return false, nil, ""
		}
	}
	return true, nil, ""
}

// setRegistration changes WaitRegistered's state with f and wakes its callers.
func (w *Worker) setRegistration(f func()) {
	w.regMu.Lock()
	defer w.regMu.Unlock()
	f()
	close(w.regChanged)
	w.regChanged = make(chan struct{})
}

var errEnded = status.Error(codes.Unavailable, "the server ended the stream")

// maxServerMessage is the largest --max-message-bytes a server accepts
// (gRPC's length prefix is 32 bits; errand caps it at 1 GiB).
const maxServerMessage = 1 << 30

// serve runs one stream: register, then execute commands until it breaks.
func (w *Worker) serve(ctx context.Context, tools []*tool, b *backoff.Backoff, handlers *sync.WaitGroup) error {
	reg := w.register(tools)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(ErrConnectionLost)
	// Every message the server may send (up to the largest
	// --max-message-bytes): an Assignment over the client's own limit is
	// refused by start, naming it, instead of by grpc-go, which would end
	// the stream and have the task sent again, attempt after attempt, with
	// no word of why.
	stream, err := pb.NewWorkerServiceClient(w.client.Conn()).Connect(ctx, grpc.WaitForReady(true),
		grpc.MaxCallRecvMsgSize(max(w.client.MaxRecvBytes(), maxServerMessage)))
	if err != nil {
		return err
	}
	if err := stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Register{Register: reg}}); err != nil {
		return recvErr(stream, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return eof(err)
	}
	registered := first.GetRegistered()
	if registered == nil {
		return status.Errorf(codes.Internal, "expected Registered as the server's first message, got %T", first.GetKind())
	}
	b.Reset()
	w.logger.Info("errand worker: registered", "worker", w.name, "worker_id", registered.GetWorkerId(), "tools", len(reg.Tools))

	s := &session{w: w, stream: stream, ctx: ctx, running: map[string]*run{},
		maxMessage: messageLimit(registered.GetMaxMessageBytes())}
	w.mu.Lock()
	for _, t := range tools {
		t.sentOn, t.acceptedOn = s, s
	}
	w.live = s
	// The tools handled between this stream's Register and now.
	var later []*tool
	for _, t := range w.tools {
		if t.sentOn != s && t.refused == nil {
			t.sentOn = s
			later = append(later, t)
		}
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.live = nil
		w.mu.Unlock()
	}()
	w.setRegistration(func() {})
	if w.onRegistered != nil {
		w.onRegistered(registered.GetWorkerId())
	}
	for _, t := range later {
		if err := s.sendRegister(t); err != nil {
			return recvErr(stream, err)
		}
	}
	for {
		cmd, err := stream.Recv()
		if err != nil {
			return eof(err)
		}
		switch k := cmd.GetKind().(type) {
		case *pb.WorkerCommand_Assignment:
			s.start(k.Assignment, handlers)
		case *pb.WorkerCommand_Cancel:
			s.cancel(k.Cancel)
		case *pb.WorkerCommand_Registered:
			// The answers to later Registers, in the order sent.
			s.answered(nil)
		case *pb.WorkerCommand_RegisterRefused:
			s.answered(refusal(k.RegisterRefused))
		}
	}
}

func eof(err error) error {
	if err == io.EOF {
		return errEnded
	}
	return err
}

// recvErr: a failed Send only says io.EOF; the status is read from Recv.
func recvErr(stream grpc.BidiStreamingClient[pb.WorkerMessage, pb.WorkerCommand], err error) error {
	if err == io.EOF {
		if _, rerr := stream.Recv(); rerr != nil {
			return eof(rerr)
		}
	}
	return err
}

// session is the state of one stream: the tasks it is running.
type session struct {
	w      *Worker
	stream grpc.BidiStreamingClient[pb.WorkerMessage, pb.WorkerCommand]
	ctx    context.Context // done when the stream is

	// maxMessage is the most bytes one message to the server may take
	// (Registered.max_message_bytes, or gRPC's default 4 MiB).
	maxMessage int

	sendMu  sync.Mutex // a gRPC stream allows one sender at a time
	mu      sync.Mutex
	running map[string]*run
	// The tools of the later Registers sent and not answered yet, in the
	// order sent; guarded by mu.
	laterRegisters []*tool
}

type run struct {
	attempt uint32
	cancel  context.CancelCauseFunc
}

func (s *session) start(a *pb.Assignment, handlers *sync.WaitGroup) {
	if size, limit := proto.Size(a), s.w.client.MaxRecvBytes(); size > limit {
		msg := fmt.Sprintf("the task's Assignment is %d bytes, over this worker's limit of %d bytes "+
			"(errand.WithMaxRecvBytes on the worker's Client): raise it, or pass large arguments by reference "+
			"(a URL or a path)", size, limit)
		s.w.logger.Warn("errand worker: task refused: "+msg, "tool", a.GetTool(), "task_id", a.GetTaskId())
		s.send(a, "", "", &pb.ToolError{Code: "assignment_too_large", Message: msg})
		return
	}
	s.w.mu.Lock()
	t := s.w.byName[a.GetTool()]
	if t != nil && t.refused != nil {
		t = nil // the server does not know it from this worker
	}
	s.w.mu.Unlock()
	if t == nil {
		s.send(a, "", "", &pb.ToolError{Code: "unknown_tool", Message: "this worker does not serve " + a.GetTool()})
		return
	}
	ctx, cancel := context.WithCancelCause(s.ctx)
	var deadline time.Time
	if a.GetTimeoutMs() > 0 {
		deadline = time.Now().Add(time.Duration(a.GetTimeoutMs()) * time.Millisecond)
		var stop context.CancelFunc
		ctx, stop = context.WithDeadlineCause(ctx, deadline, ErrTimedOut)
		inner := cancel
		cancel = func(cause error) { inner(cause); stop() }
	}
	ctx = context.WithValue(ctx, taskKey{}, &taskCtx{s: s, a: a, deadline: deadline})
	r := &run{attempt: a.GetAttempt(), cancel: cancel}
	s.mu.Lock()
	s.running[a.GetTaskId()] = r
	s.mu.Unlock()

	handlers.Add(1)
	go func() {
		defer handlers.Done()
		result, summary, terr := s.call(ctx, t, a)
		s.mu.Lock()
		if s.running[a.GetTaskId()] == r {
			delete(s.running, a.GetTaskId())
		}
		s.mu.Unlock()
		done := ctx.Err() != nil
		cancel(nil)
		if done {
			// Cancelled, timed out or disconnected: the server has settled the
			// task itself (or will re-run it) and expects no result.
			return
		}
		s.send(a, result, summary, terr)
	}()
}

// call runs the handler, turning its result, error or panic into the wire form.
func (s *session) call(ctx context.Context, t *tool, a *pb.Assignment) (result, summary string, terr *pb.ToolError) {
	defer func() {
		if p := recover(); p != nil {
			s.w.logger.Error("errand worker: handler panicked", "tool", t.name, "task_id", a.GetTaskId(),
				"panic", p, "stack", string(debug.Stack()))
			result, summary, terr = "", "", &pb.ToolError{Code: "tool_error", Message: fmt.Sprintf("panic: %v", p)}
		}
	}()
	args := json.RawMessage(a.GetArgumentsJson())
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	out, err := t.handler(ctx, args)
	if err != nil {
		var te *errand.ToolError
		if errors.As(err, &te) {
			return "", "", &pb.ToolError{Code: te.Code, Message: te.Message}
		}
		return "", "", &pb.ToolError{Code: "tool_error", Message: err.Error()}
	}
	if sum, ok := out.(Summarized); ok {
		out, summary = sum.Result, sum.Summary
	}
	text, err := errand.JSONText(out)
	if err != nil {
		return "", "", &pb.ToolError{Code: "invalid_result", Message: "the result could not be encoded as JSON: " + err.Error()}
	}
	if text == "" {
		text = "null"
	}
	return text, summary, nil
}

func (s *session) cancel(c *pb.CancelAssignment) {
	s.mu.Lock()
	r := s.running[c.GetTaskId()]
	delete(s.running, c.GetTaskId())
	s.mu.Unlock()
	if r == nil {
		return // finished meanwhile
	}
	r.cancel(cancelCause(c.GetReason()))
}

func (s *session) send(a *pb.Assignment, result, summary string, terr *pb.ToolError) {
	res := &pb.TaskResult{TaskId: a.GetTaskId(), Attempt: a.GetAttempt(), Summary: validText(summary)}
	if terr != nil {
		terr = &pb.ToolError{Code: validText(terr.GetCode()), Message: validText(terr.GetMessage())}
		res.Outcome = &pb.TaskResult_Error{Error: terr}
	} else {
		res.Outcome = &pb.TaskResult_ResultJson{ResultJson: result}
	}
	if err := s.sendMsg(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Result{Result: res}}); err != nil {
		// The stream broke: the server re-runs the task as a new attempt.
		s.w.logger.Warn("errand worker: result not delivered", "task_id", a.GetTaskId(), "err", err)
	}
}

// sendRegister sends a later Register of t alone (a tool handled while Run
// runs), so that a refusal fails no other tool; the server answers
// Registered or RegisterRefused, which serve's loop hands to answered.
// Queued before it is sent, since the answer may come before Send returns
// (a failed send ends the stream, and the queue with it). A Register the
// client refuses to send (INVALID_ARGUMENT from errand's check of the text
// it sends: a name or description that is not UTF-8) is not sent and ends
// nothing: its tool is refused as by the server (see answered).
func (s *session) sendRegister(t *tool) error {
	reg := s.w.register([]*tool{t})
	s.sendMu.Lock()
	s.mu.Lock()
	s.laterRegisters = append(s.laterRegisters, t)
	s.mu.Unlock()
	err := s.stream.Send(&pb.WorkerMessage{Kind: &pb.WorkerMessage_Register{Register: reg}})
	s.sendMu.Unlock()
	if status.Code(err) != codes.InvalidArgument {
		return err
	}
	s.mu.Lock()
	if i := slices.Index(s.laterRegisters, t); i >= 0 {
		s.laterRegisters = slices.Delete(s.laterRegisters, i, i+1) // never sent, so never answered
	}
	s.mu.Unlock()
	s.settle(t, rpcerr.Wrap("Connect", err))
	return nil
}

// answered takes the server's answer to the oldest later Register not
// answered yet and settles its tool. An answer to no Register changes
// nothing.
func (s *session) answered(refused error) {
	s.mu.Lock()
	var t *tool
	if len(s.laterRegisters) > 0 {
		t = s.laterRegisters[0]
		s.laterRegisters = s.laterRegisters[1:]
	}
	s.mu.Unlock()
	if t != nil {
		s.settle(t, refused)
	}
}

// settle takes the answer to t's later Register: accepted (refused nil), t
// is registered on this stream; refused, it is registered no more, on no
// stream, and WaitRegistered for it returns refused; refused UNAVAILABLE
// (no verdict), its Register is sent again later.
func (s *session) settle(t *tool, refused error) {
	s.w.mu.Lock()
	if status.Code(refused) == codes.Unavailable {
		// Not a verdict on the tool: the server could not check it now.
		t.unavailable++
		delay := unavailableDelay(t.unavailable)
		s.w.mu.Unlock()
		s.w.logger.Warn("errand worker: the server could not check a tool's registration now; sending it again",
			"tool", t.name, "in", delay, "err", refused)
		time.AfterFunc(delay, func() { s.registerAgain(t) })
		return
	}
	t.unavailable = 0
	if refused != nil {
		t.refused = refused
	} else {
		t.acceptedOn = s
	}
	s.w.mu.Unlock()
	if refused != nil {
		s.w.logger.Warn("errand worker: a tool handled while Run runs was refused; the worker serves its other tools",
			"tool", t.name, "err", refused)
	}
	s.w.setRegistration(func() {})
}

// unavailableDelay is the wait before the n-th Register of a tool in a row
// refused UNAVAILABLE is sent again: 250 ms, doubling, at most 10 s.
func unavailableDelay(n int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < n && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}

// registerAgain sends t's Register again on s, if s is still the live
// stream and t is still the tool of that name; a stream that ended instead
// registers it on the next one (its sentOn is not that one).
func (s *session) registerAgain(t *tool) {
	if s.ctx.Err() != nil {
		return
	}
	s.w.mu.Lock()
	still := s.w.live == s && s.w.byName[t.name] == t && t.refused == nil
	s.w.mu.Unlock()
	if still {
		// A send that fails broke the stream: Run reconnects and sends it.
		_ = s.sendRegister(t)
	}
}

// refusal is the error of a refused later Register: an *errand.Error of op
// "Connect", as a refused first Register makes Run return, with the
// refusal's status code and message.
func refusal(r *pb.RegisterRefused) error {
	code := codes.Code(uint32(r.GetCode()))
	if code == codes.OK {
		code = codes.Unknown // a refusal is never OK (status.Error would make it nil)
	}
	return rpcerr.Wrap("Connect", status.Error(code, r.GetMessage()))
}

// sendMsg sends msg made to fit the server's limit (fit): every message
// after the first Register goes through here. Nothing is sent when fit drops it.
func (s *session) sendMsg(msg *pb.WorkerMessage) error {
	fitted := fit(msg, s.maxMessage)
	switch {
	case fitted == nil:
		s.w.logger.Warn("errand worker: a progress report over the server's message limit was not sent", "limit", s.maxMessage)
		return nil
	case fitted != msg:
		s.w.logger.Warn("errand worker: a result over the server's message limit was cut to fit (a failure's text or summary) or failed (invalid_result)",
			"task_id", fitted.GetResult().GetTaskId(), "limit", s.maxMessage)
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(fitted)
}
