package sm

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"

	"mellium.im/xmpp/stream"
)

func TestParseStreamError(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      stream.Error
		text      string
	}{
		{"prosody", `<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>slow down</text></stream:error>`,
			stream.PolicyViolation, "slow down"},
		{"declared prefix", `<s:error xmlns:s='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></s:error>`,
			stream.Conflict, ""},
		{"cut at the buffer bound", `<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>` + strings.Repeat("x", 100),
			stream.PolicyViolation, ""},
		{"no condition", `<stream:error></stream:error>`, stream.UndefinedCondition, ""},
		{"garbage", `<stream:error><`, stream.UndefinedCondition, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parseStreamError([]byte(tc.raw))
			var se stream.Error
			if !errors.As(err, &se) || se.Err != tc.want.Err {
				t.Fatalf("got %#v, want %s", err, tc.want.Err)
			}
			if tc.text != "" && (len(se.Text) == 0 || se.Text[0].Value != tc.text) {
				t.Fatalf("text %+v, want %q", se.Text, tc.text)
			}
		})
	}
}

// TestServeReturnsServerStreamError: the server sends a stream error and
// closes the connection at once. mellium's Serve then fails to write its
// reply and reports that write; State.Serve reports the server's error.
func TestServeReturnsServerStreamError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		c.sc.raw(`<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>` +
			`<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>slow down</text></stream:error></stream:stream>`)
		c.sc.conn.closeWhenDrained()
		<-c.served
		if !errors.Is(c.serveEr, stream.PolicyViolation) {
			t.Fatalf("Serve: %v", c.serveEr)
		}
		c.conn.Close()
	})
}
