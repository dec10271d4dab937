package stanza_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// Elements cut out of the Prosody and ejabberd messages in parse_test.go.
func TestExtensionRoundTrip(t *testing.T) {
	roundTrip(t, `<request xmlns='urn:xmpp:receipts'/>`, stanza.ReceiptRequest{}, `<request xmlns="urn:xmpp:receipts"></request>`)
	roundTrip(t, `<received id='kit-msg-ad890374' xmlns='urn:xmpp:receipts'/>`, stanza.Receipt{ID: "kit-msg-ad890374"},
		`<received xmlns="urn:xmpp:receipts" id="kit-msg-ad890374"></received>`)
	roundTrip(t, `<received xmlns='urn:xmpp:receipts' id='kit-msg-9673bd1c'/>`, stanza.Receipt{ID: "kit-msg-9673bd1c"}, "")
	roundTrip(t, `<markable xmlns='urn:xmpp:chat-markers:0'/>`, stanza.Markable{}, `<markable xmlns="urn:xmpp:chat-markers:0"></markable>`)
	roundTrip(t, `<displayed id='kit-msg-ad890374' xmlns='urn:xmpp:chat-markers:0'/>`,
		stanza.Marker{Type: stanza.MarkerDisplayed, ID: "kit-msg-ad890374"},
		`<displayed xmlns="urn:xmpp:chat-markers:0" id="kit-msg-ad890374"></displayed>`)
	roundTrip(t, `<received xmlns='urn:xmpp:chat-markers:0' id='m'/>`, stanza.Marker{Type: stanza.MarkerReceived, ID: "m"},
		`<received xmlns="urn:xmpp:chat-markers:0" id="m"></received>`)
	roundTrip(t, `<acknowledged xmlns='urn:xmpp:chat-markers:0' id='m'/>`, stanza.Marker{Type: stanza.MarkerAcknowledged, ID: "m"},
		`<acknowledged xmlns="urn:xmpp:chat-markers:0" id="m"></acknowledged>`)
	roundTrip(t, `<origin-id id='kit-oid-6e3f96e0' xmlns='urn:xmpp:sid:0'/>`, stanza.OriginID{ID: "kit-oid-6e3f96e0"},
		`<origin-id xmlns="urn:xmpp:sid:0" id="kit-oid-6e3f96e0"></origin-id>`)
	roundTrip(t, `<stanza-id id='SXLS9VFxZUJcd41twmXObp4o' xmlns='urn:xmpp:sid:0' by='bob@localhost'/>`,
		stanza.StanzaID{ID: "SXLS9VFxZUJcd41twmXObp4o", By: "bob@localhost"},
		`<stanza-id xmlns="urn:xmpp:sid:0" id="SXLS9VFxZUJcd41twmXObp4o" by="bob@localhost"></stanza-id>`)
	roundTrip(t, `<stanza-id by='test@conference.localhost' id='1795316702478370' xmlns='urn:xmpp:sid:0'/>`,
		stanza.StanzaID{ID: "1795316702478370", By: "test@conference.localhost"}, "")
}

func TestExtensionDecodeErrors(t *testing.T) {
	long := strings.Repeat("x", stanza.MaxIDLen+1)
	for _, tc := range []struct {
		in       string
		dec      func(string) error
		el, attr string
		want     error
	}{
		{`<request xmlns='urn:xmpp:receipt'/>`, dec[stanza.ReceiptRequest], "request", "", stanza.ErrUnexpectedElement},
		{`<received xmlns='urn:xmpp:receipts'/>`, dec[stanza.Receipt], "received", "id", stanza.ErrMissingAttr},
		{`<received xmlns='urn:xmpp:receipts' id=''/>`, dec[stanza.Receipt], "received", "id", stanza.ErrMissingAttr},
		{`<received xmlns='urn:xmpp:receipts' id='` + long + `'/>`, dec[stanza.Receipt], "received", "id", stanza.ErrIDTooLong},
		{`<received xmlns='urn:xmpp:chat-markers:0' id='x'/>`, dec[stanza.Receipt], "received", "", stanza.ErrUnexpectedElement},
		{`<markable xmlns='urn:xmpp:receipts'/>`, dec[stanza.Markable], "markable", "", stanza.ErrUnexpectedElement},
		{`<markable xmlns='urn:xmpp:chat-markers:0' id='x'/>`, dec[stanza.Marker], "markable", "", stanza.ErrUnexpectedElement},
		{`<displayed xmlns='urn:xmpp:receipts' id='x'/>`, dec[stanza.Marker], "displayed", "", stanza.ErrUnexpectedElement},
		{`<displayed xmlns='urn:xmpp:chat-markers:0'/>`, dec[stanza.Marker], "displayed", "id", stanza.ErrMissingAttr},
		{`<displayed xmlns='urn:xmpp:chat-markers:0' id='` + long + `'/>`, dec[stanza.Marker], "displayed", "id", stanza.ErrIDTooLong},
		{`<origin-id xmlns='urn:xmpp:sid:0'/>`, dec[stanza.OriginID], "origin-id", "id", stanza.ErrMissingAttr},
		{`<origin-id xmlns='urn:xmpp:sid:0' id='` + long + `'/>`, dec[stanza.OriginID], "origin-id", "id", stanza.ErrIDTooLong},
		{`<stanza-id xmlns='urn:xmpp:sid:0' id='a'/>`, dec[stanza.StanzaID], "stanza-id", "by", stanza.ErrMissingAttr},
		{`<stanza-id xmlns='urn:xmpp:sid:0' by='a'/>`, dec[stanza.StanzaID], "stanza-id", "id", stanza.ErrMissingAttr},
		{`<stanza-id xmlns='urn:xmpp:sid:0' id='a' by='` + long + `'/>`, dec[stanza.StanzaID], "stanza-id", "by", stanza.ErrIDTooLong},
		{`<origin-id xmlns='urn:xmpp:sid:0' id='a'/>`, dec[stanza.StanzaID], "origin-id", "", stanza.ErrUnexpectedElement},
	} {
		err := tc.dec(tc.in)
		var fe *stanza.FieldError
		if !errors.Is(err, tc.want) || !errors.As(err, &fe) || fe.Element != tc.el || fe.Attr != tc.attr {
			t.Errorf("%.100s: error = %#v; want *FieldError{%q, %q} wrapping %v", tc.in, err, tc.el, tc.attr, tc.want)
		}
	}
}

func TestStringers(t *testing.T) {
	for typ, want := range map[stanza.MarkerType]string{0: "", stanza.MarkerDisplayed: "displayed",
		stanza.MarkerReceived: "received", stanza.MarkerAcknowledged: "acknowledged", 99: ""} {
		if got := typ.String(); got != want {
			t.Errorf("MarkerType(%d).String() = %q; want %q", typ, got, want)
		}
	}
	for k, want := range map[stanza.CarbonKind]string{stanza.CarbonNone: "none", stanza.CarbonSent: "sent", stanza.CarbonReceived: "received"} {
		if got := k.String(); got != want {
			t.Errorf("CarbonKind(%d).String() = %q; want %q", k, got, want)
		}
	}
	// A marker of unknown type encodes as displayed.
	if got := encodeAll(t, stanza.Marker{Type: 99, ID: "x"}); got != `<displayed xmlns="urn:xmpp:chat-markers:0" id="x"></displayed>` {
		t.Errorf("unknown marker type encodes as %s", got)
	}
}

func TestFieldErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		e    *stanza.FieldError
		want string
	}{
		{&stanza.FieldError{Element: "a", Attr: "h", Err: stanza.ErrInvalidH}, "stanza: <a/> attribute h: h is not an unsignedInt"},
		{&stanza.FieldError{Element: "thread", Err: stanza.ErrIDTooLong}, "stanza: <thread/>: identifier longer than MaxIDLen"},
		{&stanza.FieldError{Attr: "h", Err: stanza.ErrInvalidH}, "stanza: attribute h: h is not an unsignedInt"},
		{&stanza.FieldError{Element: "x", Err: errors.New("other")}, "stanza: <x/>: other"},
		{&stanza.FieldError{Element: "x"}, "stanza: <x/>: invalid"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q; want %q", got, tc.want)
		}
	}
}
