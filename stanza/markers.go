package stanza

import (
	"encoding/xml"

	"mellium.im/xmlstream"
)

// Markable asks the recipient for displayed markers (XEP-0333 §4.1):
//
//	<markable xmlns='urn:xmpp:chat-markers:0'/>
//
// The message carrying it must have an id.
type Markable struct{}

// TokenReader returns the element as a stream of tokens.
func (Markable) TokenReader() xml.TokenReader { return leaf(NSMarkers, "markable") }

// WriteXML writes the element to w and returns the number of tokens written.
func (v Markable) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v Markable) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. It only checks the element name.
func (v *Markable) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	return endLeaf(d, checkName(start, NSMarkers, "markable"))
}

// MarkerType is the kind of a chat marker. The zero value means "no
// marker".
type MarkerType uint8

// Marker types. XEP-0333 1.0.0 only defines displayed; received and
// acknowledged were removed in 0.5.0 but deployed clients still send
// received, which should be treated like a per-message receipt, not as
// "everything up to here".
const (
	MarkerDisplayed MarkerType = iota + 1
	MarkerReceived
	MarkerAcknowledged
)

// String returns the element's local name ("displayed", "received",
// "acknowledged"), or "" for the zero value and unknown values.
func (t MarkerType) String() string {
	switch t {
	case MarkerDisplayed:
		return "displayed"
	case MarkerReceived:
		return "received"
	case MarkerAcknowledged:
		return "acknowledged"
	}
	return ""
}

// markerType maps an element's local name in NSMarkers to its type, or 0.
func markerType(local string) MarkerType {
	switch local {
	case "displayed":
		return MarkerDisplayed
	case "received":
		return MarkerReceived
	case "acknowledged":
		return MarkerAcknowledged
	}
	return 0
}

// Marker says that the message with the given id, and for displayed
// everything before it in the conversation, reached the marker's state
// (XEP-0333):
//
//	<displayed xmlns='urn:xmpp:chat-markers:0' id='kit-msg-ad890374'/>
//
// In group chats ID is the room's stanza-id if the room supports XEP-0359.
// Markers carry no thread; ParseMessage reports the message's <thread/>
// separately in Evidence.Thread.
type Marker struct {
	// Type is the marker kind; the zero value means no marker.
	Type MarkerType
	// ID references the marked message; required, at most MaxIDLen bytes.
	ID string
}

// TokenReader returns the element as a stream of tokens. A Marker with an
// unknown Type encodes as <displayed/>.
func (v Marker) TokenReader() xml.TokenReader {
	name := v.Type.String()
	if name == "" {
		name = MarkerDisplayed.String()
	}
	return leaf(NSMarkers, name, mkAttr("id", v.ID))
}

// WriteXML writes the element to w and returns the number of tokens written.
func (v Marker) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v Marker) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler for <displayed/>, <received/> and
// <acknowledged/> in the markers namespace. Other names are a *FieldError
// wrapping ErrUnexpectedElement; a missing, empty or too long id wraps
// ErrMissingAttr or ErrIDTooLong.
func (v *Marker) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	typ := markerType(start.Name.Local)
	var err error
	if typ == 0 || start.Name.Space != NSMarkers {
		err = fieldErr(start.Name.Local, "", ErrUnexpectedElement)
	}
	if err == nil {
		var id string
		if id, err = requiredID(start, "id"); err == nil {
			*v = Marker{Type: typ, ID: id}
		}
	}
	return endLeaf(d, err)
}
