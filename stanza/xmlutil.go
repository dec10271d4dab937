package stanza

import (
	"encoding/xml"
	"io"

	"mellium.im/xmlstream"
)

// attr returns the value of the unqualified attribute local of start.
func attr(start xml.StartElement, local string) (string, bool) {
	for _, a := range start.Attr {
		if a.Name.Local == local && a.Name.Space == "" {
			return a.Value, true
		}
	}
	return "", false
}

// leaf returns a token reader for an element without children.
func leaf(space, local string, attrs ...xml.Attr) xml.TokenReader {
	return xmlstream.Wrap(nil, xml.StartElement{
		Name: xml.Name{Space: space, Local: local},
		Attr: attrs,
	})
}

func mkAttr(local, value string) xml.Attr {
	return xml.Attr{Name: xml.Name{Local: local}, Value: value}
}

// maxNilTokens is how many (nil, nil) results in a row a token reader may
// return before the parsers give up with io.ErrNoProgress.
const maxNilTokens = 100

// tokens wraps a token reader: it delivers a token returned together with an
// error before the error, and stops a reader that makes no progress.
type tokens struct {
	r       xml.TokenReader
	pending error
	jids    *Parser // remembered addresses; nil: parse every one
}

func (t *tokens) next() (xml.Token, error) {
	if t.pending != nil {
		return nil, t.pending
	}
	for range maxNilTokens {
		tok, err := t.r.Token()
		if err != nil {
			if tok != nil {
				t.pending = err
				return tok, nil
			}
			return nil, err
		}
		if tok != nil {
			return tok, nil
		}
	}
	return nil, io.ErrNoProgress
}

// skip consumes tokens up to and including the end of the element whose
// start was just read. It builds nothing.
func (t *tokens) skip() error {
	depth := 1
	for {
		tok, err := t.next()
		if err != nil {
			return unexpectedEOF(err)
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 {
				return nil
			}
		}
	}
}

// text consumes the element whose start was just read and returns its
// character data (not that of nested elements), keeping at most limit bytes,
// cut at a UTF-8 boundary. over reports that text was cut. Text that arrives
// in many nodes (split by comments, CDATA sections or child elements) is
// gathered in one growing buffer, in time linear in its length; a single
// node costs one string conversion, as before.
func (t *tokens) text(limit int) (s string, over bool, err error) {
	depth := 1
	var buf []byte // from the second text node on; s holds the first
	done := func() string {
		if buf != nil {
			return string(buf)
		}
		return s
	}
	n := 0
	for {
		tok, err := t.next()
		if err != nil {
			return done(), over, unexpectedEOF(err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 {
				return done(), over, nil
			}
		case xml.CharData:
			if depth != 1 || over || len(tok) == 0 {
				continue
			}
			if room := limit - n; len(tok) > room {
				over = true
				tok = tok[:runeCut(tok, room)]
			}
			switch {
			case n == 0:
				s = string(tok)
			case buf == nil:
				buf = append(append(make([]byte, 0, 2*(n+len(tok))), s...), tok...)
			default:
				buf = append(buf, tok...)
			}
			n += len(tok)
		}
	}
}

// runeCut returns the largest n <= max such that b[:n] does not end inside
// a multi-byte UTF-8 sequence. It requires max < len(b).
func runeCut(b []byte, max int) int {
	n := max
	for n > 0 && n > max-3 && b[n]&0xC0 == 0x80 {
		n--
	}
	return n
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// endLeaf finishes decoding an element handled by an UnmarshalXML method:
// it consumes the rest of the element and then reports verr, the first
// validation error, if any. Consuming first keeps the decoder usable after a
// validation error.
func endLeaf(d *xml.Decoder, verr error) error {
	if err := d.Skip(); err != nil {
		return err
	}
	return verr
}

// checkName reports ErrUnexpectedElement unless start is {space}local.
func checkName(start xml.StartElement, space, local string) error {
	if start.Name.Local != local || start.Name.Space != space {
		return fieldErr(start.Name.Local, "", ErrUnexpectedElement)
	}
	return nil
}

// copyXML writes the tokens of r to w.
func copyXML(w xmlstream.TokenWriter, r xml.TokenReader) (int, error) {
	return xmlstream.Copy(w, r)
}

// encodeXML is the shared body of the MarshalXML methods.
func encodeXML(e *xml.Encoder, r xml.TokenReader) error {
	_, err := xmlstream.Copy(e, r)
	return err
}
