package tracking

import (
	"context"

	"github.com/xmpptrack/xmpptrack/internal/trackcore"
)

// MessageTracker follows one outgoing message. It is safe for concurrent use.
//
// A tracker returned by the client (Client.Send, Room.Send, ...) is a
// read-only view: only evidence from the wire moves it, and the application
// can read it, wait for it, register callbacks and Close it, but not
// [MessageTracker.Advance] it. A tracker made by [NewMessageTracker] is driven
// by its owner through Advance.
type MessageTracker trackcore.Tracker[Response]

// core is the tracker's implementation.
func (t *MessageTracker) core() *trackcore.Tracker[Response] {
	return (*trackcore.Tracker[Response])(t)
}

// NewMessageTracker returns a tracker in InTransit that is driven only by
// [MessageTracker.Advance]: the building block for tracking implementations
// other than this module's client. It has no tracking window of its own.
// An id longer than 2 MiB less one byte is kept, and returned by
// [MessageTracker.ID], cut to that length.
func NewMessageTracker(id string) *MessageTracker {
	return (*MessageTracker)(trackcore.NewStandalone[Response](id))
}

// ID returns the message's id: its id attribute and XEP-0359 origin-id.
// An id the client made is not stored but formatted on each call (about
// as much as making a random id: one AES block and 24 bytes): keep the
// string where it is needed often.
func (t *MessageTracker) ID() string { return t.core().ID() }

// To returns the conversation the message belongs to: the recipient's or the
// room's bare JID, or the full JID the message was sent to (a private
// conversation with that resource or room occupant: only its evidence
// counts). It is empty for trackers made by NewMessageTracker.
func (t *MessageTracker) To() string { return t.core().To() }

// State returns the current state.
func (t *MessageTracker) State() MessageState { return MessageState(t.core().State()) }

// Response returns the evidence for the last state change: the error reply in
// the Error state, the reflected message for a group chat message, the
// receipt or marker sender otherwise. It may be nil.
func (t *MessageTracker) Response() *Response { return t.core().Response() }

// OnStateChange registers f to be called once for each later state change of
// this tracker, with the old and new state and the evidence (which may be
// nil). Callbacks run in transition order on a goroutine of the library, never
// on the one that reported the evidence and never while a lock is held, so f
// may call back into the library. Callbacks of one client run one at a time:
// a slow f delays the others, and one far behind makes Send wait (see the
// package documentation). A panic in f is not recovered: it crashes the
// program, as a panic on any goroutine does.
func (t *MessageTracker) OnStateChange(f func(from, to MessageState, resp *Response)) {
	if f == nil {
		return
	}
	t.core().OnStateChange(func(from, to trackcore.State, resp *Response) {
		f(MessageState(from), MessageState(to), resp)
	})
}

// Done returns a channel that is closed when tracking ends: the tracker
// reached SeenByRecipient, Aborted, TimedOut or Closed, or its window ended or
// it was closed in another state. After that nothing changes.
func (t *MessageTracker) Done() <-chan struct{} { return t.core().Done() }

// Settled reports whether tracking has ended (Done is closed).
func (t *MessageTracker) Settled() bool { return t.core().Settled() }

// Close stops tracking. A tracker without proof becomes Closed; one in
// DeliveredToRecipient or Error keeps its state. Closing a settled tracker
// does nothing. Close works on every tracker: the application stopping to
// track a message is its own decision, not evidence.
func (t *MessageTracker) Close() { t.core().Close() }

// Advance applies evidence that the message reached state to, with resp as
// the evidence (may be nil). It works only on trackers made by
// [NewMessageTracker]; on a tracker from the client it returns ErrReadOnly and
// changes nothing. It returns nil when the state changed, when the tracker
// already was in that state, and when the request ended tracking without a
// change (a timeout or close in DeliveredToRecipient or Error); it returns an
// error matching ErrRefused when the transition graph does not allow the
// change, and changes nothing then.
func (t *MessageTracker) Advance(to MessageState, resp *Response) error {
	c := t.core()
	if !c.Standalone() {
		return ErrReadOnly
	}
	if from, ok := c.Advance(trackcore.State(to), resp); !ok {
		return &TransitionError{From: MessageState(from), To: to}
	}
	return nil
}

// Wait blocks until the state is at or past target in the order InTransit <
// DeliveredToServer < DeliveredToRecipient < SeenByRecipient, and returns
// (state, nil). It returns early with the current state and an error as soon
// as target cannot be reached now: ErrAborted, ErrTimedOut or ErrClosed, an
// error matching ErrFailed (and unwrapping to the reply's error) in the Error
// state, and ErrTimedOut or ErrClosed when tracking ended short of target. When
// ctx ends first it returns ctx.Err() and the tracker is unchanged. Any number
// of goroutines may wait at once.
func (t *MessageTracker) Wait(ctx context.Context, target MessageState) (MessageState, error) {
	if _, ok := target.progress(); !ok {
		return t.State(), ErrInvalidTarget
	}
	st, stop, resp, err := t.core().Wait(ctx, trackcore.State(target))
	s := MessageState(st)
	if err != nil {
		return s, err
	}
	switch stop {
	case trackcore.Failed:
		var reply error
		if resp != nil {
			reply = resp.Err
		}
		return s, &failedError{reply: reply}
	case trackcore.Expired:
		return s, ErrTimedOut
	case trackcore.Stopped:
		if s == Aborted {
			return s, ErrAborted
		}
		return s, ErrClosed
	}
	return s, nil
}

// TransitionError reports a refused request. It matches ErrRefused.
type TransitionError struct {
	From, To MessageState
}

func (e *TransitionError) Error() string {
	return "tracking: transition refused: " + e.From.String() + " -> " + e.To.String()
}

// Is reports whether target is ErrRefused.
func (e *TransitionError) Is(target error) bool { return target == ErrRefused }
