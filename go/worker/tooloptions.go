package worker

import (
	"time"

	errand "github.com/errand-dev/errand/go"
	pb "github.com/errand-dev/errand/go/errandv1"
)

// The options below declare how the tool's calls behave by default; a
// submit's own options (errand.WithDelivery, ...) win over them, and unset
// means the server's default. The server checks them at registration and
// refuses the stream for a bad one (an unknown policy, a budget above its
// --max-result-budget-bytes, a fallback to the tool itself), so Run returns
// an error matching errand.ErrInvalidArgument or errand.ErrNotFound.

// WithDelivery sets how the tool's completions reach the model (default:
// the server's --default-delivery, errand.DeliveryWhenIdle unless configured).
func WithDelivery(d errand.Delivery) ToolOption {
	return func(t *tool) { t.policy.Delivery = pb.DeliveryPolicy(d) }
}

// WithDedup sets whether identical calls in flight join one run
// (errand.DedupJoinInFlight) or not (errand.DedupOff, the default).
func WithDedup(d errand.Dedup) ToolOption {
	return func(t *tool) { t.policy.Dedup = pb.DedupPolicy(d) }
}

// WithResultBudget sets the most bytes of a result delivered inline (about
// 4 bytes per token; default: the server's --result-budget-bytes, 16384).
// A larger result is stored whole and delivered as a preview: the handler's
// WithSummary, else the JSON's head and tail.
func WithResultBudget(bytes uint64) ToolOption {
	return func(t *tool) { t.policy.ResultBudgetBytes = bytes }
}

// WithFallbackTool makes the tool called name (same arguments) answer the tool's calls that
// end failed or timed out after their retries; one hop only, never after a
// cancel.
func WithFallbackTool(name string) ToolOption {
	return func(t *tool) {
		t.policy.Fallback = &pb.Fallback{Kind: &pb.Fallback_Tool{Tool: name}}
	}
}

// WithFallbackLastGood makes the session's last successful result of the
// same call answer a failed or timed-out call, if it is at most maxAge old
// (whole milliseconds, rounded up; positive: a negative maxAge makes Run
// fail as a negative WithTimeout does, and the server refuses 0).
func WithFallbackLastGood(maxAge time.Duration) ToolOption {
	return func(t *tool) {
		ms := t.millis("worker.WithFallbackLastGood", maxAge)
		t.policy.Fallback = &pb.Fallback{Kind: &pb.Fallback_LastGoodMaxAgeMs{LastGoodMaxAgeMs: ms}}
	}
}

// CancellableByModel lets a model cancel the tool's calls itself (through
// the SDKs' model-facing cancel tool); it does not limit Client.Cancel.
func CancellableByModel() ToolOption {
	return func(t *tool) { t.policy.CancellableByModel = true }
}
