// Package millis turns the SDK's time.Duration options into the wire's
// unsigned milliseconds, in one place for package errand and package worker.
package millis

import (
	"fmt"
	"time"

	"github.com/errand-dev/errand/go/internal/rpcerr"
)

// RoundUp returns d in whole milliseconds, rounded up: 0 stays 0 (on the
// wire, "not set": the tool's or the server's default), 1ns to 1ms is 1, and
// the longest time.Duration is 9223372036855 without overflowing. A negative
// d is the caller's error, never a wire value: RoundUp returns 0 and an
// error matching rpcerr.ErrInvalidArgument that names option (say
// "worker.WithTimeout") and d.
func RoundUp(option string, d time.Duration) (uint64, error) {
	if d < 0 {
		return 0, fmt.Errorf("%s(%v): the duration is negative; want 0 (the default) or more (%w)", option, d, rpcerr.ErrInvalidArgument)
	}
	ms := uint64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return ms, nil
}
