package login

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// TestCloseNotifyDropped: a server that ends TLS (close_notify) without
// </stream:stream> and reads on gets nothing more from the client. The end
// of the TLS input is the end of the connection, dropped like a FIN or a
// reset under TLS, not answered by mellium's stream error and
// </stream:stream>, which would end the server's stream management session
// (the next connection could not resume it). Direct TLS and STARTTLS.
func TestCloseNotifyDropped(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(map[bool]string{true: "direct TLS", false: "STARTTLS"}[direct], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			cert := testCertificate(t)
			after := make(chan []byte, 1)
			addr := scripted(t, func(conn net.Conn, d *xml.Decoder) error {
				if !direct { // STARTTLS by hand, then mellium's server over TLS
					if err := openStream(conn, d, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"); err != nil {
						return err
					}
					if name, _, _, err := nextElement(d); err != nil || name != "starttls" {
						return fmt.Errorf("got %q (%v), want starttls", name, err)
					}
					if _, err := io.WriteString(conn, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
						return err
					}
				}
				tc := tls.Server(conn, cert)
				if _, err := xmpp.ReceiveSession(ctx, tc, 0, xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
					return xmpp.StreamConfig{Features: []xmpp.StreamFeature{
						xmpp.SASLServer(func(n *sasl.Negotiator) bool {
							user, pass, _ := n.Credentials()
							return string(user) == "alice" && string(pass) == "secret"
						}, sasl.Plain),
						xmpp.BindCustom(func(j jid.JID, _ string) (jid.JID, error) { return j.WithResource("r") }),
					}}
				})); err != nil {
					return err
				}
				if err := tc.CloseWrite(); err != nil { // close_notify, no </stream:stream>
					return err
				}
				b, _ := io.ReadAll(tc) // until the client drops or closes
				after <- b
				return nil
			})
			s, err := Dial(ctx, Config{JID: testJID, Password: "secret", Addr: addr, DirectTLS: direct,
				TLSConfig: &tls.Config{RootCAs: testRoots(t)}})
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			err = s.Serve(xmpp.HandlerFunc(func(xmlstream.TokenReadEncoder, *xml.StartElement) error { return nil }))
			t.Logf("Serve: %v", err)
			s.Conn().Close()
			if b := <-after; len(b) != 0 {
				t.Errorf("after its close_notify the server read %q", b)
			}
		})
	}
}
