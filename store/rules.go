package store

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/xmpptrack/xmpptrack/internal/trackcore"
	"github.com/xmpptrack/xmpptrack/internal/xmltext"
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
		if err := checkText(c.From, c.StanzaID, c.Condition, c.Text); err != nil {
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
		if err := s.Owner.Validate(); err != nil {
			return err
		}
		if err := checkText(s.JID, s.ID, s.Location); err != nil {
			return err
		}
	}
	return nil
}

func (m *Message) validate() error {
	// A new record: its id goes into the stanza (checkID alone stays for
	// changes and voids, which name records that may predate this rule).
	if err := checkXML(m.ID); err != nil {
		return err
	}
	if err := checkID(m.ID); err != nil {
		return err
	}
	if err := m.Owner.Validate(); err != nil {
		return err
	}
	if err := checkXML(m.To, m.Thread); err != nil {
		return err
	}
	if err := checkText(m.Channel); err != nil {
		return err
	}
	switch {
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
	if err := checkText(id); err != nil {
		return err
	}
	switch {
	case id == "":
		return fmt.Errorf("%w: empty message id", ErrInvalid)
	case len(id) > stanza.MaxIDLen:
		return fmt.Errorf("%w: message id of %d bytes", ErrInvalid, len(id))
	}
	return nil
}

// checkXML refuses what checkText refuses and any other character XML does
// not allow: a new message's id, recipient and thread are written in its
// stanza and echoed by receipts, markers and errors, and Send refuses the
// same (one rule, internal/xmltext). Changes and voids keep checkText: they
// name records stored before the rule, which must still settle.
func checkXML(ss ...string) error {
	for _, s := range ss {
		if !xmltext.Valid(s) {
			return fmt.Errorf("%w: %q is not valid UTF-8 or holds characters XML does not allow", ErrInvalid, s)
		}
	}
	return nil
}

// checkText refuses strings that are not valid UTF-8 or hold a NUL byte:
// neither can come from XML, and databases refuse them.
func checkText(ss ...string) error {
	for _, s := range ss {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w: %q is not valid text", ErrInvalid, s)
		}
	}
	return nil
}

// Validate checks an owner; its error matches ErrInvalid.
func (i Instance) Validate() error {
	if i.Account == "" {
		return fmt.Errorf("%w: instance without an account", ErrInvalid)
	}
	return checkText(i.Account, i.Resource)
}

// Validate checks a key; its error matches ErrInvalid.
func (k Key) Validate() error {
	if k.Scope == "" && k.Name == "" {
		return fmt.Errorf("%w: empty key", ErrInvalid)
	}
	return checkText(k.Scope, k.Name, k.Value)
}

// Validate checks a job; its error matches ErrInvalid.
func (j Job) Validate() error {
	if j.Queue == "" || j.Name == "" {
		return fmt.Errorf("%w: job without a queue or name", ErrInvalid)
	}
	return checkText(j.Queue, j.Name)
}

// Validate checks a feed query; its error matches ErrInvalid.
func (q FeedQuery) Validate() error {
	if q.After < 0 {
		return fmt.Errorf("%w: negative cursor %d", ErrInvalid, q.After)
	}
	if q.Owner != (Instance{}) {
		if err := q.Owner.Validate(); err != nil {
			return err
		}
	}
	return checkText(q.Channels...)
}

// MaxFeedLimit caps FeedQuery.Limit.
const MaxFeedLimit = 10000

// Count returns how many changes to return at most: q.Limit, 100 when it
// is zero or negative, capped at MaxFeedLimit.
func (q FeedQuery) Count() int {
	switch {
	case q.Limit <= 0:
		return 100
	case q.Limit > MaxFeedLimit:
		return MaxFeedLimit
	}
	return q.Limit
}
