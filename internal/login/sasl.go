package login

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
)

const (
	nsSASL     = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsStartTLS = "urn:ietf:params:xml:ns:xmpp-tls"
	// nsSASLCB is XEP-0440 (SASL Channel-Binding Type Capability).
	nsSASLCB = "urn:xmpp:sasl-cb:0"
)

// Channel binding types (RFC 5929, RFC 9266) as mellium.im/sasl v0.3.2 uses
// them: tls-unique up to TLS 1.2, tls-exporter on TLS 1.3.
const (
	bindingUnique   = "tls-unique"
	bindingExporter = "tls-exporter"
)

// mechanismsFor returns the SASL mechanisms to offer on a connection, most
// preferred first.
//
// Channel binding policy. mellium.im/sasl binds SCRAM-*-PLUS with
// tls-unique below TLS 1.3 and with tls-exporter on TLS 1.3; SCRAM has no way
// to say which type the client picked, so a server that supports only the
// other one fails the exchange. ejabberd 23.01 does exactly that: it offers
// SCRAM-SHA-1-PLUS over TLS 1.3 but knows only tls-unique (which RFC 9266
// leaves undefined for TLS 1.3) and answers "Invalid channel binding". So a
// -PLUS mechanism is used only when the binding it would use is known to work:
//
//   - TLS 1.3: only if the server announces tls-exporter with XEP-0440.
//   - TLS 1.2 and below: if the server announces tls-unique with XEP-0440, or
//     announces nothing (tls-unique is the historical default), and the
//     handshake produced tls-unique data.
//   - No TLS: never.
//
// Otherwise the plain SCRAM variants are used, with the gs2 flag "n".
//
// Rejected alternative: try -PLUS and reconnect without it on failure. It
// gains nothing against the attacker channel binding is for (one holding a
// certificate the client trusts can make the first attempt fail and get the
// fallback), costs a failed login on the server (lockout counters, logs) and
// a second connection on every login. Gating also leaves channel binding to
// the server's own announcement, which the attacker above can strip as well:
// RequireChannelBinding is the answer for deployments that need it; it turns
// "no usable binding" into ErrNoChannelBinding instead of a silent fallback.
func mechanismsFor(cs tls.ConnectionState, cbTypes []string, cbAnnounced, requireCB bool) ([]sasl.Mechanism, error) {
	if cs.Version == 0 {
		if requireCB {
			return nil, fmt.Errorf("%w: the connection has no TLS", ErrNoChannelBinding)
		}
		return []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1}, nil
	}
	binding := bindingUnique
	if cs.Version >= tls.VersionTLS13 {
		binding = bindingExporter
	}
	var usable bool
	switch {
	case cbAnnounced:
		usable = slices.Contains(cbTypes, binding) && (binding != bindingUnique || len(cs.TLSUnique) > 0)
	case binding == bindingUnique:
		usable = len(cs.TLSUnique) > 0
	}
	var mechs []sasl.Mechanism
	if usable {
		mechs = append(mechs, sasl.ScramSha256Plus, sasl.ScramSha1Plus)
	}
	if requireCB {
		if !usable {
			return nil, fmt.Errorf("%w: %s would bind with %s, which the server does not announce (XEP-0440: %v)",
				ErrNoChannelBinding, tls.VersionName(cs.Version), binding, cbTypes)
		}
		return mechs, nil
	}
	return append(mechs, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain), nil
}

// channelBindingFeature parses the XEP-0440 <sasl-channel-binding/> feature
// (informational: Negotiate is nil) so that the authenticator can read the
// announced types with Session.Feature.
func channelBindingFeature() xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: nsSASLCB, Local: "sasl-channel-binding"},
		Necessary:  xmpp.Secure,
		Prohibited: xmpp.Authn,
		List: func(context.Context, xmlstream.TokenWriter, xml.StartElement) (bool, error) {
			return false, nil
		},
		Parse: func(_ context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
			var v struct {
				Types []struct {
					Type string `xml:"type,attr"`
				} `xml:"urn:xmpp:sasl-cb:0 channel-binding"`
			}
			err := d.DecodeElement(&v, start)
			types := make([]string, 0, len(v.Types))
			for _, t := range v.Types {
				types = append(types, t.Type)
			}
			return false, types, err
		},
	}
}

// announcedBindings returns the XEP-0440 channel binding types of the current
// feature list.
func announcedBindings(s *xmpp.Session) (types []string, announced bool) {
	data, ok := s.Feature(nsSASLCB)
	if !ok {
		return nil, false
	}
	types, _ = data.([]string)
	return types, true
}

// authenticator is the client side of SASL (RFC 6120 §6) with
// mellium.im/sasl mechanisms.
type authenticator struct {
	ctx                context.Context // the dial's, cancelable (mellium gets one without cancellation)
	username, password string
	requireCB          bool
	logger             *slog.Logger

	// used records the outcome, for logs and tests.
	used struct{ mechanism, binding string }
}

// feature returns the SASL stream feature.
func (a *authenticator) feature() xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: nsSASL, Local: "mechanisms"},
		Necessary:  xmpp.Secure,
		Prohibited: xmpp.Authn,
		List: func(context.Context, xmlstream.TokenWriter, xml.StartElement) (bool, error) {
			return true, errors.New("xmpptrack: client-only SASL feature")
		},
		Parse: func(_ context.Context, d *xml.Decoder, start *xml.StartElement) (bool, any, error) {
			var v struct {
				List []string `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanism"`
			}
			err := d.DecodeElement(&v, start)
			for i := range v.List {
				v.List[i] = strings.TrimSpace(v.List[i])
			}
			return true, v.List, err
		},
		Negotiate: a.negotiate,
	}
}

func (a *authenticator) negotiate(_ context.Context, s *xmpp.Session, data any) (xmpp.SessionState, io.ReadWriter, error) {
	ctx := a.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	offered, _ := data.([]string)
	cs := s.ConnectionState()
	cbTypes, cbAnnounced := announcedBindings(s)
	mechs, err := mechanismsFor(cs, cbTypes, cbAnnounced, a.requireCB)
	if err != nil {
		return 0, nil, err
	}
	var mech sasl.Mechanism
	for _, m := range mechs {
		if slices.Contains(offered, m.Name) {
			mech = m
			break
		}
	}
	if mech.Name == "" {
		if a.requireCB {
			return 0, nil, fmt.Errorf("%w: the server offers %v", ErrNoChannelBinding, offered)
		}
		return 0, nil, fmt.Errorf("%w: the server offers %v, this connection allows %v", errNoMechanism, offered, mechanismNames(mechs))
	}
	a.used.mechanism = mech.Name
	a.used.binding = "none"
	if strings.HasSuffix(mech.Name, "-PLUS") {
		a.used.binding = bindingUnique
		if cs.Version >= tls.VersionTLS13 {
			a.used.binding = bindingExporter
		}
	}
	if a.logger != nil {
		a.logger.LogAttrs(ctx, slog.LevelDebug, "xmpptrack: SASL",
			slog.String("mechanism", mech.Name),
			slog.String("channel_binding", a.used.binding),
			slog.Any("offered", offered),
			slog.Any("xep0440", cbTypes))
	}

	opts := []sasl.Option{
		sasl.Credentials(func() (user, pass, identity []byte) {
			return []byte(a.username), []byte(a.password), nil
		}),
		sasl.RemoteMechanisms(offered...),
	}
	if cs.Version != 0 {
		opts = append(opts, sasl.TLSState(cs))
	}
	client := sasl.NewClient(mech, opts...)
	fail := func(err error) (xmpp.SessionState, io.ReadWriter, error) {
		return 0, nil, fmt.Errorf("SASL %s: %w", mech.Name, err)
	}
	more, resp, err := client.Step(nil)
	if err != nil {
		return fail(err)
	}

	w := s.TokenWriter()
	defer w.Close()
	r := s.TokenReader()
	defer r.Close()
	d := xml.NewTokenDecoder(r)

	if err := writeSASL(w, "auth", mech.Name, resp); err != nil {
		return fail(err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		msg, err := readSASL(d)
		if err != nil {
			return fail(err)
		}
		switch msg.name {
		case "challenge":
			if !more {
				return fail(errors.New("server sent a challenge after the exchange was complete"))
			}
			more, resp, err = client.Step(msg.payload)
			if errors.Is(err, sasl.ErrAuthn) {
				return 0, nil, &AuthError{Mechanism: mech.Name, Err: fmt.Errorf("the server's SCRAM signature does not verify: %w", err)}
			}
			if err != nil {
				return fail(err)
			}
			if err := writeSASL(w, "response", "", resp); err != nil {
				return fail(err)
			}
		case "success":
			if more {
				// SCRAM: <success/> carries the server's final message, which
				// proves the server knows the password. Without it, or with a
				// wrong one, the server is not who it claims to be.
				if len(msg.payload) == 0 {
					return 0, nil, &AuthError{Mechanism: mech.Name, Err: fmt.Errorf("the server reported success without its SCRAM signature: %w", sasl.ErrAuthn)}
				}
				more, _, err = client.Step(msg.payload)
				if err != nil {
					return 0, nil, &AuthError{Mechanism: mech.Name, Err: fmt.Errorf("the server's SCRAM signature does not verify: %w", err)}
				}
				if more {
					return fail(errors.New("the server reported success before the exchange was complete"))
				}
			}
			// Restart the stream on the same connection.
			return xmpp.Authn, s.Conn(), nil
		case "failure":
			return 0, nil, &AuthError{Mechanism: mech.Name, Condition: msg.condition, Text: msg.text}
		default:
			return fail(fmt.Errorf("unexpected element <%s/>", msg.name))
		}
	}
}

func mechanismNames(ms []sasl.Mechanism) []string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return names
}

// writeSASL writes <local mechanism=…>base64(payload)</local> in the SASL
// namespace; an empty payload is sent as "=" (RFC 6120 §6.4.2).
func writeSASL(w xmlstream.TokenWriteFlusher, local, mechanism string, payload []byte) error {
	start := xml.StartElement{Name: xml.Name{Space: nsSASL, Local: local}}
	if mechanism != "" {
		start.Attr = []xml.Attr{{Name: xml.Name{Local: "mechanism"}, Value: mechanism}}
	}
	text := "="
	if len(payload) > 0 {
		text = base64.StdEncoding.EncodeToString(payload)
	}
	for _, tok := range []xml.Token{start, xml.CharData(text), start.End()} {
		if err := w.EncodeToken(tok); err != nil {
			return err
		}
	}
	return w.Flush()
}

// saslMessage is one element from the server during SASL.
type saslMessage struct {
	name      string // challenge, success, failure or another local name
	payload   []byte // decoded challenge or success data
	condition string // failure condition
	text      string // failure text
}

// readSASL reads the next SASL element.
func readSASL(d *xml.Decoder) (saslMessage, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return saslMessage{}, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(strings.TrimSpace(string(t))) != 0 {
				return saslMessage{}, errors.New("unexpected text")
			}
			continue
		case xml.StartElement:
			if t.Name.Space != nsSASL {
				return saslMessage{name: "{" + t.Name.Space + "}" + t.Name.Local}, nil
			}
			msg := saslMessage{name: t.Name.Local}
			switch t.Name.Local {
			case "challenge", "success":
				var text string
				if err := d.DecodeElement(&text, &t); err != nil {
					return msg, err
				}
				text = strings.TrimSpace(text)
				if text != "" && text != "=" {
					if msg.payload, err = base64.StdEncoding.DecodeString(text); err != nil {
						return msg, fmt.Errorf("bad base64 in <%s/>: %w", t.Name.Local, err)
					}
				}
			case "failure":
				var v struct {
					Children []struct {
						XMLName xml.Name
						Text    string `xml:",chardata"`
					} `xml:",any"`
				}
				if err := d.DecodeElement(&v, &t); err != nil {
					return msg, err
				}
				for _, c := range v.Children {
					if c.XMLName.Local == "text" {
						msg.text = strings.TrimSpace(c.Text)
					} else if msg.condition == "" {
						msg.condition = c.XMLName.Local
					}
				}
				if msg.condition == "" {
					msg.condition = "undefined-condition"
				}
			default:
				if err := d.Skip(); err != nil {
					return msg, err
				}
			}
			return msg, nil
		default:
			// Comments, processing instructions: not allowed in XMPP, but harmless.
			continue
		}
	}
}
