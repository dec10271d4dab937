package tracking

import "strconv"

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
	SeenByRecipient                          // the recipient displayed it or a later message (XEP-0333)
	Aborted                                  // dropped before our server took it
	TimedOut                                 // no proof of delivery within the tracking window
	Closed                                   // the application stopped tracking before any proof
	Error                                    // an error reply arrived for it
	numStates
)

var stateNames = [numStates]string{
	"IN_TRANSIT", "DELIVERED_TO_SERVER", "DELIVERED_TO_RECIPIENT", "SEEN_BY_RECIPIENT",
	"ABORTED", "TIMED_OUT", "CLOSED", "ERROR",
}

// String returns the wire-style name of the state, such as "IN_TRANSIT".
func (s MessageState) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "MessageState(" + strconv.Itoa(int(s)) + ")"
}

// ParseState returns the state whose String is name.
func ParseState(name string) (MessageState, bool) {
	for i, n := range stateNames {
		if n == name {
			return MessageState(i), true
		}
	}
	return 0, false
}

// IsFinal reports whether no evidence can ever change the state again:
// SeenByRecipient, Aborted, TimedOut and Closed.
//
// Error is not final: proof from the recipient (a receipt or a marker) still
// lifts it, because error replies can be false alarms (a bounce from one of the
// recipient's expired sessions while another device got the message). Use
// [MessageTracker.Done] to learn when tracking has ended in any state.
func (s MessageState) IsFinal() bool {
	switch s {
	case SeenByRecipient, Aborted, TimedOut, Closed:
		return true
	}
	return false
}

// progress reports the rank of s in the order InTransit < DeliveredToServer <
// DeliveredToRecipient < SeenByRecipient, and false for the other states.
func (s MessageState) progress() (int, bool) {
	if s <= SeenByRecipient {
		return int(s), true
	}
	return 0, false
}
