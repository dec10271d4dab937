package stanza

import (
	"encoding/xml"

	"mellium.im/xmlstream"
)

// AckRequest asks the peer for an Ack (XEP-0198 §4):
//
//	<r xmlns='urn:xmpp:sm:3'/>
type AckRequest struct{}

// TokenReader returns the element as a stream of tokens.
func (AckRequest) TokenReader() xml.TokenReader { return leaf(NSSM, "r") }

// WriteXML writes the element to w and returns the number of tokens written.
func (v AckRequest) WriteXML(w xmlstream.TokenWriter) (int, error) {
	return copyXML(w, v.TokenReader())
}

// MarshalXML implements xml.Marshaler; start is ignored.
func (v AckRequest) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. It only checks the element name.
func (v *AckRequest) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	return endLeaf(d, checkName(start, NSSM, "r"))
}

// Ack tells the peer how many stanzas were handled (XEP-0198 §4):
//
//	<a xmlns='urn:xmpp:sm:3' h='4'/>
//
// H counts modulo 2^32; compute progress as a uint32 difference.
type Ack struct {
	H uint32
}

// TokenReader returns the element as a stream of tokens.
func (v Ack) TokenReader() xml.TokenReader {
	return leaf(NSSM, "a", mkAttr("h", formatUint32(v.H)))
}

// WriteXML writes the element to w and returns the number of tokens written.
func (v Ack) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v Ack) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. h is required and must be an
// unsignedInt: errors are *FieldError wrapping ErrMissingAttr or
// ErrInvalidH.
func (v *Ack) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	err := checkName(start, NSSM, "a")
	if err == nil {
		var h uint32
		if h, err = requiredH(start); err == nil {
			v.H = h
		}
	}
	return endLeaf(d, err)
}
