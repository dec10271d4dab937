package trackcore

import "strconv"

// State is a tracker's state. Its values and names are those of
// tracking.MessageState, which converts to and from it.
type State uint8

// The states, numbered as tracking's.
const (
	InTransit State = iota
	DeliveredToServer
	DeliveredToRecipient
	SeenByRecipient
	Aborted
	TimedOut
	Closed
	Error
	NumStates
)

var stateNames = [NumStates]string{
	"IN_TRANSIT", "DELIVERED_TO_SERVER", "DELIVERED_TO_RECIPIENT", "SEEN_BY_RECIPIENT",
	"ABORTED", "TIMED_OUT", "CLOSED", "ERROR",
}

// String returns the wire-style name of the state, such as "IN_TRANSIT".
func (s State) String() string {
	if s < NumStates {
		return stateNames[s]
	}
	return "MessageState(" + strconv.Itoa(int(s)) + ")"
}

// ParseState returns the state whose String is name.
func ParseState(name string) (State, bool) {
	for i, n := range stateNames {
		if n == name {
			return State(i), true
		}
	}
	return 0, false
}

// IsFinal reports whether no evidence can ever change the state again.
func (s State) IsFinal() bool {
	switch s {
	case SeenByRecipient, Aborted, TimedOut, Closed:
		return true
	}
	return false
}

// Progress reports the rank of s in the order InTransit < DeliveredToServer <
// DeliveredToRecipient < SeenByRecipient, and false for the other states.
func (s State) Progress() (int, bool) {
	if s <= SeenByRecipient {
		return int(s), true
	}
	return 0, false
}
