package stanza

import (
	"encoding/xml"

	"mellium.im/xmlstream"
)

// OriginID is the id the sending client gave a message (XEP-0359 §2.2):
//
//	<origin-id xmlns='urn:xmpp:sid:0' id='kit-oid-6e3f96e0'/>
//
// Anyone can set it: use it only to recognise your own reflections and
// carbons, never to attribute someone else's reference (XEP-0359 §6).
type OriginID struct {
	// ID is required and at most MaxIDLen bytes.
	ID string
}

// TokenReader returns the element as a stream of tokens.
func (v OriginID) TokenReader() xml.TokenReader {
	return leaf(NSSID, "origin-id", mkAttr("id", v.ID))
}

// WriteXML writes the element to w and returns the number of tokens written.
func (v OriginID) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v OriginID) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. A missing, empty or too long id
// is a *FieldError wrapping ErrMissingAttr or ErrIDTooLong.
func (v *OriginID) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	err := checkName(start, NSSID, "origin-id")
	if err == nil {
		var id string
		if id, err = requiredID(start, "id"); err == nil {
			v.ID = id
		}
	}
	return endLeaf(d, err)
}

// StanzaID is an id assigned by an archive or a room (XEP-0359 §2.1):
//
//	<stanza-id xmlns='urn:xmpp:sid:0' id='SXLS9VFxZUJcd41twmXObp4o' by='bob@localhost'/>
//
// Trust it only if By is the expected archive or room and that entity
// announces urn:xmpp:sid:0 (XEP-0359 §6).
type StanzaID struct {
	// ID is required and at most MaxIDLen bytes.
	ID string
	// By is the JID of the assigning entity as sent; required and at most
	// MaxIDLen bytes. It is not normalised: compare it with a parsed JID.
	By string
}

// TokenReader returns the element as a stream of tokens.
func (v StanzaID) TokenReader() xml.TokenReader {
	return leaf(NSSID, "stanza-id", mkAttr("id", v.ID), mkAttr("by", v.By))
}

// WriteXML writes the element to w and returns the number of tokens written.
func (v StanzaID) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v StanzaID) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. Both id and by are required
// (XEP-0359 §3); a missing, empty or too long one is a *FieldError wrapping
// ErrMissingAttr or ErrIDTooLong.
func (v *StanzaID) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	err := checkName(start, NSSID, "stanza-id")
	if err == nil {
		var out StanzaID
		if out, err = stanzaID(start); err == nil {
			*v = out
		}
	}
	return endLeaf(d, err)
}

func stanzaID(start xml.StartElement) (StanzaID, error) {
	id, err := requiredID(start, "id")
	if err != nil {
		return StanzaID{}, err
	}
	by, err := requiredID(start, "by")
	if err != nil {
		return StanzaID{}, err
	}
	return StanzaID{ID: id, By: by}, nil
}
