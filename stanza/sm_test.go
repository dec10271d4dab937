package stanza_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/stanza"
	xstanza "mellium.im/xmpp/stanza"
)

// Bytes as Prosody 0.12.3 and ejabberd 23.01 send them (captured on loopback).
const (
	prosodyEnabled  = `<enabled id='OQfkUrMcMi8I' max='600' xmlns='urn:xmpp:sm:3' resume='true'/>`
	ejabberdEnabled = `<enabled resume='true' max='300' id='g2gCbQAAAAVzbW9rZW0AAAAIIxM4CprPXxw=' xmlns='urn:xmpp:sm:3'/>`
	prosodyResumed  = `<resumed h='4' xmlns='urn:xmpp:sm:3' previd='OQfkUrMcMi8I'/>`
	ejabberdResumed = `<resumed previd='g2gCbQAAAAVzbW9rZW0AAAAIIxM4CprPXxw=' h='4' xmlns='urn:xmpp:sm:3'/>`
	prosodyFailed   = `<failed xmlns='urn:xmpp:sm:3' h='3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`
	prosodyFinalAck = `<a xmlns='urn:xmpp:sm:3' h='2'/>`
)

func TestEnableRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		want    stanza.Enable
	}{
		{`<enable xmlns='urn:xmpp:sm:3'/>`, `<enable xmlns="urn:xmpp:sm:3"></enable>`, stanza.Enable{}},
		{`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`, `<enable xmlns="urn:xmpp:sm:3" resume="true"></enable>`, stanza.Enable{Resume: true}},
		{`<enable xmlns='urn:xmpp:sm:3' resume='1' max='600'/>`, `<enable xmlns="urn:xmpp:sm:3" resume="true" max="600"></enable>`, stanza.Enable{Resume: true, Max: 600}},
		{`<enable xmlns='urn:xmpp:sm:3' resume='false'/>`, `<enable xmlns="urn:xmpp:sm:3"></enable>`, stanza.Enable{}},
		{`<enable xmlns='urn:xmpp:sm:3' resume='0' max='4294967295'/>`, `<enable xmlns="urn:xmpp:sm:3" max="4294967295"></enable>`, stanza.Enable{Max: 4294967295}},
	} {
		t.Run(tc.in, func(t *testing.T) { roundTrip(t, tc.in, tc.want, tc.out) })
	}
}

func TestEnabledRoundTrip(t *testing.T) {
	long := strings.Repeat("x", stanza.MaxIDLen)
	for _, tc := range []struct {
		in, out string
		want    stanza.Enabled
	}{
		{prosodyEnabled, `<enabled xmlns="urn:xmpp:sm:3" id="OQfkUrMcMi8I" resume="true" max="600"></enabled>`,
			stanza.Enabled{ID: "OQfkUrMcMi8I", Resume: true, Max: 600}},
		{ejabberdEnabled, `<enabled xmlns="urn:xmpp:sm:3" id="g2gCbQAAAAVzbW9rZW0AAAAIIxM4CprPXxw=" resume="true" max="300"></enabled>`,
			stanza.Enabled{ID: "g2gCbQAAAAVzbW9rZW0AAAAIIxM4CprPXxw=", Resume: true, Max: 300}},
		// XEP-0198 1.6.2: id without resume means no resumption.
		{`<enabled xmlns='urn:xmpp:sm:3' id='abc'/>`, `<enabled xmlns="urn:xmpp:sm:3" id="abc"></enabled>`, stanza.Enabled{ID: "abc"}},
		{`<enabled xmlns='urn:xmpp:sm:3'/>`, `<enabled xmlns="urn:xmpp:sm:3"></enabled>`, stanza.Enabled{}},
		{`<enabled xmlns='urn:xmpp:sm:3' id='x' resume='1' location='[2001:db8::1]:5222'/>`,
			`<enabled xmlns="urn:xmpp:sm:3" id="x" resume="true" location="[2001:db8::1]:5222"></enabled>`,
			stanza.Enabled{ID: "x", Resume: true, Location: "[2001:db8::1]:5222"}},
		{`<enabled xmlns='urn:xmpp:sm:3' resume='true' id='` + long + `'/>`, "", stanza.Enabled{ID: long, Resume: true}},
	} {
		t.Run(tc.in[:min(len(tc.in), 80)], func(t *testing.T) { roundTrip(t, tc.in, tc.want, tc.out) })
	}
}

func TestResumeRoundTrip(t *testing.T) {
	roundTrip(t, `<resume xmlns='urn:xmpp:sm:3' previd='OQfkUrMcMi8I' h='0'/>`,
		stanza.Resume{PrevID: "OQfkUrMcMi8I"}, `<resume xmlns="urn:xmpp:sm:3" previd="OQfkUrMcMi8I" h="0"></resume>`)
	roundTrip(t, `<resume h='4294967295' previd='a&amp;b' xmlns='urn:xmpp:sm:3'/>`,
		stanza.Resume{PrevID: "a&b", H: 4294967295}, `<resume xmlns="urn:xmpp:sm:3" previd="a&amp;b" h="4294967295"></resume>`)
}

func TestResumedRoundTrip(t *testing.T) {
	roundTrip(t, prosodyResumed, stanza.Resumed{PrevID: "OQfkUrMcMi8I", H: 4},
		`<resumed xmlns="urn:xmpp:sm:3" previd="OQfkUrMcMi8I" h="4"></resumed>`)
	roundTrip(t, ejabberdResumed, stanza.Resumed{PrevID: "g2gCbQAAAAVzbW9rZW0AAAAIIxM4CprPXxw=", H: 4}, "")
}

func TestFailedRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		want    stanza.Failed
	}{
		{prosodyFailed, `<failed xmlns="urn:xmpp:sm:3" h="3"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"></item-not-found></failed>`,
			stanza.Failed{H: 3, HasH: true, Condition: xstanza.ItemNotFound}},
		{`<failed xmlns='urn:xmpp:sm:3'/>`, `<failed xmlns="urn:xmpp:sm:3"></failed>`, stanza.Failed{}},
		{`<failed xmlns='urn:xmpp:sm:3' h='0'/>`, `<failed xmlns="urn:xmpp:sm:3" h="0"></failed>`, stanza.Failed{HasH: true}},
		{`<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`, "",
			stanza.Failed{Condition: xstanza.UnexpectedRequest}},
		// text first, foreign children and a second condition are ignored.
		{`<failed xmlns='urn:xmpp:sm:3'><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>x</text><x xmlns='y'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></x><feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'><a/></feature-not-implemented><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`, "",
			stanza.Failed{Condition: xstanza.FeatureNotImplemented}},
		// Unknown conditions are undefined-condition (RFC 6120 §8.3.2).
		{`<failed xmlns='urn:xmpp:sm:3' h='1'><made-up xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`, "",
			stanza.Failed{H: 1, HasH: true, Condition: xstanza.UndefinedCondition}},
	} {
		t.Run(tc.in, func(t *testing.T) { roundTrip(t, tc.in, tc.want, tc.out) })
	}
}

func TestAckRoundTrip(t *testing.T) {
	roundTrip(t, prosodyFinalAck, stanza.Ack{H: 2}, `<a xmlns="urn:xmpp:sm:3" h="2"></a>`)
	roundTrip(t, `<a h='0' xmlns='urn:xmpp:sm:3'/>`, stanza.Ack{}, `<a xmlns="urn:xmpp:sm:3" h="0"></a>`)
	roundTrip(t, `<a h='004294967295' xmlns='urn:xmpp:sm:3'/>`, stanza.Ack{H: 4294967295}, `<a xmlns="urn:xmpp:sm:3" h="4294967295"></a>`)
	roundTrip(t, `<r xmlns='urn:xmpp:sm:3'/>`, stanza.AckRequest{}, `<r xmlns="urn:xmpp:sm:3"></r>`)
}

var badH = []string{"", " ", "-1", "-01", "+", "-", "++1", "+-0", "-+0", "+ 1", "1 2", "1.0", "1e3", "0x10",
	"abc", "4294967296", "+4294967296", "99999999999999999999", "١", "１", "1_000", "\u00a01", "1\u3000"}

func TestParseH(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
	}{{"0", 0}, {"1", 1}, {"00", 0}, {"0042", 42}, {"4294967295", 4294967295}, {"0004294967295", 4294967295},
		// The rest of xs:unsignedInt's lexical space: a '+' sign, a '-'
		// sign on zero, surrounding XML white space (whiteSpace collapse).
		{"+1", 1}, {"+0", 0}, {"+0042", 42}, {"+4294967295", 4294967295}, {"-0", 0}, {"-000", 0},
		{" 1", 1}, {"1 ", 1}, {"\t1", 1}, {"1\n", 1}, {"\r\n +7\t ", 7}} {
		got, err := stanza.ParseH(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseH(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range badH {
		_, err := stanza.ParseH(in)
		var fe *stanza.FieldError
		if !errors.Is(err, stanza.ErrInvalidH) || !errors.As(err, &fe) || fe.Attr != "h" {
			t.Errorf("ParseH(%q) error = %v; want *FieldError{Attr: h} wrapping ErrInvalidH", in, err)
		}
	}
}

func TestBadH(t *testing.T) {
	for _, h := range badH {
		for _, tc := range []struct {
			el  string
			dec func(string) error
		}{
			{`<a xmlns='urn:xmpp:sm:3' h='%'/>`, func(s string) error { _, err := decode[stanza.Ack](s); return err }},
			{`<resume xmlns='urn:xmpp:sm:3' previd='p' h='%'/>`, func(s string) error { _, err := decode[stanza.Resume](s); return err }},
			{`<resumed xmlns='urn:xmpp:sm:3' previd='p' h='%'/>`, func(s string) error { _, err := decode[stanza.Resumed](s); return err }},
			{`<failed xmlns='urn:xmpp:sm:3' h='%'/>`, func(s string) error { _, err := decode[stanza.Failed](s); return err }},
		} {
			in := strings.Replace(tc.el, "%", h, 1)
			err := tc.dec(in)
			var fe *stanza.FieldError
			if !errors.Is(err, stanza.ErrInvalidH) || !errors.As(err, &fe) || fe.Attr != "h" || fe.Element == "" {
				t.Errorf("%s: error = %v; want *FieldError naming the element and h, wrapping ErrInvalidH", in, err)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, "<"+fe.Element+"/>") || !strings.Contains(msg, "attribute h") {
				t.Errorf("%s: message %q does not name element and attribute", in, msg)
			}
		}
	}
}

func TestSMDecodeErrors(t *testing.T) {
	long := strings.Repeat("x", stanza.MaxIDLen+1)
	for _, tc := range []struct {
		in       string
		dec      func(string) error
		el, attr string
		want     error
	}{
		{`<a xmlns='urn:xmpp:sm:3'/>`, dec[stanza.Ack], "a", "h", stanza.ErrMissingAttr},
		{`<a xmlns='urn:xmpp:sm:2' h='1'/>`, dec[stanza.Ack], "a", "", stanza.ErrUnexpectedElement},
		{`<r xmlns='urn:xmpp:sm:2'/>`, dec[stanza.AckRequest], "r", "", stanza.ErrUnexpectedElement},
		{`<b xmlns='urn:xmpp:sm:3' h='1'/>`, dec[stanza.Ack], "b", "", stanza.ErrUnexpectedElement},
		{`<resume xmlns='urn:xmpp:sm:3' h='1'/>`, dec[stanza.Resume], "resume", "previd", stanza.ErrMissingAttr},
		{`<resume xmlns='urn:xmpp:sm:3' previd='' h='1'/>`, dec[stanza.Resume], "resume", "previd", stanza.ErrMissingAttr},
		{`<resume xmlns='urn:xmpp:sm:3' previd='p'/>`, dec[stanza.Resume], "resume", "h", stanza.ErrMissingAttr},
		{`<resume xmlns='urn:xmpp:sm:3' previd='` + long + `' h='1'/>`, dec[stanza.Resume], "resume", "previd", stanza.ErrIDTooLong},
		{`<resumed xmlns='urn:xmpp:sm:3' previd='p'/>`, dec[stanza.Resumed], "resumed", "h", stanza.ErrMissingAttr},
		{`<resumed xmlns='urn:xmpp:sm:3' h='1'/>`, dec[stanza.Resumed], "resumed", "previd", stanza.ErrMissingAttr},
		{`<resumed xmlns='urn:xmpp:sm:3' previd='` + long + `' h='1'/>`, dec[stanza.Resumed], "resumed", "previd", stanza.ErrIDTooLong},
		{`<enabled xmlns='urn:xmpp:sm:3' resume='true' id='` + long + `'/>`, dec[stanza.Enabled], "enabled", "id", stanza.ErrIDTooLong},
		{`<enabled xmlns='urn:xmpp:sm:3' location='` + long + `'/>`, dec[stanza.Enabled], "enabled", "location", stanza.ErrIDTooLong},
		{`<enabled xmlns='urn:xmpp:sm:3' resume='true'/>`, dec[stanza.Enabled], "enabled", "id", stanza.ErrMissingAttr},
		{`<enabled xmlns='urn:xmpp:sm:3' id='a' resume='yes'/>`, dec[stanza.Enabled], "enabled", "resume", stanza.ErrInvalidAttr},
		{`<enabled xmlns='urn:xmpp:sm:3' id='a' max='-1'/>`, dec[stanza.Enabled], "enabled", "max", stanza.ErrInvalidAttr},
		{`<enable xmlns='urn:xmpp:sm:3' resume='True'/>`, dec[stanza.Enable], "enable", "resume", stanza.ErrInvalidAttr},
		{`<enable xmlns='urn:xmpp:sm:3' resume=''/>`, dec[stanza.Enable], "enable", "resume", stanza.ErrInvalidAttr},
		{`<enable xmlns='urn:xmpp:sm:3' max='4294967296'/>`, dec[stanza.Enable], "enable", "max", stanza.ErrInvalidAttr},
		{`<failed xmlns='urn:xmpp:sm:3' h=''/>`, dec[stanza.Failed], "failed", "h", stanza.ErrInvalidH},
	} {
		err := tc.dec(tc.in)
		var fe *stanza.FieldError
		if !errors.Is(err, tc.want) || !errors.As(err, &fe) || fe.Element != tc.el || fe.Attr != tc.attr {
			t.Errorf("%.100s: error = %#v; want *FieldError{%q, %q} wrapping %v", tc.in, err, tc.el, tc.attr, tc.want)
		}
	}
}

func dec[T any, PT decodable[T]](s string) error {
	_, err := decode[T, PT](s)
	return err
}

// A decode error must leave the decoder after the element so that the rest of
// the stream can be read.
func TestDecodeErrorConsumesElement(t *testing.T) {
	d := xmlDecoder(`<x><a xmlns='urn:xmpp:sm:3' h='bad'><junk/></a><a xmlns='urn:xmpp:sm:3' h='7'/></x>`)
	if _, err := d.Token(); err != nil {
		t.Fatal(err)
	}
	var a stanza.Ack
	if err := d.Decode(&a); !errors.Is(err, stanza.ErrInvalidH) {
		t.Fatalf("first: %v", err)
	}
	if err := d.Decode(&a); err != nil || a.H != 7 {
		t.Fatalf("second: %v %v", a, err)
	}
}
