package stanza

import (
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
)

// CarbonKind tells whether a message is a XEP-0280 carbon copy.
type CarbonKind uint8

// Carbon kinds.
const (
	// CarbonNone: not a carbon.
	CarbonNone CarbonKind = iota
	// CarbonSent: a copy of a message another of our resources sent.
	CarbonSent
	// CarbonReceived: a copy of a message another of our resources
	// received.
	CarbonReceived
)

// String returns "none", "sent" or "received".
func (k CarbonKind) String() string {
	switch k {
	case CarbonSent:
		return "sent"
	case CarbonReceived:
		return "received"
	}
	return "none"
}

// Evidence is what one incoming <message/> says about outgoing messages,
// as returned by ParseMessage. It is raw: ParseMessage checks syntax and
// sizes only. The caller must still bind senders (a receipt counts only if
// From is the recipient), check that a carbon's From is the own bare JID,
// ignore stanza-ids whose By did not announce urn:xmpp:sid:0, and so on.
//
// If Type is error, the extension fields describe the original payload the
// error may echo; they are not evidence of delivery.
type Evidence struct {
	// From and To are the parsed addresses; the zero JID if absent.
	From, To jid.JID
	// ID is the message's id attribute.
	ID string
	// Type is the message type; absent or unknown types are
	// xstanza.NormalMessage (RFC 6121 §5.2.2).
	Type xstanza.MessageType

	// Receipt is the id of the first XEP-0184 <received/>, or "".
	Receipt string
	// Marker is the first XEP-0333 marker (displayed, or legacy received or
	// acknowledged); the zero Marker if none.
	Marker Marker
	// Thread is the content of the first <thread/>, or "".
	Thread string
	// OriginID is the id of the first XEP-0359 <origin-id/>, or "".
	OriginID string
	// StanzaIDs are all well-formed XEP-0359 <stanza-id/> elements in
	// document order. Filter them by By.
	StanzaIDs []StanzaID
	// OccupantID is the id of the first XEP-0421 <occupant-id/>, or "".
	OccupantID string
	// Body is the text of the first <body/>, cut to at most MaxBodyLen
	// bytes.
	Body string
	// HasDelay reports a XEP-0203 <delay/> child (e.g. MUC history, offline
	// storage or a re-sent stanza).
	HasDelay bool
	// Error is the parsed <error/> of a type='error' message and nil for
	// other types. It is never nil for type='error': a missing or empty
	// <error/> gives undefined-condition. Unknown conditions are
	// undefined-condition too (RFC 6120 §8.3.2).
	Error *xstanza.Error

	// Carbon tells whether this message is a XEP-0280 carbon wrapper.
	Carbon CarbonKind
	// Forwarded is the message inside the carbon's <forwarded/>, or nil.
	// Only one level is parsed: carbons inside Forwarded are ignored, so its
	// Carbon is always CarbonNone and its Forwarded nil.
	Forwarded *Evidence

	// ReceiptRequested reports a XEP-0184 <request/>.
	ReceiptRequested bool
	// Markable reports a XEP-0333 <markable/>.
	Markable bool
	// MUCUser reports a XEP-0045 <x xmlns='http://jabber.org/protocol/muc#user'/>:
	// in a message that is not a group chat message, it says that the
	// sender (room@service/nick) is a room occupant writing in private.
	// Any sender can add it: it is the sender's word about itself.
	MUCUser bool
}
