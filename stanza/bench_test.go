package stanza_test

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// replay serves recorded tokens, so that the benchmark measures
// ParseMessage and not the XML decoder.
type replay struct {
	toks []xml.Token
	i    int
}

func (r *replay) Token() (xml.Token, error) {
	if r.i == len(r.toks) {
		return nil, io.EOF
	}
	r.i++
	return r.toks[r.i-1], nil
}

func record(b *testing.B, s string) (xml.StartElement, []xml.Token) {
	d := xml.NewDecoder(strings.NewReader(s))
	var toks []xml.Token
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		toks = append(toks, xml.CopyToken(tok))
	}
	return toks[0].(xml.StartElement), toks[1:]
}

var benchMessages = []struct{ name, in string }{
	{"prosody-chat", prosodyChat},
	{"prosody-receipt", prosodyReceipt},
	{"prosody-muc", prosodyMUC},
	{"ejabberd-chat", ejabberdChat},
	{"ejabberd-receipt", ejabberdReceipt},
	{"ejabberd-marker", ejabberdMarker},
}

// BenchmarkParseMessage parses messages as the servers deliver them, from
// pre-decoded tokens.
func BenchmarkParseMessage(b *testing.B) {
	for _, bc := range benchMessages {
		b.Run(bc.name, func(b *testing.B) {
			start, toks := record(b, bc.in)
			r := &replay{toks: toks}
			b.ReportAllocs()
			for b.Loop() {
				r.i = 0
				if _, err := stanza.ParseMessage(start, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParserParseMessage is BenchmarkParseMessage with one Parser for
// the whole run, as the client's tap uses it: the same parties every time.
func BenchmarkParserParseMessage(b *testing.B) {
	for _, bc := range benchMessages {
		b.Run(bc.name, func(b *testing.B) {
			start, toks := record(b, bc.in)
			r := &replay{toks: toks}
			var p stanza.Parser
			b.ReportAllocs()
			for b.Loop() {
				r.i = 0
				if _, err := p.ParseMessage(start, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseMessageDecoder includes encoding/xml decoding of the Prosody
// 1:1 chat message, for comparison.
func BenchmarkParseMessageDecoder(b *testing.B) {
	var sr strings.Reader
	b.ReportAllocs()
	for b.Loop() {
		sr.Reset(prosodyChat)
		d := xml.NewDecoder(&sr)
		tok, err := d.Token()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := stanza.ParseMessage(tok.(xml.StartElement), d); err != nil {
			b.Fatal(err)
		}
	}
}

// splitBody is a message whose 71 KB body arrives as 1,360 text nodes
// (separated by comments), as any peer can send it through a server.
var splitBody = func() string {
	var b strings.Builder
	b.WriteString(`<message xmlns='jabber:client' from='peer@example.org/x' to='me@example.org/y' id='split' type='chat'><body>`)
	chunk := strings.Repeat("x", 52)
	for i := range 1360 {
		if i > 0 {
			b.WriteString("<!---->")
		}
		b.WriteString(chunk)
	}
	b.WriteString(`</body></message>`)
	return b.String()
}()

// BenchmarkParseMessageSplitBody parses a body split into many text
// nodes: building it must take linear time.
func BenchmarkParseMessageSplitBody(b *testing.B) {
	start, toks := record(b, splitBody)
	r := &replay{toks: toks}
	b.ReportAllocs()
	for b.Loop() {
		r.i = 0
		m, err := stanza.ParseMessage(start, r)
		if err != nil {
			b.Fatal(err)
		}
		if len(m.Body) != stanza.MaxBodyLen {
			b.Fatalf("body of %d bytes", len(m.Body))
		}
	}
}
