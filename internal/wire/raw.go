package wire

import (
	"bytes"
	"encoding/xml"
	"unicode/utf8"

	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/internal/xmltext"
)

// Raw is one whole top-level element, already encoded, for Write: Write
// puts its bytes on the connection as they are, under the session's output
// like any element, flushed on their own. Encoding a stanza's tokens
// through mellium costs several times more than appending its bytes
// (about 40 allocations for a message), so a hot path may build the bytes
// itself, escaping text with AppendEscaped.
//
// The bytes must be one well-formed element in the stream's default
// namespace, as the session's encoder would write it: stream management
// reads the written bytes to count and keep stanzas.
//
// Write keeps no reference to B once it returns, whatever its result, so
// a caller may reuse the buffer then (Send does). Anything between Write
// and the connection (the client's tees, stream management's scanners)
// must copy what it keeps.
//
// Token decodes the bytes, for a reader other than Write.
type Raw struct {
	B []byte
	d *xml.Decoder
}

// Token returns the element's tokens, decoded from B.
func (r *Raw) Token() (xml.Token, error) {
	if r.d == nil {
		r.d = xml.NewDecoder(bytes.NewReader(r.B))
	}
	return r.d.Token()
}

// writeRaw writes b on s's connection; the caller holds the output through
// w, whose buffer it empties first.
func writeRaw(s *xmpp.Session, w interface{ Flush() error }, b []byte) error {
	if err := w.Flush(); err != nil {
		return err
	}
	if s.State()&xmpp.OutputStreamClosed != 0 {
		return xmpp.ErrOutputStreamClosed
	}
	_, err := s.Conn().Write(b)
	return err
}

// AppendEscaped appends s escaped as encoding/xml's encoder escapes
// character data (newline false) or an attribute value (newline true):
// the five special characters, tab and carriage return as character
// references, and bytes that are not valid UTF-8 or characters XML does not
// allow as U+FFFD.
func AppendEscaped(b []byte, s string, newline bool) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf && c >= 0x20 && c != '"' && c != '\'' && c != '&' && c != '<' && c != '>' {
			i++
			continue
		}
		r, width := utf8.DecodeRuneInString(s[i:])
		i += width
		var esc string
		switch r {
		case '"':
			esc = "&#34;"
		case '\'':
			esc = "&#39;"
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\t':
			esc = "&#x9;"
		case '\n':
			if !newline {
				continue
			}
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			if !xmltext.Char(r) || (r == utf8.RuneError && width == 1) {
				esc = "\uFFFD"
				break
			}
			continue
		}
		b = append(b, s[last:i-width]...)
		b = append(b, esc...)
		last = i
	}
	return append(b, s[last:]...)
}
