package sm

import (
	"bytes"
	"encoding/xml"
	"time"

	"mellium.im/xmlstream"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// rawReader returns the tokens of a captured stanza for Session.Send,
// which re-encodes them: the XML is the same, the bytes may differ. Prefixed
// namespace declarations are dropped because encoding/xml cannot write them
// back (it declares the prefixes it needs itself); the default ones are
// dropped by mellium.
func rawReader(raw []byte) xml.TokenReader {
	d := xml.NewDecoder(bytes.NewReader(raw))
	return xmlstream.ReaderFunc(func() (xml.Token, error) {
		tok, err := d.Token()
		if start, ok := tok.(xml.StartElement); ok {
			attrs := make([]xml.Attr, 0, len(start.Attr))
			for _, a := range start.Attr {
				if a.Name.Space != "xmlns" {
					attrs = append(attrs, a)
				}
			}
			start.Attr = attrs
			tok = start
		}
		return tok, err
	})
}

// delayStamp is the XEP-0082 DateTime layout used in <delay/>.
const delayStamp = "2006-01-02T15:04:05.000Z"

// withDelay returns the tokens of a captured stanza with a XEP-0203
// <delay xmlns='urn:xmpp:delay' stamp='...'/> as its first child, stamped
// with the time it was first written (Unix ns). A stanza that already
// mentions the delay namespace is left as it is.
func withDelay(raw []byte, sent int64) xml.TokenReader {
	if bytes.Contains(raw, []byte(stanza.NSDelay)) {
		return rawReader(raw)
	}
	d := rawReader(raw)
	first := true
	var rest xml.TokenReader
	return xmlstream.ReaderFunc(func() (xml.Token, error) {
		if rest != nil {
			return rest.Token()
		}
		tok, err := d.Token()
		if err != nil || !first {
			return tok, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			first = false
			stamp := time.Unix(0, sent).UTC().Format(delayStamp)
			rest = xmlstream.MultiReader(
				xmlstream.Wrap(nil, xml.StartElement{
					Name: xml.Name{Space: stanza.NSDelay, Local: "delay"},
					Attr: []xml.Attr{{Name: xml.Name{Local: "stamp"}, Value: stamp}},
				}),
				d,
			)
			return start.Copy(), nil
		}
		return tok, nil
	})
}
