package sm

import (
	"fmt"
	"time"
)

// AckTimeoutError is what Serve returns when the connection was taken for
// dead (see "Dead connections" in the package documentation); it matches
// ErrAckTimeout (errors.Is).
type AckTimeoutError struct {
	// Bound is the bound the State enforced: Config.AckTimeout plus four
	// smoothed round trips (at most AckTimeout again), as Info.AckBound
	// reported it then; or 24 times AckTimeout when a request could not
	// get out for that long, or the server sent stanzas but no answer for
	// that long. When a look at the socket's progress (Linux) ends the
	// wait, Bound is the ack bound whatever stretched the wait, and Waited
	// says how long it lasted (see "Dead connections").
	Bound time.Duration
	// Waited is how long the answer had been awaited since the request was
	// written or the last <a/> that made progress (or the request had waited to get out, or,
	// for a link whose socket showed no progress, since the peer's TCP
	// last acknowledged a byte of ours) when the State gave up: at least
	// Bound; more when stanzas read from the server put the end off, or by
	// the watchdog timer's lateness.
	Waited time.Duration
}

// Error implements error.
func (e *AckTimeoutError) Error() string {
	return fmt.Sprintf("%v (no answer for %v, bound %v)", ErrAckTimeout, e.Waited, e.Bound)
}

// Is reports whether target is ErrAckTimeout.
func (e *AckTimeoutError) Is(target error) bool { return target == ErrAckTimeout }

// ackTimeoutLocked returns the error that ends c now that the watchdog
// found its awaited answer overdue. The caller holds st.mu.
func (c *conn) ackTimeoutLocked() *AckTimeoutError {
	dl, bound, from, _ := c.deadlineLocked()
	if dl == 0 {
		return &AckTimeoutError{Bound: time.Duration(c.st.ackBoundLocked())}
	}
	return &AckTimeoutError{Bound: time.Duration(bound), Waited: time.Duration(timeNow() - from)}
}
