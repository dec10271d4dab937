package sm

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/stream"
)

var (
	// ErrHandledCountTooHigh is matched (errors.Is) by a
	// *HandledCountTooHighError.
	ErrHandledCountTooHigh = errors.New("sm: server acknowledged more stanzas than were sent")

	// ErrProtocol is matched (errors.Is) by a *ProtocolError.
	ErrProtocol = errors.New("sm: stream management protocol violation by the server")

	// ErrNoTees is returned by Start when the session was not created with
	// the writers returned by the last call to Tees (nothing was counted,
	// so stream management cannot work).
	ErrNoTees = errors.New("sm: session does not use this State's Tees")

	// ErrStarted is returned by Start when it was already called for the
	// current connection (call Tees for each new connection).
	ErrStarted = errors.New("sm: Start already called for this connection")

	// ErrNotEnabled is returned by WaitEnabled when the connection works
	// without stream management: the server does not offer it, or
	// answered <enable/> with <failed/>. Nothing is acknowledged on such a
	// connection; rely on receipts.
	ErrNotEnabled = errors.New("sm: stream management is not enabled on this connection")

	// ErrConnEnded is returned by WaitEnabled when the connection ended,
	// or Start failed, before stream management was enabled. Reconnect;
	// the messages held for re-sending wait for the next connection. Pace
	// returns it when the connection ended before the caller got a place
	// in the window: pace again on the next connection.
	ErrConnEnded = errors.New("sm: connection ended before stream management was enabled")

	// ErrAckTimeout is matched (errors.Is) by the *AckTimeoutError Serve
	// returns when the connection was taken for dead: an <r/> (or
	// <enable/>) stayed unanswered beyond Config.AckTimeout. The State
	// expired the connection's deadlines and closed it; reconnect. The
	// stream is resumed, unless
	// the connection had resumed it and the server acknowledged nothing
	// since (see the package documentation, "Failed resumptions").
	ErrAckTimeout = errors.New("sm: the server did not answer an ack request in time; connection dead")

	// errStopped means the connection was detached during a re-send.
	errStopped = errors.New("sm: connection stopped")

	// errPrevID means <resumed/> named another stream than the one resumed.
	errPrevID = errors.New("sm: previd does not match the resumed stream")
	// errHBackwards means <resumed h> counted fewer stanzas than the server
	// had acknowledged before (or, modulo 2^32, is 2^31 or more ahead).
	errHBackwards = errors.New("sm: <resumed h> is below an h the server acknowledged before")

	// errUnexpected means the server answered <resume/> with something
	// other than <resumed/> or <failed/>.
	errUnexpected = errors.New("sm: unexpected element")
)

// ErrInputLimit is matched (errors.Is) by a *LimitError.
var ErrInputLimit = errors.New("sm: the server exceeded an input limit")

// LimitError reports that the server sent a construct larger than the
// State's input limits (Config.MaxStanzaSize, MaxWhitespace,
// MaxStreamErrorSize). The read that brought the excess fails with it, so
// mellium's XML decoder stops before buffering more; Serve (or NewSession,
// during negotiation) returns it, and mellium answers with the
// policy-violation stream error it converts to (errors.As). Close the
// connection and reconnect.
type LimitError struct {
	What  string // "stanza", "whitespace" or "stream error"
	Limit int64  // the limit exceeded, in bytes
}

// Error implements error.
func (e *LimitError) Error() string {
	return fmt.Sprintf("sm: the server sent a %s of more than %d bytes", e.What, e.Limit)
}

// Is reports whether target is ErrInputLimit.
func (e *LimitError) Is(target error) bool { return target == ErrInputLimit }

// As converts e to the policy-violation stream.Error it stands for.
func (e *LimitError) As(target any) bool {
	p, ok := target.(*stream.Error)
	if ok {
		*p = stream.PolicyViolation
	}
	return ok
}

// HandledCountTooHighError reports an <a/> or <resumed/> from the server
// whose h exceeds the number of stanzas sent (XEP-0198 §6). The State sends
// the matching stream error, closes the stream and never resumes it; the
// stanzas still unacknowledged go to the Policy on the next connection.
//
// It matches ErrHandledCountTooHigh with errors.Is, and converts (errors.As)
// to the stream.Error that is sent:
//
//	<stream:error>
//	  <undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>
//	  <handled-count-too-high xmlns='urn:xmpp:sm:3' h='H' send-count='SendCount'/>
//	</stream:error>
type HandledCountTooHighError struct {
	H         uint32 // h received from the server
	SendCount uint32 // stanzas sent (the outbound counter), modulo 2^32
}

// Error implements error.
func (e *HandledCountTooHighError) Error() string {
	return fmt.Sprintf("sm: server acknowledged h=%d but only %d stanzas were sent", e.H, e.SendCount)
}

// Is reports whether target is ErrHandledCountTooHigh.
func (e *HandledCountTooHighError) Is(target error) bool { return target == ErrHandledCountTooHigh }

// As converts e to the stream.Error it stands for (the one that was sent).
func (e *HandledCountTooHighError) As(target any) bool {
	p, ok := target.(*stream.Error)
	if ok {
		*p = stream.UndefinedCondition.ApplicationError(xmlstream.Wrap(nil, xml.StartElement{
			Name: xml.Name{Space: NS, Local: "handled-count-too-high"},
			Attr: []xml.Attr{
				{Name: xml.Name{Local: "h"}, Value: strconv.FormatUint(uint64(e.H), 10)},
				{Name: xml.Name{Local: "send-count"}, Value: strconv.FormatUint(uint64(e.SendCount), 10)},
			},
		}))
	}
	return ok
}

// ProtocolError reports a stream management element from the server that
// cannot be processed: an <a/> whose h is missing or not an unsignedInt, a
// <resumed/> without a valid h or for another stream, or an unexpected
// answer to <resume/>. The State does not resume such a stream again.
// When it happens on an established stream (<a/>), the handler sends a
// bad-format stream error (errors.As converts a *ProtocolError to that
// stream.Error) and the stream is closed; during negotiation, NewSession
// fails with it.
//
// It matches ErrProtocol with errors.Is; Unwrap returns the cause, for
// example a *stanza.FieldError wrapping stanza.ErrInvalidH.
type ProtocolError struct {
	Element string // local name of the offending element, e.g. "a"
	Err     error  // the cause
}

// Error implements error.
func (e *ProtocolError) Error() string {
	return fmt.Sprintf("sm: invalid <%s/> from the server: %v", e.Element, e.Err)
}

// Unwrap returns the cause.
func (e *ProtocolError) Unwrap() error { return e.Err }

// Is reports whether target is ErrProtocol.
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

// As converts e to the bad-format stream.Error (sent when e ended an
// established stream).
func (e *ProtocolError) As(target any) bool {
	p, ok := target.(*stream.Error)
	if ok {
		*p = stream.BadFormat
	}
	return ok
}
