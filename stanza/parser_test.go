package stanza_test

import (
	"encoding/xml"
	"reflect"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// parseWith runs p.ParseMessage on the first element of s (nil p: the
// package's ParseMessage).
func parseWith(t testing.TB, p *stanza.Parser, s string) (stanza.Evidence, error) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	start, ok := firstStart(d)
	if !ok {
		t.Fatalf("no start element in %q", s)
	}
	if p == nil {
		return stanza.ParseMessage(start, d)
	}
	return p.ParseMessage(start, d)
}

// sameResult fails unless a Parser gave what ParseMessage gives for in.
func sameResult(t *testing.T, p *stanza.Parser, in string) {
	t.Helper()
	want, wantErr := parseWith(t, nil, in)
	got, err := parseWith(t, p, in)
	sameErr := err == nil && wantErr == nil || err != nil && wantErr != nil && err.Error() == wantErr.Error()
	if !reflect.DeepEqual(view(&got), view(&want)) || !sameErr {
		t.Fatalf("Parser on %q:\n got %v, %v\nwant %v, %v", in, view(&got), err, view(&want), wantErr)
	}
}

// TestParserMatchesParseMessage runs one Parser over every case, twice and
// interleaved with invalid and look-alike addresses, so that its memory is
// used: it must never change a result, and must never remember a failure.
func TestParserMatchesParseMessage(t *testing.T) {
	var p stanza.Parser
	odd := []string{
		`<message from='a@b@c/' to='bob@localhost'/>`,                      // invalid from
		`<message from='bob@localhost/smoke' to='@x'/>`,                    // invalid to
		`<message from='Bob@LocalHost/smoke' to='alice@localhost/smoke'/>`, // same JID, other spelling
		`<message from='bob@localhost/Smoke' to='alice@localhost/smoke'/>`, // other resource
		`<message from='bob@localhost' to='alice@localhost'/>`,
		`<message from='localhost'/>`,
		`<message from='a@b@c/' to='bob@localhost'/>`, // invalid again, after valid ones
		`<message><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='a@b@c/' to='bob@localhost'/></forwarded></sent></message>`,
	}
	for range 3 {
		for _, tc := range parseCases {
			sameResult(t, &p, tc.in)
		}
		for _, in := range odd {
			sameResult(t, &p, in)
		}
	}
}

// FuzzParser checks that a Parser's memory never changes a result: the
// same input parsed twice with one Parser (the second time from memory)
// gives what ParseMessage gives.
func FuzzParser(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.in)
	}
	f.Add(`<message from='a@b@c/' to='bob@localhost'/>`)
	f.Add(`<message from='Bob@LocalHost/x' to='bob@localhost/x'/>`)
	f.Fuzz(func(t *testing.T, in string) {
		d := xml.NewDecoder(strings.NewReader(in))
		if _, ok := firstStart(d); !ok {
			return
		}
		var p stanza.Parser
		sameResult(t, &p, in)
		sameResult(t, &p, in)
	})
}
