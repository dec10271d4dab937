package stanza

import (
	"encoding/xml"

	"mellium.im/xmlstream"
	xstanza "mellium.im/xmpp/stanza"
)

// Resume asks the server to resume a previous stream (XEP-0198 §5):
//
//	<resume xmlns='urn:xmpp:sm:3' previd='OQfkUrMcMi8I' h='4'/>
type Resume struct {
	// PrevID is the SM-ID from the earlier Enabled; required, at most
	// MaxIDLen bytes.
	PrevID string
	// H is the number of stanzas the client handled from the server
	// (modulo 2^32).
	H uint32
}

// TokenReader returns the element as a stream of tokens.
func (v Resume) TokenReader() xml.TokenReader {
	return leaf(NSSM, "resume", mkAttr("previd", v.PrevID), mkAttr("h", formatUint32(v.H)))
}

// WriteXML writes the element to w and returns the number of tokens written.
func (v Resume) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v Resume) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. previd and h are required; errors
// are *FieldError wrapping ErrMissingAttr, ErrIDTooLong or ErrInvalidH.
func (v *Resume) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	err := checkName(start, NSSM, "resume")
	if err == nil {
		var out Resume
		if out.PrevID, out.H, err = prevIDH(start); err == nil {
			*v = out
		}
	}
	return endLeaf(d, err)
}

// Resumed is the server's answer to a successful Resume (XEP-0198 §5):
//
//	<resumed xmlns='urn:xmpp:sm:3' previd='OQfkUrMcMi8I' h='4'/>
type Resumed struct {
	// PrevID echoes the resumed SM-ID; required, at most MaxIDLen bytes.
	PrevID string
	// H is the number of stanzas the server handled from the client
	// (modulo 2^32).
	H uint32
}

// TokenReader returns the element as a stream of tokens.
func (v Resumed) TokenReader() xml.TokenReader {
	return leaf(NSSM, "resumed", mkAttr("previd", v.PrevID), mkAttr("h", formatUint32(v.H)))
}

// WriteXML writes the element to w and returns the number of tokens written.
func (v Resumed) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v Resumed) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. previd and h are required; errors
// are *FieldError wrapping ErrMissingAttr, ErrIDTooLong or ErrInvalidH.
// Checking that PrevID is the ID that was sent is up to the caller.
func (v *Resumed) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	err := checkName(start, NSSM, "resumed")
	if err == nil {
		var out Resumed
		if out.PrevID, out.H, err = prevIDH(start); err == nil {
			*v = out
		}
	}
	return endLeaf(d, err)
}

func prevIDH(start xml.StartElement) (string, uint32, error) {
	el := start.Name.Local
	id, _ := attr(start, "previd")
	switch {
	case id == "":
		return "", 0, fieldErr(el, "previd", ErrMissingAttr)
	case len(id) > MaxIDLen:
		return "", 0, fieldErr(el, "previd", ErrIDTooLong)
	}
	h, err := requiredH(start)
	return id, h, err
}

// requiredH decodes the mandatory h attribute of start.
func requiredH(start xml.StartElement) (uint32, error) {
	s, ok := attr(start, "h")
	if !ok {
		return 0, fieldErr(start.Name.Local, "h", ErrMissingAttr)
	}
	h, ok := parseH(s)
	if !ok {
		return 0, fieldErr(start.Name.Local, "h", ErrInvalidH)
	}
	return h, nil
}

// Failed reports that enabling or resuming stream management failed
// (XEP-0198 §6):
//
//	<failed xmlns='urn:xmpp:sm:3' h='3'>
//	  <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
//	</failed>
type Failed struct {
	// H is the number of stanzas the server handled from the client; only
	// meaningful if HasH. After a failed resumption, stanzas up to H are
	// acked and only later ones are of unknown fate.
	H uint32
	// HasH reports whether the h attribute was present.
	HasH bool
	// Condition is the RFC 6120 stanza error condition, or "" if the server
	// sent none. A condition this package does not know decodes as
	// undefined-condition (RFC 6120 §8.3.2). Other children are ignored.
	Condition xstanza.Condition
}

// TokenReader returns the element as a stream of tokens.
func (v Failed) TokenReader() xml.TokenReader {
	start := xml.StartElement{Name: xml.Name{Space: NSSM, Local: "failed"}}
	if v.HasH {
		start.Attr = []xml.Attr{mkAttr("h", formatUint32(v.H))}
	}
	var inner xml.TokenReader
	if v.Condition != "" {
		inner = leaf(nsStanzas, string(v.Condition))
	}
	return xmlstream.Wrap(inner, start)
}

// WriteXML writes the element to w and returns the number of tokens written.
func (v Failed) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v Failed) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. h is optional but, if present,
// must be an unsignedInt (*FieldError wrapping ErrInvalidH). The first child
// in the urn:ietf:params:xml:ns:xmpp-stanzas namespace other than <text/> is
// the condition.
func (v *Failed) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var out Failed
	verr := checkName(start, NSSM, "failed")
	if verr == nil {
		if s, ok := attr(start, "h"); ok {
			out.HasH = true
			if out.H, ok = parseH(s); !ok {
				verr = fieldErr("failed", "h", ErrInvalidH)
			}
		}
	}
	t := tokens{r: d}
	for {
		tok, err := t.next()
		if err != nil {
			return unexpectedEOF(err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if out.Condition == "" && tok.Name.Space == nsStanzas && tok.Name.Local != "text" {
				out.Condition = condition(tok.Name.Local)
			}
			if err := t.skip(); err != nil {
				return err
			}
		case xml.EndElement:
			if verr == nil {
				*v = out
			}
			return verr
		}
	}
}
