// Package backoff is the exponential backoff with full jitter that the client's
// Completions stream and the worker use between reconnect attempts.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields growing, jittered delays between Min and Max. The zero value
// is not usable; fill Min and Max. Not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Next returns the delay before the next attempt: uniform in [d/2, d] where d
// doubles from Min on each call up to Max.
func (b *Backoff) Next() time.Duration {
	d := b.Min
	for i := 0; i < b.attempt && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	b.attempt++
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Reset starts again from Min; call it after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep sleeps for d or until ctx is done, whichever is first, and returns
// ctx's error in the latter case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
