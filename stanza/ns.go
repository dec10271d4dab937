package stanza

// Namespaces of the extensions this package encodes and decodes.
const (
	// NSSM is XEP-0198 Stream Management, version 3.
	NSSM = "urn:xmpp:sm:3"
	// NSReceipts is XEP-0184 Message Delivery Receipts.
	NSReceipts = "urn:xmpp:receipts"
	// NSMarkers is XEP-0333 Displayed Markers (formerly Chat Markers).
	NSMarkers = "urn:xmpp:chat-markers:0"
	// NSSID is XEP-0359 Unique and Stable Stanza IDs (origin-id, stanza-id).
	NSSID = "urn:xmpp:sid:0"
	// NSDelay is XEP-0203 Delayed Delivery.
	NSDelay = "urn:xmpp:delay"
	// NSCarbons is XEP-0280 Message Carbons.
	NSCarbons = "urn:xmpp:carbons:2"
	// NSForward is XEP-0297 Stanza Forwarding, the wrapper used by carbons.
	NSForward = "urn:xmpp:forward:0"
	// NSOccupantID is XEP-0421 Occupant identifiers for MUC.
	NSOccupantID = "urn:xmpp:occupant-id:0"
	// NSMUCUser is the XEP-0045 namespace of the <x/> that a room adds to
	// an occupant's private message (and that the sending client should
	// add, §7.5).
	NSMUCUser = "http://jabber.org/protocol/muc#user"
	// NSHints is XEP-0334 Message Processing Hints (e.g. <store/>).
	NSHints = "urn:xmpp:hints"

	// nsStanzas is the RFC 6120 stanza error condition namespace.
	nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
	// nsXML is the namespace encoding/xml gives the reserved xml: prefix.
	nsXML = "http://www.w3.org/XML/1998/namespace"
)

// Size limits applied by the decoders.
const (
	// MaxIDLen is the largest accepted length in bytes of any identifier:
	// stream management IDs (XEP-0198 §5 says they SHOULD NOT exceed 4000
	// bytes), stanza ids, receipt and marker references, origin-ids,
	// stanza-ids and their by attribute, occupant-ids and threads.
	// Longer values make the decoder fail with an error wrapping ErrIDTooLong.
	MaxIDLen = 4000

	// MaxBodyLen is the number of bytes of the first <body/> that ParseMessage
	// keeps. A longer body is cut at a UTF-8 boundary at or below this limit;
	// this is not an error.
	MaxBodyLen = 64 << 10
)
