package interop

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Event kinds written by the peers (the "event" key of each line).
const (
	// EventReady: logged in, presence processed by the server (and the room
	// joined, with Options.Room). JID is the bound full JID.
	EventReady = "ready"
	// EventMessage: a message with a body was received (From, To, ID, Type,
	// Body, Thread, ReceiptRequested, Markable, StanzaIDs).
	EventMessage = "message"
	// EventReceiptSent: a XEP-0184 receipt for ID went out to To.
	EventReceiptSent = "receipt_sent"
	// EventMarkerSent: a <displayed/> marker for ID went out to To. By is
	// "message-id" or "stanza-id" (group chat, room announcing
	// urn:xmpp:sid:0); MessageID is the id attribute of the marked message.
	EventMarkerSent = "marker_sent"
	// EventReceiptReceived: a receipt for ID arrived From.
	EventReceiptReceived = "receipt_received"
	// EventMarkerReceived: a marker (Marker: displayed, received or
	// acknowledged) for ID arrived From.
	EventMarkerReceived = "marker_received"
	// EventError: something failed; Error says what. Before EventReady it
	// means the peer could not log in.
	EventError = "error"
	// EventStopped: the peer is exiting with Code.
	EventStopped = "stopped"
	// EventResult: the benchmark's final line (see RunAioxmppBench).
	EventResult = "result"
)

// StanzaID is a XEP-0359 <stanza-id/> seen on a received message.
type StanzaID struct {
	ID string `json:"id"`
	By string `json:"by"`
}

// Event is one line of a peer's standard output. Fields that do not apply to
// a kind are zero.
type Event struct {
	Kind string `json:"event"`
	// Time is when the peer wrote the event (its wall clock).
	Time time.Time `json:"-"`

	JID      string `json:"jid,omitempty"`
	TLS      bool   `json:"tls,omitempty"`
	Room     string `json:"room,omitempty"`
	Nick     string `json:"nick,omitempty"`
	RoomSID  bool   `json:"room_sid,omitempty"`
	From     string `json:"from,omitempty"`
	To       string `json:"to,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Body     string `json:"body,omitempty"`
	Thread   string `json:"thread,omitempty"`
	Receipt  bool   `json:"receipt_requested,omitempty"`
	Markable bool   `json:"markable,omitempty"`
	// StanzaIDs are all XEP-0359 stanza-ids of a received message.
	StanzaIDs []StanzaID `json:"stanza_ids,omitempty"`
	MessageID string     `json:"message_id,omitempty"`
	By        string     `json:"by,omitempty"`
	Marker    string     `json:"marker,omitempty"`
	Error     string     `json:"error,omitempty"`
	Code      int        `json:"code,omitempty"`

	// Raw is the line as written.
	Raw string `json:"-"`
}

// ErrNotEvent is returned by ParseEvent for a line that is not a JSON object
// with a non-empty "event" key.
var ErrNotEvent = errors.New("interop: not an event line")

// ParseEvent decodes one line of a peer's standard output.
func ParseEvent(line []byte) (Event, error) {
	var e struct {
		Event
		T *float64 `json:"t"`
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrNotEvent, err)
	}
	if e.Kind == "" {
		return Event{}, fmt.Errorf("%w: no event key", ErrNotEvent)
	}
	ev := e.Event
	if e.T != nil && *e.T > 0 && *e.T < math.MaxInt64/1e9 {
		sec, frac := math.Modf(*e.T)
		ev.Time = time.Unix(int64(sec), int64(frac*1e9))
	}
	ev.Raw = string(line)
	return ev, nil
}

// String returns the raw line, for logs.
func (e Event) String() string {
	if e.Raw != "" {
		return e.Raw
	}
	return fmt.Sprintf("{event:%s id:%s}", e.Kind, e.ID)
}
