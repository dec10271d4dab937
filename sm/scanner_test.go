package sm

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// rec is what a test sink records for one element.
type rec struct {
	kind         kind
	id, to       string
	hasID, hasTo bool
	raw          string
}

func (r rec) String() string {
	return fmt.Sprintf("{%d id=%q(%v) to=%q(%v) raw=%q}", r.kind, r.id, r.hasID, r.to, r.hasTo, r.raw)
}

type recSink struct {
	got []rec
	lim *LimitError
}

func (s *recSink) limit(err *LimitError) { s.lim = err }

func (s *recSink) element(e *element) {
	r := rec{kind: e.kind}
	if e.kind == kindStreamStart || e.kind == kindStreamEnd {
		s.got = append(s.got, r)
		return
	}
	r.raw = string(e.raw)
	if e.id != nil {
		r.hasID, r.id = true, string(unescape(nil, e.id))
	}
	if e.to != nil {
		r.hasTo, r.to = true, string(unescape(nil, e.to))
	}
	s.got = append(s.got, r)
}

// scanChunks feeds data to a new scanner in chunks whose sizes come from
// rng (1..maxChunk bytes; all at once when rng is nil).
func scanChunks(data []byte, capture bool, rng *rand.Rand, maxChunk int) []rec {
	var s recSink
	sc := newScanner(&s, capture)
	for len(data) > 0 {
		n := len(data)
		if rng != nil {
			n = min(n, 1+rng.IntN(maxChunk))
		}
		if k, err := sc.Write(data[:n]); k != n || err != nil {
			panic("scanner.Write must consume everything")
		}
		data = data[n:]
	}
	return s.got
}

// refScan finds the top-level elements of data with encoding/xml, treating
// every <stream:stream> start tag as a (re)start of the stream the way the
// scanner does. ok is false when encoding/xml rejects the input.
func refScan(data []byte, capture bool) (out []rec, ok bool) {
	d := xml.NewDecoder(bytes.NewReader(data))
	depth := 0
	headers := 0
	var cur rec
	var start int64
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			return out, depth == 0
		}
		if err != nil {
			// Unclosed stream headers end the input with "unexpected EOF";
			// that is the normal state of a live stream.
			if depth == 0 && strings.HasSuffix(err.Error(), "unexpected EOF") && d.InputOffset() == int64(len(data)) {
				return out, true
			}
			return nil, false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == nsStream && t.Name.Local == "stream" {
				headers++
				if headers > maxScopes || depth != 0 {
					return nil, false
				}
				out = append(out, rec{kind: kindStreamStart})
				continue
			}
			if depth == 0 {
				start = off
				cur = rec{kind: refKind(t.Name)}
				for _, a := range t.Attr {
					if a.Name.Space != "" {
						continue
					}
					switch a.Name.Local {
					case "id":
						cur.hasID, cur.id = true, a.Value
					case "to":
						cur.hasTo, cur.to = true, a.Value
					}
				}
				cur.raw = string(data[start:d.InputOffset()])
			}
			depth++
		case xml.EndElement:
			if depth == 0 {
				out = append(out, rec{kind: kindStreamEnd})
				continue
			}
			depth--
			if depth == 0 {
				if capture && cur.kind.isStanza() || cur.kind == kindStreamError {
					cur.raw = string(data[start:d.InputOffset()])
					if !capture && len(cur.raw) > maxTagLen {
						cur.raw = cur.raw[:maxTagLen]
					}
				}
				out = append(out, cur)
			}
		}
	}
}

func refKind(n xml.Name) kind {
	switch n.Space {
	case nsClient, nsServer:
		switch n.Local {
		case "message":
			return kindMessage
		case "presence":
			return kindPresence
		case "iq":
			return kindIQ
		}
	case NS:
		switch n.Local {
		case "r":
			return kindR
		case "a":
			return kindA
		case "enable":
			return kindEnable
		case "enabled":
			return kindEnabled
		case "resume":
			return kindResume
		case "resumed":
			return kindResumed
		case "failed":
			return kindFailed
		}
	case nsStream:
		if n.Local == "error" {
			return kindStreamError
		}
	}
	return kindOther
}

const (
	testHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='example.net'>`
)

func TestScanner(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []rec
	}{
		{
			name: "message with nasty attributes",
			in:   testHeader + `<message to="a@b/c&amp;d" id='x&gt;/&apos;&#39;&#x41;"'><body>a &lt; b</body></message>`,
			want: []rec{
				{kind: kindStreamStart},
				{kind: kindMessage, hasID: true, id: `x>/''A"`, hasTo: true, to: "a@b/c&d",
					raw: `<message to="a@b/c&amp;d" id='x&gt;/&apos;&#39;&#x41;"'><body>a &lt; b</body></message>`},
			},
		},
		{
			name: "stream error, buffered whole",
			in: testHeader + `<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>` +
				`<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>slow down</text></stream:error></stream:stream>`,
			want: []rec{
				{kind: kindStreamStart},
				{kind: kindStreamError, raw: `<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>` +
					`<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>slow down</text></stream:error>`},
				{kind: kindStreamEnd},
			},
		},
		{
			name: "literal > and / in attribute values",
			in:   testHeader + `<iq type='get' id='a>b/' to="x/>"/>`,
			want: []rec{
				{kind: kindStreamStart},
				{kind: kindIQ, hasID: true, id: "a>b/", hasTo: true, to: "x/>", raw: `<iq type='get' id='a>b/' to="x/>"/>`},
			},
		},
		{
			name: "sm elements, plain and prefixed",
			in: testHeader + `<r xmlns='urn:xmpp:sm:3'/><a xmlns="urn:xmpp:sm:3" h="3"></a>` +
				`<sm:r xmlns:sm='urn:xmpp:sm:3'/><enabled xmlns='urn:xmpp:sm:3' id='s1' resume='true'/>`,
			want: []rec{
				{kind: kindStreamStart},
				{kind: kindR, raw: `<r xmlns='urn:xmpp:sm:3'/>`},
				{kind: kindA, raw: `<a xmlns="urn:xmpp:sm:3" h="3">`},
				{kind: kindR, raw: `<sm:r xmlns:sm='urn:xmpp:sm:3'/>`},
				{kind: kindEnabled, hasID: true, id: "s1", raw: `<enabled xmlns='urn:xmpp:sm:3' id='s1' resume='true'/>`},
			},
		},
		{
			name: "nested stanza names and other namespaces do not count",
			in: testHeader + `<stream:features><sm xmlns='urn:xmpp:sm:3'/><message/></stream:features>` +
				`<foo xmlns='urn:x'><message/></foo><message xmlns='urn:other'/>`,
			want: []rec{
				{kind: kindStreamStart},
				{kind: kindOther, raw: `<stream:features>`},
				{kind: kindOther, raw: `<foo xmlns='urn:x'>`},
				{kind: kindOther, raw: `<message xmlns='urn:other'/>`},
			},
		},
		{
			name: "cdata comments PIs and keepalives",
			in: testHeader + " \n\t<!-- <message> --> <?pi </x> ?>" +
				`<message id='m'><body><![CDATA[</message><r/>]]]]></body><!-- </message> --></message>  `,
			want: []rec{
				{kind: kindStreamStart},
				{kind: kindMessage, hasID: true, id: "m",
					raw: `<message id='m'><body><![CDATA[</message><r/>]]]]></body><!-- </message> --></message>`},
			},
		},
		{
			name: "stream restart and close",
			in:   testHeader + `<presence/>` + testHeader + `<presence id='2'/></stream:stream>`,
			want: []rec{
				{kind: kindStreamStart},
				{kind: kindPresence, raw: `<presence/>`},
				{kind: kindStreamStart},
				{kind: kindPresence, hasID: true, id: "2", raw: `<presence id='2'/>`},
				{kind: kindStreamEnd},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for chunk := 1; chunk <= len(tc.in); chunk++ {
				var s recSink
				sc := newScanner(&s, true)
				for in := []byte(tc.in); len(in) > 0; {
					n := min(chunk, len(in))
					sc.Write(in[:n])
					in = in[n:]
				}
				if fmt.Sprint(s.got) != fmt.Sprint(tc.want) {
					t.Fatalf("chunk %d:\ngot  %v\nwant %v", chunk, s.got, tc.want)
				}
			}
			ref, ok := refScan([]byte(tc.in), true)
			if !ok || fmt.Sprint(ref) != fmt.Sprint(tc.want) {
				t.Fatalf("encoding/xml disagrees with the table (ok=%v):\n%v", ok, ref)
			}
		})
	}
}

func TestScannerTruncatesHugeInboundTags(t *testing.T) {
	var s recSink
	sc := newScanner(&s, false)
	sc.Write([]byte(testHeader + `<message id='x' to='y' pad='`))
	pad := bytes.Repeat([]byte("z"), 4*maxTagLen)
	sc.Write(pad)
	sc.Write([]byte(`'><body/></message><r xmlns='urn:xmpp:sm:3'/>`))
	if len(s.got) != 3 || s.got[1].kind != kindMessage || s.got[1].id != "x" || s.got[2].kind != kindR {
		t.Fatalf("got %v", s.got)
	}
	if len(sc.buf) > maxTagLen {
		t.Fatalf("buffer grew to %d", len(sc.buf))
	}
}

// genStream builds a random well-formed XMPP stream with the constructs
// that break naive scanners.
func genStream(rng *rand.Rand) []byte {
	var b bytes.Buffer
	q := func() byte {
		if rng.IntN(2) == 0 {
			return '\''
		}
		return '"'
	}
	sp := func() string { return []string{"", " ", "\n", "\t ", "  "}[rng.IntN(5)] }
	attrVals := []string{
		"plain", "a>b", "a/b/", "/>", "x&amp;y", "&lt;/message&gt;", "&#39;&#x22;&quot;&apos;",
		"&#x10FFFF;", "", "r@e/s", "%s",
	}
	attr := func(name string) string {
		v := attrVals[rng.IntN(len(attrVals))]
		if v == "%s" {
			v = fmt.Sprintf("id-%d", rng.IntN(1e6))
		}
		c := q()
		// A quote character of the other kind may appear literally.
		if rng.IntN(4) == 0 {
			if c == '\'' {
				v += `"`
			} else {
				v += `'`
			}
		}
		return fmt.Sprintf(" %s%s=%s%c%s%c", name, sp(), sp(), c, v, c)
	}
	header := func() {
		if rng.IntN(2) == 0 {
			b.WriteString("<?xml version='1.0'?>")
		}
		fmt.Fprintf(&b, "<stream:stream xmlns=%cjabber:client%c xmlns:stream='http://etherx.jabber.org/streams'%s version='1.0'%s>",
			'\'', '\'', attr("to"), sp())
	}
	var child func(depth int)
	child = func(depth int) {
		switch rng.IntN(7) {
		case 0:
			b.WriteString("text &amp; &lt;more&gt; / > ")
		case 1:
			b.WriteString("<![CDATA[ </message> <r/> ]] ]]>")
		case 2:
			b.WriteString("<!-- </message> <r/> - > -->")
		case 3:
			b.WriteString("<?pi </message> > ?>")
		case 4:
			fmt.Fprintf(&b, "<x%s%s/>", attr("id"), sp())
		default:
			if depth > 3 {
				b.WriteString("<leaf/>")
				return
			}
			name := []string{"body", "message", "iq", "x", "r"}[rng.IntN(5)]
			fmt.Fprintf(&b, "<%s%s>", name, attr("a"))
			for i := rng.IntN(3); i > 0; i-- {
				child(depth + 1)
			}
			fmt.Fprintf(&b, "</%s%s>", name, sp())
		}
	}
	header()
	for n := 1 + rng.IntN(12); n > 0; n-- {
		switch rng.IntN(10) {
		case 0:
			b.WriteString([]string{" ", "\n", "\r\n", "\t"}[rng.IntN(4)])
		case 1:
			b.WriteString("<!-- keep > alive / -->")
		case 2:
			fmt.Fprintf(&b, "<r xmlns='urn:xmpp:sm:3'%s/>", sp())
		case 3:
			fmt.Fprintf(&b, "<sm:a xmlns:sm='urn:xmpp:sm:3' h='%d'></sm:a>", rng.IntN(100))
		case 4:
			if rng.IntN(3) == 0 {
				header() // stream restart
			} else {
				b.WriteString("<stream:features><sm xmlns='urn:xmpp:sm:3'/><message/></stream:features>")
			}
		default:
			name := []string{"message", "presence", "iq"}[rng.IntN(3)]
			var attrs string
			for i := rng.IntN(4); i > 0; i-- {
				attrs += attr([]string{"id", "to", "type", "xml:lang"}[rng.IntN(4)])
			}
			if strings.Count(attrs, " id") > 1 || strings.Count(attrs, " to") > 1 || strings.Count(attrs, "xml:lang") > 1 {
				attrs = attr("id")
			}
			if rng.IntN(4) == 0 {
				fmt.Fprintf(&b, "<%s%s%s/>", name, attrs, sp())
				continue
			}
			fmt.Fprintf(&b, "<%s%s>", name, attrs)
			for i := rng.IntN(4); i > 0; i-- {
				child(0)
			}
			fmt.Fprintf(&b, "</%s>", name)
		}
	}
	if rng.IntN(2) == 0 {
		b.WriteString("</stream:stream>")
	}
	return b.Bytes()
}

func TestScannerMatchesEncodingXML(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		data := genStream(rng)
		for _, capture := range []bool{false, true} {
			want, ok := refScan(data, capture)
			if !ok {
				t.Fatalf("stream %d is not well-formed for encoding/xml:\n%s", i, data)
			}
			got := scanChunks(data, capture, rng, 7)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("stream %d (capture=%v):\n%s\ngot  %v\nwant %v", i, capture, data, got, want)
			}
		}
	}
}

func FuzzScanner(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		f.Add(genStream(rng), uint64(rng.Uint32()))
	}
	f.Add([]byte(testHeader+`<message id='a>'><![CDATA[</message>]]></message>`), uint64(1))
	f.Add([]byte(testHeader+`<iq id="/>" to='&#x2F;&gt;'/><!-- --><?x?>`), uint64(7))
	f.Add([]byte("<!DOCTYPE x [<!ENTITY a 'b>'>]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>"), uint64(9))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>7))
		for _, capture := range []bool{false, true} {
			got := scanChunks(data, capture, rng, 1+int(seed%64))
			want, ok := refScan(data, capture)
			if !ok {
				continue // not well-formed: the scanner only has to survive it
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("capture=%v:\n%q\ngot  %v\nwant %v", capture, data, got, want)
			}
		}
	})
}
