package store

import (
	"fmt"

	"github.com/xmpptrack/xmpptrack/internal/trackcore"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// numStates is the number of tracking states.
const numStates = int(tracking.Error) + 1

// graph[from][req] is the state reached from "from" when a change requests
// "req", or -1 if the graph refuses it; compiled from the trackers' own definition so
// that the store and the trackers never disagree.
var graph = compile()

func compile() (g [numStates][numStates]int) {
	for f := range g {
		for r := range g[f] {
			g[f][r] = -1
		}
	}
	def := trackcore.Definition()
	// The state an event requests is where it leads from InTransit: every
	// event of the graph starts there.
	req := map[string]tracking.MessageState{}
	for _, e := range def {
		for _, s := range e.Src {
			if s == tracking.InTransit.String() {
				req[e.Name] = parse(e.Dst)
			}
		}
	}
	for _, e := range def {
		r, ok := req[e.Name]
		if !ok {
			panic("store: tracking event " + e.Name + " does not start in IN_TRANSIT")
		}
		for _, s := range e.Src {
			g[parse(s)][r] = int(parse(e.Dst))
		}
	}
	return g
}

func parse(name string) tracking.MessageState {
	s, ok := tracking.ParseState(name)
	if !ok {
		panic("store: unknown tracking state " + name)
	}
	return s
}

// Next applies the transition graph of package tracking to a stored message:
// from is its state, settled whether tracking has ended, req the requested
// state. It returns the state reached, whether the message is settled after
// it, and whether anything changed (false: the change is a no-op, not
// recorded). A settled message never changes.
func Next(from tracking.MessageState, settled bool, req tracking.MessageState) (to tracking.MessageState, settles, changed bool) {
	if settled || int(from) >= numStates || int(req) >= numStates {
		return from, settled, false
	}
	d := graph[from][req]
	if d < 0 {
		return from, false, false
	}
	to = tracking.MessageState(d)
	settles = to.IsFinal() || req == tracking.TimedOut || req == tracking.Closed
	return to, settles, to != from || settles
}

// SettledState reports whether a message committed in state s is settled
// from the start.
func SettledState(s tracking.MessageState) bool { return s.IsFinal() }

// Validate checks a batch; its error matches ErrInvalid. Implementations
// call it before writing anything.
func (b *Batch) Validate() error {
	for i := range b.Messages {
		if err := b.Messages[i].validate(); err != nil {
			return err
		}
	}
	for _, c := range b.Changes {
		if err := checkID(c.ID); err != nil {
			return err
		}
		if c.State == tracking.InTransit || int(c.State) >= numStates {
			return fmt.Errorf("%w: change of %q to state %v", ErrInvalid, c.ID, c.State)
		}
	}
	for _, w := range b.Written {
		if err := checkID(w.ID); err != nil {
			return err
		}
	}
	for _, s := range b.Sessions {
		if s.Owner.Account == "" {
			return fmt.Errorf("%w: session without an account", ErrInvalid)
		}
	}
	return nil
}

func (m *Message) validate() error {
	if err := checkID(m.ID); err != nil {
		return err
	}
	switch {
	case m.Owner.Account == "":
		return fmt.Errorf("%w: message %q without an owner account", ErrInvalid, m.ID)
	case m.To == "":
		return fmt.Errorf("%w: message %q without a recipient", ErrInvalid, m.ID)
	case int(m.State) >= numStates:
		return fmt.Errorf("%w: message %q in state %v", ErrInvalid, m.ID, m.State)
	case len(m.Raw) == 0 && !m.State.IsFinal():
		return fmt.Errorf("%w: message %q without its stanza", ErrInvalid, m.ID)
	}
	return nil
}

func checkID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty message id", ErrInvalid)
	case len(id) > stanza.MaxIDLen:
		return fmt.Errorf("%w: message id of %d bytes", ErrInvalid, len(id))
	}
	return nil
}
