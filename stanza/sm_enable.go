package stanza

import (
	"encoding/xml"

	"mellium.im/xmlstream"
)

// Enable is the client's request to enable stream management (XEP-0198 §3):
//
//	<enable xmlns='urn:xmpp:sm:3' resume='true' max='600'/>
//
// The zero value asks for stream management without resumption.
type Enable struct {
	// Resume asks the server to allow resumption of the stream.
	Resume bool
	// Max is the preferred maximum resumption time in seconds; 0 omits it.
	Max uint32
}

func (v Enable) attrs() []xml.Attr {
	var a []xml.Attr
	if v.Resume {
		a = append(a, mkAttr("resume", "true"))
	}
	if v.Max != 0 {
		a = append(a, mkAttr("max", formatUint32(v.Max)))
	}
	return a
}

// TokenReader returns the element as a stream of tokens.
func (v Enable) TokenReader() xml.TokenReader { return leaf(NSSM, "enable", v.attrs()...) }

// WriteXML writes the element to w and returns the number of tokens written.
func (v Enable) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v Enable) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. resume accepts "true", "1",
// "false" and "0"; max must be an unsignedInt. Errors are *FieldError.
func (v *Enable) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var out Enable
	err := checkName(start, NSSM, "enable")
	if err == nil {
		out.Resume, out.Max, err = resumeMax(start)
	}
	if err == nil {
		*v = out
	}
	return endLeaf(d, err)
}

// resumeMax decodes the resume and max attributes shared by enable and
// enabled.
func resumeMax(start xml.StartElement) (resume bool, max uint32, err error) {
	if s, ok := attr(start, "resume"); ok {
		if resume, ok = parseBool(s); !ok {
			return false, 0, fieldErr(start.Name.Local, "resume", ErrInvalidAttr)
		}
	}
	if s, ok := attr(start, "max"); ok {
		if max, ok = parseUint32(s); !ok {
			return false, 0, fieldErr(start.Name.Local, "max", ErrInvalidAttr)
		}
	}
	return resume, max, nil
}

// Enabled is the server's answer to Enable (XEP-0198 §3):
//
//	<enabled xmlns='urn:xmpp:sm:3' id='OQfkUrMcMi8I' resume='true' max='600'/>
//
// Since XEP-0198 1.6.2 a server may send an ID without allowing resumption;
// resumption is possible only if Resume is true.
type Enabled struct {
	// ID is the opaque SM-ID needed to resume; at most MaxIDLen bytes.
	// It is a resumption credential: do not log it.
	ID string
	// Resume reports that the server allows resumption. The decoder rejects
	// resume without an ID.
	Resume bool
	// Max is the server's maximum resumption time in seconds; 0 if absent.
	Max uint32
	// Location is the server's preferred reconnection address
	// (domainpart:port, IPv6 in brackets) or "". Only use it after
	// authenticating the same server, and fall back to normal connection
	// setup if it fails (XEP-0198 §3).
	Location string
}

func (v Enabled) attrs() []xml.Attr {
	var a []xml.Attr
	if v.ID != "" {
		a = append(a, mkAttr("id", v.ID))
	}
	if v.Resume {
		a = append(a, mkAttr("resume", "true"))
	}
	if v.Max != 0 {
		a = append(a, mkAttr("max", formatUint32(v.Max)))
	}
	if v.Location != "" {
		a = append(a, mkAttr("location", v.Location))
	}
	return a
}

// TokenReader returns the element as a stream of tokens.
func (v Enabled) TokenReader() xml.TokenReader { return leaf(NSSM, "enabled", v.attrs()...) }

// WriteXML writes the element to w and returns the number of tokens written.
func (v Enabled) WriteXML(w xmlstream.TokenWriter) (int, error) { return copyXML(w, v.TokenReader()) }

// MarshalXML implements xml.Marshaler; start is ignored.
func (v Enabled) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return encodeXML(e, v.TokenReader())
}

// UnmarshalXML implements xml.Unmarshaler. It fails with a *FieldError if
// id or location is longer than MaxIDLen (ErrIDTooLong), resume is set
// without an id (ErrMissingAttr), or resume or max is malformed
// (ErrInvalidAttr).
func (v *Enabled) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var out Enabled
	err := checkName(start, NSSM, "enabled")
	if err == nil {
		out.Resume, out.Max, err = resumeMax(start)
	}
	if err == nil {
		out.ID, _ = attr(start, "id")
		out.Location, _ = attr(start, "location")
		switch {
		case len(out.ID) > MaxIDLen:
			err = fieldErr("enabled", "id", ErrIDTooLong)
		case len(out.Location) > MaxIDLen:
			err = fieldErr("enabled", "location", ErrIDTooLong)
		case out.Resume && out.ID == "":
			err = fieldErr("enabled", "id", ErrMissingAttr)
		}
	}
	if err == nil {
		*v = out
	}
	return endLeaf(d, err)
}
