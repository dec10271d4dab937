package tracking

import "github.com/xmpptrack/xmpptrack/internal/trackcore"

// MessageState is what the network has proved about one outgoing message.
//
// The zero value is InTransit. States are ordered by the strength of their
// evidence only for InTransit < DeliveredToServer < DeliveredToRecipient <
// SeenByRecipient; Aborted, TimedOut, Closed and Error sit outside that order.
type MessageState uint8

// The states a tracked message can be in. See the package documentation for
// what each one proves and what it does not.
const (
	InTransit            MessageState = iota // written or queued, no proof yet
	DeliveredToServer                        // our server took responsibility (XEP-0198 ack)
	DeliveredToRecipient                     // a client of the recipient has it (receipt, MUC reflection)
	SeenByRecipient                          // the recipient displayed it, or a later one after this was proven delivered (XEP-0333)
	Aborted                                  // never acknowledged by our server, not re-sent; may still have been delivered
	TimedOut                                 // no proof of delivery within the tracking window
	Closed                                   // the application stopped tracking before any proof
	Error                                    // an error reply arrived for it
)

// String returns the wire-style name of the state, such as "IN_TRANSIT".
func (s MessageState) String() string { return trackcore.State(s).String() }

// ParseState returns the state whose String is name.
func ParseState(name string) (MessageState, bool) {
	s, ok := trackcore.ParseState(name)
	return MessageState(s), ok
}

// IsFinal reports whether no evidence can ever change the state again:
// SeenByRecipient, Aborted, TimedOut and Closed.
//
// Error is not final: proof from the recipient (a receipt or a marker) still
// lifts it, because error replies can be false alarms (a bounce from one of the
// recipient's expired sessions while another device got the message). Use
// [MessageTracker.Done] to learn when tracking has ended in any state.
func (s MessageState) IsFinal() bool { return trackcore.State(s).IsFinal() }

// progress reports the rank of s in the order InTransit < DeliveredToServer <
// DeliveredToRecipient < SeenByRecipient, and false for the other states.
func (s MessageState) progress() (int, bool) { return trackcore.State(s).Progress() }
