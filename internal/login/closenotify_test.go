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
// (the next connection could not resume it). Direct TLS and STARTTLS. A
// clean close (</stream:stream>, then close_notify, in one TCP segment,
// which TLS 1.2 reads together) is still answered with </stream:stream>.
func TestCloseNotifyDropped(t *testing.T) {
	for _, tc := range []struct {
		name     string
		direct   bool
		clean    bool // the server closes its stream first (TLS 1.2)
		wantRead string
	}{
		{"direct TLS", true, false, ""},
		{"STARTTLS", false, false, ""},
		{"clean close, TLS 1.2", true, true, "</stream:stream>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			cert := testCertificate(t)
			after := make(chan string, 1)
			addr := scripted(t, func(conn net.Conn, d *xml.Decoder) (err error) {
				var b []byte
				defer func() { after <- fmt.Sprintf("%s (%v)", b, err) }() // never leaves the test waiting
				if !tc.direct {                                            // STARTTLS by hand, then mellium's server over TLS
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
				held := &heldConn{Conn: conn}
				srv := tls.Server(held, cert)
				if _, err := xmpp.ReceiveSession(ctx, srv, 0, xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
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
				held.hold = true
				if tc.clean {
					io.WriteString(srv, "</stream:stream>")
				}
				if err := srv.CloseWrite(); err != nil { // close_notify
					return err
				}
				if err := held.flush(); err != nil {
					return err
				}
				b, _ = io.ReadAll(srv) // until the client drops or closes
				return nil
			})
			cfg := &tls.Config{RootCAs: testRoots(t)}
			if tc.clean {
				cfg.MaxVersion = tls.VersionTLS12
			}
			s, err := Dial(ctx, Config{JID: testJID, Password: "secret", Addr: addr, DirectTLS: tc.direct, TLSConfig: cfg})
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			err = s.Serve(xmpp.HandlerFunc(func(xmlstream.TokenReadEncoder, *xml.StartElement) error { return nil }))
			if tc.clean && err != nil {
				t.Errorf("Serve after a clean close: %v, want nil", err)
			}
			s.Conn().Close()
			select {
			case got := <-after:
				if want := tc.wantRead + " (<nil>)"; got != want {
					t.Errorf("after its close_notify the server read %q, want %q", got, want)
				}
			case <-ctx.Done():
				t.Fatal("the fake server did not finish")
			}
		})
	}
}

// heldConn keeps what is written to it while hold is set, until flush
// writes it in one write (one TCP segment on loopback).
type heldConn struct {
	net.Conn
	hold bool
	buf  []byte
}

func (c *heldConn) Write(b []byte) (int, error) {
	if c.hold {
		c.buf = append(c.buf, b...)
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *heldConn) flush() error {
	c.Conn.SetWriteDeadline(time.Time{}) // tls's CloseWrite leaves it at its end
	_, err := c.Conn.Write(c.buf)
	c.buf = nil
	return err
}
