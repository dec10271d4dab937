package stanza

import (
	"encoding/xml"

	"mellium.im/xmlstream"
)

// ReceiptRequest asks the recipient for a delivery receipt (XEP-0184):
//
//	<request xmlns='urn:xmpp:receipts'/>
//
// The message carrying it must have an id, and a receipt must never carry a
// request (XEP-0184 §5.4).
type ReceiptRequest struct{}

// TokenReader returns the element as a stream of tokens.
func (ReceiptRequest) TokenReader() xml.TokenReader { return leaf(NSReceipts, "request") }

// WriteXML writes the element to w and returns the number of tokens written.
func (v ReceiptRequest) WriteXML(w xmlstream.TokenWriter) (int, error) {
	return copyXML(w, v.TokenReader())
}

// MarshalXML implements xml.Marshaler; start is ignored.
func (v ReceiptRequest) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. It only checks the element name.
func (v *ReceiptRequest) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	return endLeaf(d, checkName(start, NSReceipts, "request"))
}

// Receipt acknowledges delivery of the message whose id it echoes
// (XEP-0184):
//
//	<received xmlns='urn:xmpp:receipts' id='kit-msg-ad890374'/>
//
// It only means that a client of the recipient got the message. Match it on
// ID, never on the id of the message carrying it.
type Receipt struct {
	// ID is the id of the acknowledged message; required, at most MaxIDLen
	// bytes.
	ID string
}

// TokenReader returns the element as a stream of tokens.
func (v Receipt) TokenReader() xml.TokenReader {
	return leaf(NSReceipts, "received", mkAttr("id", v.ID))
}

// WriteXML writes the element to w and returns the number of tokens written.
func (v Receipt) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v Receipt) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. A missing or empty id is a
// *FieldError wrapping ErrMissingAttr, a longer one than MaxIDLen wraps
// ErrIDTooLong.
func (v *Receipt) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	err := checkName(start, NSReceipts, "received")
	if err == nil {
		var id string
		if id, err = requiredID(start, "id"); err == nil {
			v.ID = id
		}
	}
	return endLeaf(d, err)
}

// requiredID returns the attribute local of start, which must be present,
// non-empty and at most MaxIDLen bytes long.
func requiredID(start xml.StartElement, local string) (string, error) {
	id, _ := attr(start, local)
	switch {
	case id == "":
		return "", fieldErr(start.Name.Local, local, ErrMissingAttr)
	case len(id) > MaxIDLen:
		return "", fieldErr(start.Name.Local, local, ErrIDTooLong)
	}
	return id, nil
}
