package faultproxy_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/testkit/faultproxy"
)

// units splits data with XMPPUnits as a scanner at the end of input would.
func units(data []byte, atEOF bool) (parts []string, rest []byte) {
	for len(data) > 0 {
		adv, tok, err := faultproxy.XMPPUnits(data, atEOF)
		if err != nil || adv <= 0 {
			break
		}
		if !bytes.Equal(tok, data[:adv]) {
			panic("token is not the unit")
		}
		parts = append(parts, string(data[:adv]))
		data = data[adv:]
	}
	return parts, data
}

func TestFaultProxyXMPPUnits(t *testing.T) {
	header := `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`
	for _, tc := range []struct {
		name string
		in   string
		want []string
		rest string
	}{
		{"header", header, []string{`<?xml version='1.0'?>`, header[len(`<?xml version='1.0'?>`):]}, ""},
		{"stanzas", `<message id="a"><body>hi</body></message><r xmlns="urn:xmpp:sm:3"/>`,
			[]string{`<message id="a"><body>hi</body></message>`, `<r xmlns="urn:xmpp:sm:3"/>`}, ""},
		{"quoted brackets", `<message id='a>b'><body>x</body></message>`, []string{`<message id='a>b'><body>x</body></message>`}, ""},
		{"nested same name", `<a><a/><a></a></a>`, []string{`<a><a/><a></a></a>`}, ""},
		{"white space", "  \n<a/>", []string{"  \n", "<a/>"}, ""},
		{"close", `<a/></stream:stream>`, []string{`<a/>`, `</stream:stream>`}, ""},
		{"comment", `<!-- x > y --><a/>`, []string{`<!-- x > y -->`, `<a/>`}, ""},
		{"partial element", `<a/><message id="a"><body>h`, []string{`<a/>`}, `<message id="a"><body>h`},
		{"partial tag", `<message id="a`, nil, `<message id="a`},
		{"partial header", `<stream:stream xmlns='jabber:client'`, nil, `<stream:stream xmlns='jabber:client'`},
		{"stream-like name", `<stream:streamx></stream:streamx>`, []string{`<stream:streamx></stream:streamx>`}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rest := units([]byte(tc.in), false)
			if !slices.Equal(got, tc.want) || string(rest) != tc.rest {
				t.Errorf("units %q, rest %q; want %q, rest %q", got, rest, tc.want, tc.rest)
			}
			// At the end of input everything is returned.
			all, rest := units([]byte(tc.in), true)
			if len(rest) != 0 || !bytes.Equal([]byte(tc.in), bytes.Join(toBytes(all), nil)) {
				t.Errorf("at EOF: units %q, rest %q", all, rest)
			}
		})
	}
}

func toBytes(s []string) [][]byte {
	var b [][]byte
	for _, p := range s {
		b = append(b, []byte(p))
	}
	return b
}

// FuzzFaultProxyXMPPUnits checks that units always make progress and tile the input.
func FuzzFaultProxyXMPPUnits(f *testing.F) {
	f.Add([]byte(`<?xml version='1.0'?><stream:stream a='b'><message id="x"><body>a&lt;b</body></message>`))
	f.Add([]byte(`<a b='>'/><!-- c --></stream:stream>`))
	f.Add([]byte(`<<>>'"</`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, atEOF := range []bool{false, true} {
			parts, rest := units(data, atEOF)
			n := len(rest)
			for _, p := range parts {
				if len(p) == 0 {
					t.Fatal("empty unit")
				}
				n += len(p)
			}
			if n != len(data) || atEOF && len(rest) != 0 {
				t.Fatalf("units %q and rest %q do not tile %q", parts, rest, data)
			}
		}
	})
}
