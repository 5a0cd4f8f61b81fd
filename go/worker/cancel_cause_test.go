package worker

import (
	"errors"
	"strings"
	"testing"
)

// A task reclaimed from a server that lost its lease (several servers on
// one database) is ErrCancelled, and its cause says so rather than reading
// as a client's cancel.
func TestCancelCauseOfALostLease(t *testing.T) {
	cause := cancelCause("lease_lost: this server could not renew the task's lease in time")
	if !errors.Is(cause, ErrCancelled) || !strings.Contains(cause.Error(), "lease lost: this server could not renew") {
		t.Errorf("cause = %v, want ErrCancelled saying the lease was lost", cause)
	}
	if cause := cancelCause("cancelled"); cause != ErrCancelled {
		t.Errorf("cause = %v, want ErrCancelled", cause)
	}
}
