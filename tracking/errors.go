package tracking

import "errors"

// Errors returned by [MessageTracker.Wait] when the awaited state cannot be
// reached. They work with errors.Is.
var (
	// ErrAborted means the message was dropped before the server took it.
	ErrAborted = errors.New("tracking: message aborted before the server took it")
	// ErrTimedOut means the tracking window ended before the awaited proof.
	ErrTimedOut = errors.New("tracking: tracking window ended")
	// ErrClosed means tracking was stopped by the application.
	ErrClosed = errors.New("tracking: tracking closed")
	// ErrFailed means an error reply arrived for the message. The error returned
	// with it also unwraps to the reply's error (see Response.Err).
	ErrFailed = errors.New("tracking: error reply")
)

// Errors returned by the Registry and by Advance.
var (
	// ErrRefused means the transition graph does not allow the requested change.
	ErrRefused = errors.New("tracking: transition refused")
	// ErrTooManyPending is returned by [Registry.TryTrack] when the pending limit is reached.
	ErrTooManyPending = errors.New("tracking: too many pending messages")
	// ErrDuplicateID means a pending message already uses the id (or, with a
	// chance of about 2^-64 per pair, an id whose hash collides): pick another.
	ErrDuplicateID = errors.New("tracking: id already pending")
	// ErrShutdown means the registry no longer accepts messages.
	ErrShutdown = errors.New("tracking: registry shut down")
	// ErrInvalidTarget means Wait was asked for a state outside the order
	// InTransit < DeliveredToServer < DeliveredToRecipient < SeenByRecipient.
	ErrInvalidTarget = errors.New("tracking: wait target must be a progress state")
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
