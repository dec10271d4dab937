package tracking

import (
	"errors"

	"github.com/xmpptrack/xmpptrack/internal/trackcore"
)

// Errors returned by [MessageTracker.Wait] when the awaited state cannot be
// reached. They work with errors.Is.
var (
	// ErrAborted means our server never acknowledged the message and it was
	// not re-sent. It may still have been delivered: the server may have
	// processed it and died before its acknowledgement reached us.
	ErrAborted = errors.New("tracking: message aborted: our server never acknowledged it and it was not re-sent")
	// ErrTimedOut means the tracking window ended before the awaited proof.
	ErrTimedOut = errors.New("tracking: tracking window ended")
	// ErrClosed means tracking was stopped by the application.
	ErrClosed = errors.New("tracking: tracking closed")
	// ErrFailed means an error reply arrived for the message. The error returned
	// with it also unwraps to the reply's error (see Response.Err).
	ErrFailed = errors.New("tracking: error reply")
	// ErrInvalidTarget means Wait was asked for a state outside the order
	// InTransit < DeliveredToServer < DeliveredToRecipient < SeenByRecipient.
	ErrInvalidTarget = errors.New("tracking: wait target must be a progress state")
)

// Errors returned by [MessageTracker.Advance].
var (
	// ErrRefused means the transition graph does not allow the requested change.
	ErrRefused = errors.New("tracking: transition refused")
	// ErrReadOnly means the tracker was made by the client and only evidence
	// from the wire moves it: Advance works only on trackers from
	// [NewMessageTracker].
	ErrReadOnly = errors.New("tracking: tracker is driven by the client; Advance works only on trackers from NewMessageTracker")
)

// Errors returned when a message cannot be tracked (Client.Send and friends).
var (
	// ErrTooManyPending means the pending limit is reached, or the
	// application's state-change callbacks lag so far behind that no new
	// message is taken (see Config.MaxPending of the client), and the call
	// does not wait (Client.TrySend).
	ErrTooManyPending = trackcore.ErrTooManyPending
	// ErrDuplicateID means a pending message already uses the id (or, with a
	// chance of about 2^-64 per pair, an id whose hash collides): pick another.
	ErrDuplicateID = trackcore.ErrDuplicateID
)

// failedError is what Wait returns in the Error state: errors.Is(err,
// ErrFailed) holds, and the reply's own error is reachable through Unwrap.
type failedError struct{ reply error }

func (e *failedError) Error() string {
	if e.reply == nil {
		return ErrFailed.Error()
	}
	return ErrFailed.Error() + ": " + e.reply.Error()
}

func (e *failedError) Unwrap() []error {
	if e.reply == nil {
		return []error{ErrFailed}
	}
	return []error{ErrFailed, e.reply}
}
