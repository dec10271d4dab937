package trackcore

import (
	"github.com/looplab/fsm"
)

// The events of the transition graph, one per state that evidence can request.
// Event i requests state i+1: DeliveredToServer is "server_ack", and so on.
var eventNames = [NumStates]string{
	DeliveredToServer:    "server_ack",
	DeliveredToRecipient: "delivered",
	SeenByRecipient:      "displayed",
	Aborted:              "abort",
	TimedOut:             "timeout",
	Closed:               "close",
	Error:                "error",
}

// definition is the transition graph, written once. Everything else derives
// from it: the runtime table below, [Diagram], and the test that
// checks the table against looplab/fsm executing this same definition.
//
// A self-loop (Src == Dst) is a silent no-op for the evidence events, and ends
// tracking without a state change for "timeout" and "close".
func definition() fsm.Events {
	s := func(states ...State) []string {
		names := make([]string, len(states))
		for i, st := range states {
			names[i] = st.String()
		}
		return names
	}
	ev := func(to State, dst State, from ...State) fsm.EventDesc {
		return fsm.EventDesc{Name: eventNames[to], Src: s(from...), Dst: dst.String()}
	}
	return fsm.Events{
		ev(DeliveredToServer, DeliveredToServer, InTransit),
		ev(DeliveredToServer, DeliveredToServer, DeliveredToServer),

		ev(DeliveredToRecipient, DeliveredToRecipient, InTransit, DeliveredToServer, Error),
		ev(DeliveredToRecipient, DeliveredToRecipient, DeliveredToRecipient),

		ev(SeenByRecipient, SeenByRecipient, InTransit, DeliveredToServer, DeliveredToRecipient, Error),
		ev(SeenByRecipient, SeenByRecipient, SeenByRecipient),

		ev(Aborted, Aborted, InTransit),

		ev(TimedOut, TimedOut, InTransit, DeliveredToServer),
		ev(TimedOut, DeliveredToRecipient, DeliveredToRecipient),
		ev(TimedOut, Error, Error),

		ev(Closed, Closed, InTransit, DeliveredToServer),
		ev(Closed, DeliveredToRecipient, DeliveredToRecipient),
		ev(Closed, Error, Error),

		ev(Error, Error, InTransit, DeliveredToServer),
		ev(Error, Error, Error),
	}
}

// Diagram returns the transition graph as a Mermaid state diagram, generated
// by looplab/fsm from the definition. The README's diagram is this output.
func Diagram() string {
	out, err := fsm.VisualizeWithType(fsm.NewFSM(InTransit.String(), definition(), nil), fsm.MERMAID)
	if err != nil {
		panic("trackcore: " + err.Error()) // unreachable: MERMAID is a known type
	}
	return out
}

// refused marks a (state, requested state) pair that the graph does not allow.
const refused = 0xff

// table[from][to] is the state a tracker in "from" ends in when evidence
// requests "to", or refused. Read-only after init.
var table = compile(definition())

func compile(def fsm.Events) (t [NumStates][NumStates]uint8) {
	for from := range t {
		for to := range t[from] {
			t[from][to] = refused
		}
	}
	for _, e := range def {
		to, ok := eventState(e.Name)
		dst, ok2 := ParseState(e.Dst)
		if !ok || !ok2 {
			panic("trackcore: bad definition entry " + e.Name)
		}
		for _, src := range e.Src {
			from, ok := ParseState(src)
			if !ok {
				panic("trackcore: bad source state " + src)
			}
			t[from][to] = uint8(dst)
		}
	}
	return t
}

func eventState(name string) (State, bool) {
	for i, n := range eventNames {
		if n != "" && n == name {
			return State(i), true
		}
	}
	return 0, false
}

// endsTracking reports whether reaching dst through a request for "to" ends
// tracking: a final state, or a timeout or close that leaves the state as it
// is (DeliveredToRecipient, Error).
func endsTracking(to, dst State) bool {
	return dst.IsFinal() || to == TimedOut || to == Closed
}

// Definition returns the transition graph as a looplab/fsm definition, a
// fresh copy on each call: for code of this module that must apply the same
// graph elsewhere (package store).
func Definition() fsm.Events { return definition() }
