package gateway

import (
	"encoding/json"
	"strconv"
	"time"
)

// Cursor is a position in the feed of state changes: every change gets a
// cursor greater than every earlier one. In JSON it is a string of decimal
// digits, so that no client loses precision on large values.
type Cursor uint64

// MarshalJSON writes the cursor as a decimal string.
func (c Cursor) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 24)
	b = append(b, '"')
	b = strconv.AppendUint(b, uint64(c), 10)
	return append(b, '"'), nil
}

// UnmarshalJSON reads a decimal string (or number).
func (c *Cursor) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else {
		s = string(b)
	}
	v, err := parseCursor(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

func (c Cursor) String() string { return strconv.FormatUint(uint64(c), 10) }

func parseCursor(s string) (Cursor, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	return Cursor(v), err
}

// Evidence is what proved a state change, as far as the gateway knows it.
type Evidence struct {
	// From is the sender of the proof: the recipient's full JID for receipts
	// and markers, our occupant JID for a room's reflection. Empty for acks
	// of our own server.
	From string `json:"from,omitempty"`
	// Error is the error reply for the ERROR state (and ABORTED with a
	// local cause).
	Error *ErrorInfo `json:"error,omitempty"`
	// SeenBy lists the nicks of the room occupants known to have
	// displayed a group-chat message when the change was recorded.
	SeenBy []string `json:"seen_by,omitempty"`
	// StanzaID is the id a room assigned to a group-chat message.
	StanzaID string `json:"stanza_id,omitempty"`
}

// ErrorInfo describes an error reply or a local failure.
type ErrorInfo struct {
	// Condition is the RFC 6120 stanza error condition, such as
	// "service-unavailable", or a local one ("send-failed").
	Condition string `json:"condition"`
	// Kind is the error's type attribute (cancel, wait, modify, auth) when
	// it came from the network.
	Kind string `json:"kind,omitempty"`
	// Text is the human-readable text, if any.
	Text string `json:"text,omitempty"`
}

// Change is one entry of a message's history.
type Change struct {
	State  State     `json:"state"`
	At     time.Time `json:"at"`
	Cursor Cursor    `json:"cursor"`
	Evidence
}

// Event is one state change in the feed (GET /v1/events, webhooks).
type Event struct {
	// ID is the message's id.
	ID      string `json:"id"`
	To      string `json:"to"`
	Channel string `json:"channel,omitempty"`
	Change
}

// Status is the record of one message (GET /v1/messages/{id}).
type Status struct {
	ID      string     `json:"id"`
	To      string     `json:"to"`
	From    string     `json:"from"`
	Type    string     `json:"type"`
	Channel string     `json:"channel,omitempty"`
	Thread  string     `json:"thread,omitempty"`
	State   State      `json:"state"`
	Settled bool       `json:"settled"`
	Cursor  Cursor     `json:"cursor"`
	Created time.Time  `json:"created"`
	SendAt  *time.Time `json:"send_at,omitempty"`
	History []Change   `json:"history"`

	raw *rawRequest // the accepted request, kept by a durable record
}
