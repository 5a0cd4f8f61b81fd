package errand

import (
	"encoding/json"
	"fmt"
	"time"

	pb "github.com/errand-dev/errand/go/errandv1"
)

// Delivery says how a completion reaches the model. The server resolves it
// at submit (the submit's WithDelivery, else the tool's, else its
// --default-delivery, WHEN_IDLE unless configured) and stamps it on the task
// and its completion; an Inbox obeys it.
type Delivery int32

const (
	// DeliveryUnspecified: on a submit or a tool, "not set here".
	DeliveryUnspecified Delivery = Delivery(pb.DeliveryPolicy_DELIVERY_POLICY_UNSPECIFIED)
	// DeliveryWhenIdle: delivered when the agent is between turns, coalesced
	// with completions arriving within a short window. The server's default.
	DeliveryWhenIdle Delivery = Delivery(pb.DeliveryPolicy_DELIVERY_POLICY_WHEN_IDLE)
	// DeliveryInterrupt: delivered at once, interrupting a busy agent if it
	// can be interrupted, else at its next turn boundary.
	DeliveryInterrupt Delivery = Delivery(pb.DeliveryPolicy_DELIVERY_POLICY_INTERRUPT)
	// DeliverySilent: never starts a turn; it leads the next user message.
	DeliverySilent Delivery = Delivery(pb.DeliveryPolicy_DELIVERY_POLICY_SILENT)
)

// String returns "when_idle", "interrupt", "silent" or "unspecified".
func (d Delivery) String() string {
	switch d {
	case DeliveryUnspecified:
		return "unspecified"
	case DeliveryWhenIdle:
		return "when_idle"
	case DeliveryInterrupt:
		return "interrupt"
	case DeliverySilent:
		return "silent"
	}
	return fmt.Sprintf("Delivery(%d)", int32(d))
}

// Dedup says whether identical calls in flight share one run.
type Dedup int32

const (
	// DedupUnspecified: on a submit, the tool's policy; on a tool, off.
	DedupUnspecified Dedup = Dedup(pb.DedupPolicy_DEDUP_POLICY_UNSPECIFIED)
	// DedupOff: every submit runs the tool.
	DedupOff Dedup = Dedup(pb.DedupPolicy_DEDUP_POLICY_OFF)
	// DedupJoinInFlight: a submit with the same session, tool and arguments
	// (compared canonically, so key order does not matter) as a task still
	// queued or running returns that task with Ack.Joined set: one run, one
	// completion. A finished task is never joined.
	DedupJoinInFlight Dedup = Dedup(pb.DedupPolicy_DEDUP_POLICY_JOIN_IN_FLIGHT)
)

// String returns "off", "join_in_flight" or "unspecified".
func (d Dedup) String() string {
	switch d {
	case DedupUnspecified:
		return "unspecified"
	case DedupOff:
		return "off"
	case DedupJoinInFlight:
		return "join_in_flight"
	}
	return fmt.Sprintf("Dedup(%d)", int32(d))
}

// Fallback is what answers a call that ends failed or timed out after its
// retries (never a cancelled one; one hop only), as a Tool lists it:
// exactly one field is set.
type Fallback struct {
	// Tool runs this other tool with the same arguments.
	Tool string
	// LastGoodMaxAge answers with the session's last successful result of
	// the same tool and arguments, if it finished at most this long ago
	// (whole milliseconds, rounded up).
	LastGoodMaxAge time.Duration
}

func fallbackFromPB(f *pb.Fallback) *Fallback {
	switch k := f.GetKind().(type) {
	case *pb.Fallback_Tool:
		return &Fallback{Tool: k.Tool}
	case *pb.Fallback_LastGoodMaxAgeMs:
		return &Fallback{LastGoodMaxAge: ms(k.LastGoodMaxAgeMs)}
	}
	return nil
}

// FallbackUsed is set on a completion that a fallback answered; the
// completion's status, result and error are then the fallback's.
type FallbackUsed struct {
	// PrimaryStatus is how the call itself ended: StatusFailed or StatusTimedOut.
	PrimaryStatus Status
	// PrimaryError is why it did not succeed.
	PrimaryError *ToolError
	// Tool is the fallback tool that ran; "" when a last-good result answered.
	Tool string
	// LastGoodAge is the age of the reused result (its completion to this
	// one); 0 when a fallback tool answered.
	LastGoodAge time.Duration
	// TaskID is the task whose result answered: the fallback tool's run, or
	// the earlier task whose result was reused.
	TaskID string
}

func fallbackUsedFromPB(f *pb.FallbackUsed) *FallbackUsed {
	if f == nil {
		return nil
	}
	return &FallbackUsed{
		PrimaryStatus: Status(f.GetPrimaryStatus()),
		PrimaryError:  toolErr(f.GetPrimaryError()),
		Tool:          f.GetTool(),
		LastGoodAge:   ms(f.GetLastGoodAgeMs()),
		TaskID:        f.GetTaskId(),
	}
}

// Progress is a running task's progress as its worker reported it. It is not
// durable: the server keeps the latest report of a task's current run in
// memory only.
type Progress struct {
	TaskID    string
	SessionID string
	Tool      string
	// Index is 1 for the task's first report, then rising (across attempts too).
	Index uint64
	// Progress is the work done so far and Total the whole, in the tool's
	// own unit; either is 0 when unknown.
	Progress, Total float64
	// Message is a short status text (at most 1 KiB), for people and models.
	Message string
	// Detail is the worker's optional JSON resume state; nil when none.
	Detail json.RawMessage
	// Elapsed is the time from submit to this report.
	Elapsed time.Duration
}

func progressFromPB(p *pb.Progress) *Progress {
	if p == nil {
		return nil
	}
	return &Progress{
		TaskID:    p.GetTaskId(),
		SessionID: p.GetSessionId(),
		Tool:      p.GetTool(),
		Index:     p.GetIndex(),
		Progress:  p.GetProgress(),
		Total:     p.GetTotal(),
		Message:   p.GetMessage(),
		Detail:    rawJSON(p.GetDetailJson()),
		Elapsed:   ms(p.GetElapsedMs()),
	}
}
