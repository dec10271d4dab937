package login

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// lockedBuffer is a tee target that may be read while a session writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	authRE      = regexp.MustCompile(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="([^"]+)">([^<]*)</auth>`)
	mechanismRE = regexp.MustCompile(`<mechanism>([^<]+)</mechanism>`)
)

// saslTranscript is what the tees show of the SASL exchange.
type saslTranscript struct {
	offered   []string // the mechanisms of the last list the server offered
	mechanism string   // the one the client chose
	gs2       string   // the client's GS2 header: "n,,", "p=tls-unique,," …
}

func readTranscript(t *testing.T, in, out string) saslTranscript {
	t.Helper()
	var tr saslTranscript
	// The mechanisms lists seen; after STARTTLS the second one counts.
	lists := strings.Split(in, "<mechanisms")
	for _, m := range mechanismRE.FindAllStringSubmatch(lists[len(lists)-1], -1) {
		tr.offered = append(tr.offered, m[1])
	}
	m := authRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no <auth/> in the client's stream:\n%s", out)
	}
	tr.mechanism = m[1]
	first, err := base64.StdEncoding.DecodeString(m[2])
	if err != nil {
		t.Fatalf("auth payload: %v", err)
	}
	if strings.HasPrefix(tr.mechanism, "SCRAM-") {
		// gs2-header = cbind-flag "," [authzid] ","
		parts := strings.SplitN(string(first), ",", 3)
		if len(parts) == 3 {
			tr.gs2 = parts[0] + "," + parts[1] + ","
		}
	}
	return tr
}

// loginResult is one Dial through tees.
type loginResult struct {
	s       *xmpp.Session
	err     error
	in, out *lockedBuffer
}

func login(ctx context.Context, t *testing.T, c Config) loginResult {
	t.Helper()
	r := loginResult{in: &lockedBuffer{}, out: &lockedBuffer{}}
	c.TeeIn, c.TeeOut = r.in, r.out
	r.s, r.err = Dial(ctx, c)
	if r.err == nil {
		t.Cleanup(func() {
			r.s.Close()
			r.s.Conn().Close()
		})
	}
	return r
}

func TestLoginIntegration(t *testing.T) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			srv := testserver.Start(t, kind, testserver.Options{Accounts: []string{"alice", "bob"}})
			alice := srv.JID("alice")
			tls12 := srv.TLSConfig()
			tls12.MaxVersion = tls.VersionTLS12

			tests := []struct {
				name string
				cfg  Config
				// Success: the TLS version, the mechanism and GS2 header chosen.
				wantTLS   uint16
				wantMech  string
				wantGS2   string
				wantOffer string // a mechanism the server must have offered ("" = no check)
				// Failure: what the error must match.
				wantErr    error
				wantCond   string // SASL condition for ErrAuth
				wantVerify bool   // a certificate verification error
			}{
				{
					name:     "plaintext",
					cfg:      Config{JID: alice, Password: srv.Password("alice"), Addr: srv.Addr(), AllowPlaintext: true},
					wantTLS:  0,
					wantMech: "SCRAM-SHA-1", wantGS2: "n,,",
				},
				{
					// TLS 1.3: ejabberd offers SCRAM-SHA-1-PLUS but fails its
					// binding; the client must not pick it (see mechanismsFor).
					name:     "starttls-tls13",
					cfg:      Config{JID: alice, Password: srv.Password("alice"), Addr: srv.Addr(), TLSConfig: srv.TLSConfig()},
					wantTLS:  tls.VersionTLS13,
					wantMech: "SCRAM-SHA-1", wantGS2: "n,,",
					wantOffer: map[testserver.Kind]string{testserver.Ejabberd: "SCRAM-SHA-1-PLUS"}[kind],
				},
				{
					name:     "starttls-tls12-channel-binding",
					cfg:      Config{JID: alice, Password: srv.Password("alice"), Addr: srv.Addr(), TLSConfig: tls12},
					wantTLS:  tls.VersionTLS12,
					wantMech: "SCRAM-SHA-1-PLUS", wantGS2: "p=tls-unique,,",
				},
				{
					name:     "require-channel-binding-tls12",
					cfg:      Config{JID: alice, Password: srv.Password("alice"), Addr: srv.Addr(), TLSConfig: tls12, RequireChannelBinding: true},
					wantTLS:  tls.VersionTLS12,
					wantMech: "SCRAM-SHA-1-PLUS", wantGS2: "p=tls-unique,,",
				},
				{
					name:    "require-channel-binding-tls13",
					cfg:     Config{JID: alice, Password: srv.Password("alice"), Addr: srv.Addr(), TLSConfig: srv.TLSConfig(), RequireChannelBinding: true},
					wantErr: ErrNoChannelBinding,
				},
				{
					name:     "wrong-password-starttls",
					cfg:      Config{JID: alice, Password: "wrong", Addr: srv.Addr(), TLSConfig: srv.TLSConfig()},
					wantErr:  ErrAuth,
					wantCond: "not-authorized",
				},
				{
					name:     "wrong-password-plaintext",
					cfg:      Config{JID: alice, Password: "wrong", Addr: srv.Addr(), AllowPlaintext: true},
					wantErr:  ErrAuth,
					wantCond: "not-authorized",
				},
				{
					name:     "unknown-account",
					cfg:      Config{JID: srv.JID("mallory"), Password: "x", Addr: srv.Addr(), TLSConfig: srv.TLSConfig()},
					wantErr:  ErrAuth,
					wantCond: "not-authorized",
				},
				{
					// No TLSConfig: the system roots do not know the test
					// certificate, and verification is on by default.
					name:       "untrusted-certificate",
					cfg:        Config{JID: alice, Password: srv.Password("alice"), Addr: srv.Addr()},
					wantVerify: true,
				},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
					defer cancel()
					r := login(ctx, t, tc.cfg)
					switch {
					case tc.wantErr != nil || tc.wantVerify:
						if r.err == nil {
							t.Fatalf("Dial succeeded, want an error")
						}
						t.Logf("error: %v", r.err)
						if tc.wantErr != nil && !errors.Is(r.err, tc.wantErr) {
							t.Fatalf("error %v does not match %v", r.err, tc.wantErr)
						}
						if tc.wantErr != ErrAuth && errors.Is(r.err, ErrAuth) {
							t.Errorf("error %v matches ErrAuth", r.err)
						}
						if tc.wantCond != "" {
							var ae *AuthError
							if !errors.As(r.err, &ae) || ae.Condition != tc.wantCond {
								t.Errorf("error %v: want SASL condition %q", r.err, tc.wantCond)
							}
						}
						if tc.wantVerify {
							var cve *tls.CertificateVerificationError
							var uae x509.UnknownAuthorityError
							if !errors.As(r.err, &cve) || !errors.As(r.err, &uae) {
								t.Errorf("error %v (%T) is not a certificate verification error", r.err, r.err)
							}
						}
						return
					case r.err != nil:
						t.Fatalf("Dial: %v\nin:\n%s\nout:\n%s", r.err, r.in, r.out)
					}
					if got := r.s.ConnectionState().Version; got != tc.wantTLS {
						t.Errorf("TLS version %#x, want %#x", got, tc.wantTLS)
					}
					if got := r.s.LocalAddr(); !got.Bare().Equal(alice) || got.Resourcepart() == "" {
						t.Errorf("bound JID %s", got)
					}
					tr := readTranscript(t, r.in.String(), r.out.String())
					t.Logf("offered %v, chose %s, GS2 %q", tr.offered, tr.mechanism, tr.gs2)
					if tr.mechanism != tc.wantMech || tr.gs2 != tc.wantGS2 {
						t.Errorf("chose %s with GS2 %q, want %s with %q", tr.mechanism, tr.gs2, tc.wantMech, tc.wantGS2)
					}
					if tc.wantOffer != "" && !slices.Contains(tr.offered, tc.wantOffer) {
						t.Errorf("server offered %v, expected %s among them (test premise)", tr.offered, tc.wantOffer)
					}
				})
			}

			if kind == testserver.Ejabberd {
				// The premise of mechanismsFor's policy: mellium alone, with
				// SCRAM-SHA-1-PLUS over TLS 1.3 (tls-exporter), is refused.
				t.Run("premise-plus-over-tls13", func(t *testing.T) {
					ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
					defer cancel()
					var d net.Dialer
					conn, err := d.DialContext(ctx, "tcp", srv.Addr())
					if err != nil {
						t.Fatal(err)
					}
					defer conn.Close()
					s, err := xmpp.NewClientSession(ctx, alice, conn,
						xmpp.StartTLS(srv.TLSConfig()),
						xmpp.SASL("", srv.Password("alice"), sasl.ScramSha1Plus),
						xmpp.BindResource())
					if err == nil {
						s.Close()
						t.Skip("ejabberd accepted tls-exporter: the workaround is no longer needed")
					}
					if !strings.Contains(err.Error(), "Invalid channel binding") {
						t.Errorf("error %v, want ejabberd's \"Invalid channel binding\"", err)
					}
				})
			}

			t.Run("message", func(t *testing.T) {
				testMessage(t, srv)
			})
		})
	}
}

// testMessage sends one chat message from alice (Session.Send) to bob (whose
// Serve handler receives it).
func testMessage(t *testing.T, srv *testserver.Server) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	dial := func(local string) *xmpp.Session {
		r := login(ctx, t, Config{JID: srv.JID(local), Password: srv.Password(local), Addr: srv.Addr(), TLSConfig: srv.TLSConfig()})
		if r.err != nil {
			t.Fatalf("login %s: %v", local, r.err)
		}
		return r.s
	}
	alice, bob := dial("alice"), dial("bob")

	type chat struct {
		From jid.JID
		ID   string
		Body string
	}
	got := make(chan chat, 1)
	served := make(chan struct{})
	var serveErr error
	go func() {
		defer close(served)
		serveErr = bob.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			if start.Name.Local != "message" {
				return nil
			}
			var m struct {
				stanza.Message
				Body string `xml:"body"`
			}
			d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r))
			if err := d.Decode(&m); err != nil {
				return err
			}
			if m.Type == stanza.ChatMessage && m.Body != "" {
				select {
				case got <- chat{From: m.From, ID: m.ID, Body: m.Body}:
				default:
				}
			}
			return nil
		}))
	}()
	t.Cleanup(func() {
		bob.Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("bob's Serve did not return after Close")
		}
	})

	const id, body = "xt-login-msg-1", "hello bob"
	msg := stanza.Message{ID: id, To: bob.LocalAddr(), Type: stanza.ChatMessage}
	err := alice.Send(ctx, msg.Wrap(xmlstream.Wrap(xmlstream.Token(xml.CharData(body)), xml.StartElement{Name: xml.Name{Local: "body"}})))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	select {
	case m := <-got:
		if m.Body != body || m.ID != id || !m.From.Equal(alice.LocalAddr()) {
			t.Errorf("bob got %+v, want body %q id %q from %s", m, body, id, alice.LocalAddr())
		}
	case <-served:
		t.Fatalf("bob's Serve ended: %v", serveErr)
	case <-ctx.Done():
		t.Fatalf("no message for bob: %v", ctx.Err())
	}
}
