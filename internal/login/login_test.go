package login

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

var testJID = jid.MustParse("alice@localhost")

func TestDialConfigCheck(t *testing.T) {
	ok := Config{JID: testJID, Password: "pw"}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"valid plaintext", func(c *Config) { c.AllowPlaintext = true }, ""},
		{"valid direct TLS", func(c *Config) { c.DirectTLS = true; c.RequireChannelBinding = true }, ""},
		{"no localpart", func(c *Config) { c.JID = jid.MustParse("localhost") }, "no localpart"},
		{"zero JID", func(c *Config) { c.JID = jid.JID{} }, "no localpart"},
		{"empty password", func(c *Config) { c.Password = "" }, "empty password"},
		{"plaintext and direct TLS", func(c *Config) { c.AllowPlaintext, c.DirectTLS = true, true }, "exclude each other"},
		{"plaintext and TLS config", func(c *Config) { c.AllowPlaintext, c.TLSConfig = true, &tls.Config{} }, "TLSConfig"},
		{"plaintext and channel binding", func(c *Config) { c.AllowPlaintext, c.RequireChannelBinding = true, true }, "RequireChannelBinding"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.Check()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("check() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "xmpptrack: dial: ") {
				t.Fatalf("check() = %v, want an error about %q", err, tc.wantErr)
			}
			// Dial refuses it before touching the network.
			if _, err := Dial(t.Context(), c); err == nil {
				t.Fatal("Dial accepted the configuration")
			}
		})
	}
}

func TestDialTLSConfig(t *testing.T) {
	roots := x509.NewCertPool()
	custom := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	named := &tls.Config{ServerName: "xmpp.example.net"}
	tests := []struct {
		name       string
		c          Config
		wantName   string
		wantMin    uint16
		wantProtos []string
		wantRoots  *x509.CertPool
	}{
		{"nil: system roots", Config{JID: testJID}, "localhost", tls.VersionTLS12, nil, nil},
		{"custom: cloned, name filled", Config{JID: testJID, TLSConfig: custom}, "localhost", tls.VersionTLS13, nil, roots},
		{"custom: name kept", Config{JID: testJID, TLSConfig: named}, "xmpp.example.net", 0, nil, nil},
		{"direct TLS: ALPN", Config{JID: testJID, DirectTLS: true}, "localhost", tls.VersionTLS12, []string{"xmpp-client"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.c.tlsConfig()
			if got.ServerName != tc.wantName || got.MinVersion != tc.wantMin || !slices.Equal(got.NextProtos, tc.wantProtos) || got.RootCAs != tc.wantRoots {
				t.Errorf("tlsConfig() = {ServerName %q, MinVersion %#x, NextProtos %v, RootCAs %p}, want {%q, %#x, %v, %p}",
					got.ServerName, got.MinVersion, got.NextProtos, got.RootCAs, tc.wantName, tc.wantMin, tc.wantProtos, tc.wantRoots)
			}
			if got.InsecureSkipVerify {
				t.Error("verification turned off")
			}
			if tc.c.TLSConfig != nil && got == tc.c.TLSConfig {
				t.Error("the caller's TLSConfig was not cloned")
			}
		})
	}
	if custom.ServerName != "" || named.ServerName != "xmpp.example.net" {
		t.Error("the caller's TLSConfig was modified")
	}
}

func TestDialMechanismsFor(t *testing.T) {
	tls12 := tls.ConnectionState{Version: tls.VersionTLS12, TLSUnique: []byte{1, 2, 3}}
	tls12NoUnique := tls.ConnectionState{Version: tls.VersionTLS12}
	tls13 := tls.ConnectionState{Version: tls.VersionTLS13}
	all := []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}
	noPlus := all[2:]
	plus := all[:2]
	tests := []struct {
		name      string
		cs        tls.ConnectionState
		cbTypes   []string
		announced bool
		requireCB bool
		want      []string
		wantErr   error
	}{
		{"plaintext", tls.ConnectionState{}, nil, false, false, []string{"SCRAM-SHA-256", "SCRAM-SHA-1"}, nil},
		{"plaintext, CB required", tls.ConnectionState{}, nil, false, true, nil, ErrNoChannelBinding},
		{"TLS 1.2, nothing announced", tls12, nil, false, false, all, nil},
		{"TLS 1.2 without tls-unique data", tls12NoUnique, nil, false, false, noPlus, nil},
		{"TLS 1.2, tls-unique announced", tls12, []string{"tls-unique"}, true, false, all, nil},
		{"TLS 1.2, only tls-exporter announced", tls12, []string{"tls-exporter"}, true, false, noPlus, nil},
		{"TLS 1.3, nothing announced (ejabberd 23.01)", tls13, nil, false, false, noPlus, nil},
		{"TLS 1.3, tls-exporter announced", tls13, []string{"tls-server-end-point", "tls-exporter"}, true, false, all, nil},
		{"TLS 1.3, tls-unique announced", tls13, []string{"tls-unique"}, true, false, noPlus, nil},
		{"TLS 1.3, CB required, nothing announced", tls13, nil, false, true, nil, ErrNoChannelBinding},
		{"TLS 1.3, CB required, tls-exporter announced", tls13, []string{"tls-exporter"}, true, true, plus, nil},
		{"TLS 1.2, CB required", tls12, nil, false, true, plus, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mechanismsFor(tc.cs, tc.cbTypes, tc.announced, tc.requireCB)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if names := mechanismNames(got); !slices.Equal(names, tc.want) {
				t.Errorf("mechanisms %v, want %v", names, tc.want)
			}
		})
	}
}

func TestDialAuthError(t *testing.T) {
	tests := []struct {
		err       *AuthError
		want      string
		temporary bool
		isAuthn   bool
	}{
		{&AuthError{Mechanism: "SCRAM-SHA-1", Condition: "not-authorized", Text: "bad"}, `xmpptrack: authentication failed: not-authorized ("bad") [SCRAM-SHA-1]`, false, false},
		{&AuthError{Mechanism: "PLAIN", Condition: "temporary-auth-failure"}, `xmpptrack: authentication failed: temporary-auth-failure [PLAIN]`, true, false},
		{&AuthError{Mechanism: "SCRAM-SHA-1", Err: sasl.ErrAuthn}, `xmpptrack: authentication failed: authentication error [SCRAM-SHA-1]`, false, true},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		wrapped := fmt.Errorf("outer: %w", tc.err)
		if !errors.Is(wrapped, ErrAuth) {
			t.Errorf("%v does not match ErrAuth", tc.err)
		}
		if errors.Is(wrapped, sasl.ErrAuthn) != tc.isAuthn {
			t.Errorf("%v: errors.Is(sasl.ErrAuthn) = %v", tc.err, !tc.isAuthn)
		}
		if tc.err.Temporary() != tc.temporary {
			t.Errorf("%v: Temporary() = %v", tc.err, !tc.temporary)
		}
	}
}

// scripted is a fake server: it accepts one connection on loopback and runs
// script on it. The script's error, if any, fails the test.
func scripted(t *testing.T, script func(conn net.Conn, d *xml.Decoder) error) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		l.Close()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		done <- script(conn, xml.NewDecoder(conn))
	}()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("fake server: %v", err)
		}
	})
	return l.Addr().String()
}

// openStream reads the client's stream header and answers with ours and the
// given features.
func openStream(conn net.Conn, d *xml.Decoder, features string) error {
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		if start, ok := tok.(xml.StartElement); ok && start.Name.Local == "stream" {
			break
		}
	}
	_, err := fmt.Fprintf(conn, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'><stream:features>%s</stream:features>", features)
	return err
}

// nextElement reads the client's next top-level element, or io.EOF when it
// closes the stream or the connection.
func nextElement(d *xml.Decoder) (name string, attrs map[string]string, text string, err error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return "", nil, "", err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return "", nil, "", io.EOF // </stream:stream>
		case xml.StartElement:
			var v struct {
				Text string `xml:",chardata"`
			}
			if err := d.DecodeElement(&v, &t); err != nil {
				return "", nil, "", err
			}
			attrs = make(map[string]string)
			for _, a := range t.Attr {
				attrs[a.Name.Local] = a.Value
			}
			return t.Name.Local, attrs, v.Text, nil
		}
	}
}

// expectEnd reads until the client goes away and fails if it sends an element.
func expectEnd(d *xml.Decoder) error {
	name, _, _, err := nextElement(d)
	if err == nil {
		return fmt.Errorf("client sent <%s/>, want nothing", name)
	}
	return nil
}

const (
	plainOnly = `<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>`
	scramSHA1 = `<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms>`
)

// scramServerFirst answers a SCRAM client-first message with a server-first
// message and returns it.
func scramServerFirst(conn net.Conn, clientFirstB64 string) error {
	first, err := base64.StdEncoding.DecodeString(clientFirstB64)
	if err != nil {
		return err
	}
	var nonce string
	for _, f := range strings.Split(string(first), ",") {
		if v, ok := strings.CutPrefix(f, "r="); ok {
			nonce = v
		}
	}
	msg := "r=" + nonce + "srv,s=" + base64.StdEncoding.EncodeToString([]byte("salt")) + ",i=4096"
	_, err = fmt.Fprintf(conn, "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</challenge>", base64.StdEncoding.EncodeToString([]byte(msg)))
	return err
}

// noStartTLS offers SCRAM-SHA-1 and no STARTTLS, refuses a STARTTLS attempt,
// and fails if the client tries to authenticate.
func noStartTLS(conn net.Conn, d *xml.Decoder) error {
	if err := openStream(conn, d, scramSHA1); err != nil {
		return err
	}
	for {
		name, _, _, err := nextElement(d)
		switch {
		case err != nil:
			return nil
		case name == "starttls":
			if _, err := io.WriteString(conn, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
				return err
			}
		default:
			return fmt.Errorf("client sent <%s/> over plaintext", name)
		}
	}
}

func TestDialScripted(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config // Addr filled in
		script    func(conn net.Conn, d *xml.Decoder) error
		wantErr   error  // matched with errors.Is, if set
		wantText  string // substring of the error
		notAuth   bool   // the error must not match ErrAuth
		wantCond  string
		wantTemp  bool
		wantAuthn bool // the error matches sasl.ErrAuthn
		connect   bool // the error matches ErrConnect
	}{
		{
			name: "PLAIN is never used without TLS",
			cfg:  Config{AllowPlaintext: true},
			script: func(conn net.Conn, d *xml.Decoder) error {
				if err := openStream(conn, d, plainOnly); err != nil {
					return err
				}
				return expectEnd(d)
			},
			wantText: "no acceptable SASL mechanism", notAuth: true,
		},
		{
			// Without a tee, mellium tries STARTTLS anyway (RFC 7590).
			name:    "no STARTTLS offered: no authentication",
			cfg:     Config{},
			script:  noStartTLS,
			wantErr: ErrNoTLS, notAuth: true,
		},
		{
			// With a tee, mellium skips that attempt; the result check
			// still refuses the session.
			name:    "no STARTTLS offered, with tees: no authentication",
			cfg:     Config{TeeIn: io.Discard, TeeOut: io.Discard},
			script:  noStartTLS,
			wantErr: ErrNoTLS, notAuth: true,
		},
		{
			name: "STARTTLS refused: fail closed",
			cfg:  Config{},
			script: func(conn net.Conn, d *xml.Decoder) error {
				if err := openStream(conn, d, `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`+scramSHA1); err != nil {
					return err
				}
				if name, _, _, err := nextElement(d); err != nil || name != "starttls" {
					return fmt.Errorf("got <%s/> (%v), want <starttls/>", name, err)
				}
				if _, err := io.WriteString(conn, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
					return err
				}
				return expectEnd(d)
			},
			wantErr: ErrNoTLS, notAuth: true,
		},
		{
			name: "empty feature list: fail closed",
			cfg:  Config{AllowPlaintext: true},
			script: func(conn net.Conn, d *xml.Decoder) error {
				if err := openStream(conn, d, ""); err != nil {
					return err
				}
				return expectEnd(d)
			},
			wantText: "without authentication", notAuth: true, connect: true,
		},
		{
			name: "SASL failure with text",
			cfg:  Config{AllowPlaintext: true},
			script: func(conn net.Conn, d *xml.Decoder) error {
				if err := openStream(conn, d, scramSHA1); err != nil {
					return err
				}
				name, attrs, _, err := nextElement(d)
				if err != nil || name != "auth" || attrs["mechanism"] != "SCRAM-SHA-1" {
					return fmt.Errorf("got <%s %v/> (%v), want SCRAM-SHA-1 <auth/>", name, attrs, err)
				}
				_, err = io.WriteString(conn, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><account-disabled/><text xml:lang='en'>Call us</text></failure>")
				return err
			},
			wantErr: ErrAuth, wantCond: "account-disabled", wantText: `"Call us"`,
		},
		{
			name: "temporary failure",
			cfg:  Config{AllowPlaintext: true},
			script: func(conn net.Conn, d *xml.Decoder) error {
				if err := openStream(conn, d, scramSHA1); err != nil {
					return err
				}
				if _, _, _, err := nextElement(d); err != nil {
					return err
				}
				_, err := io.WriteString(conn, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><temporary-auth-failure/></failure>")
				return err
			},
			wantErr: ErrAuth, wantCond: "temporary-auth-failure", wantTemp: true,
		},
		{
			name: "SCRAM success without the server's signature",
			cfg:  Config{AllowPlaintext: true},
			script: func(conn net.Conn, d *xml.Decoder) error {
				if err := openStream(conn, d, scramSHA1); err != nil {
					return err
				}
				_, _, first, err := nextElement(d)
				if err != nil {
					return err
				}
				if err := scramServerFirst(conn, first); err != nil {
					return err
				}
				if name, _, _, err := nextElement(d); err != nil || name != "response" {
					return fmt.Errorf("got <%s/> (%v), want <response/>", name, err)
				}
				_, err = io.WriteString(conn, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
				return err
			},
			wantErr: ErrAuth, wantAuthn: true,
		},
		{
			name: "SCRAM success with a wrong server signature",
			cfg:  Config{AllowPlaintext: true},
			script: func(conn net.Conn, d *xml.Decoder) error {
				if err := openStream(conn, d, scramSHA1); err != nil {
					return err
				}
				_, _, first, err := nextElement(d)
				if err != nil {
					return err
				}
				if err := scramServerFirst(conn, first); err != nil {
					return err
				}
				if _, _, _, err := nextElement(d); err != nil {
					return err
				}
				v := base64.StdEncoding.EncodeToString([]byte("v=" + base64.StdEncoding.EncodeToString(make([]byte, 20))))
				_, err = fmt.Fprintf(conn, "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>%s</success>", v)
				if err != nil {
					return err
				}
				return expectEnd(d)
			},
			wantErr: ErrAuth, wantAuthn: true,
		},
		{
			name: "RequireChannelBinding without -PLUS offered",
			cfg:  Config{DirectTLS: true, RequireChannelBinding: true},
			script: func(conn net.Conn, d *xml.Decoder) error {
				tc := tls.Server(conn, testCertificate(t))
				d = xml.NewDecoder(tc)
				if err := openStream(tc, d, scramSHA1); err != nil {
					return err
				}
				return expectEnd(d)
			},
			wantErr: ErrNoChannelBinding, notAuth: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c := tc.cfg
			c.JID, c.Password, c.Addr = testJID, "pw", scripted(t, tc.script)
			if c.DirectTLS {
				c.TLSConfig = &tls.Config{RootCAs: testRoots(t)}
			}
			s, err := Dial(ctx, c)
			if err == nil {
				s.Close()
				s.Conn().Close()
				t.Fatal("Dial succeeded")
			}
			t.Logf("error: %v", err)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error does not match %v", tc.wantErr)
			}
			if tc.wantText != "" && !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error does not mention %q", tc.wantText)
			}
			if errors.Is(err, ErrConnect) != tc.connect {
				t.Errorf("errors.Is(err, ErrConnect) = %v, want %v", !tc.connect, tc.connect)
			}
			if tc.notAuth && errors.Is(err, ErrAuth) {
				t.Error("error matches ErrAuth")
			}
			if !strings.HasPrefix(err.Error(), "xmpptrack: ") {
				t.Error("error lacks the xmpptrack: prefix")
			}
			var ae *AuthError
			if errors.As(err, &ae) {
				if ae.Condition != tc.wantCond || ae.Temporary() != tc.wantTemp {
					t.Errorf("condition %q temporary %v, want %q %v", ae.Condition, ae.Temporary(), tc.wantCond, tc.wantTemp)
				}
			} else if tc.wantCond != "" {
				t.Errorf("error is not an *AuthError")
			}
			if errors.Is(err, sasl.ErrAuthn) != tc.wantAuthn {
				t.Errorf("errors.Is(err, sasl.ErrAuthn) = %v, want %v", !tc.wantAuthn, tc.wantAuthn)
			}
		})
	}
}

// TestDialContext: a server that never answers does not hold Dial past
// the context.
func TestDialContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	addr := scripted(t, func(conn net.Conn, d *xml.Decoder) error {
		io.Copy(io.Discard, conn) // read the header, never answer
		return nil
	})
	began := time.Now()
	_, err := Dial(ctx, Config{JID: testJID, Password: "pw", Addr: addr, AllowPlaintext: true})
	if elapsed := time.Since(began); elapsed > 5*time.Second {
		t.Errorf("Dial returned after %v, long after the context's deadline", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the context's deadline", err)
	}
	t.Logf("error: %v", err)
}

// TestDialDirectTLS logs in over XEP-0368 direct TLS against a mellium server
// (PLAIN over TLS), through a wrapped bind and the tees: at Addr, or at the
// address of the domain's xmpps-client SRV record without Addr. Either way
// the TCP connection under TLS is the client's own (a probeConn), so that
// BeforeRead runs before its reads and a lost connection is dropped, not
// closed by mellium (mellium's dialer, used without Addr before, returned
// its TLS connection over a TCP connection of its own).
func TestDialDirectTLS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		password string
		srv      bool
		wantErr  error
	}{
		{"success", "secret", false, nil},
		{"wrong password", "wrong", false, ErrAuth},
		{"through SRV", "secret", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			cert := testCertificate(t)
			cert.NextProtos = []string{"xmpp-client"}
			alpn := make(chan string, 1)
			addr := scripted(t, func(conn net.Conn, _ *xml.Decoder) error {
				tc := tls.Server(conn, cert)
				if err := tc.HandshakeContext(ctx); err != nil {
					return err
				}
				alpn <- tc.ConnectionState().NegotiatedProtocol
				s, err := xmpp.ReceiveSession(ctx, tc, 0, xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
					return xmpp.StreamConfig{Features: []xmpp.StreamFeature{
						xmpp.SASLServer(func(n *sasl.Negotiator) bool {
							user, pass, _ := n.Credentials()
							return string(user) == "alice" && string(pass) == "secret"
						}, sasl.Plain),
						xmpp.BindCustom(func(j jid.JID, _ string) (jid.JID, error) {
							return j.WithResource("fixed")
						}),
					}}
				}))
				if err != nil {
					return nil // the client gave up (wrong password)
				}
				return s.Close()
			})
			var in, out bytes.Buffer
			var wrapped bool
			reads := 0
			cfg := Config{
				JID: testJID, Password: tc.password, Addr: addr, DirectTLS: true,
				TLSConfig: &tls.Config{RootCAs: testRoots(t)},
				TeeIn:     &in, TeeOut: &out,
				WrapBind: func(f xmpp.StreamFeature) xmpp.StreamFeature {
					inner := f.Negotiate
					f.Negotiate = func(ctx context.Context, s *xmpp.Session, data any) (xmpp.SessionState, io.ReadWriter, error) {
						wrapped = true
						return inner(ctx, s, data)
					}
					return f
				},
				BeforeRead: func() { reads++ },
			}
			if tc.srv {
				_, port, _ := net.SplitHostPort(addr)
				p, _ := strconv.Atoi(port)
				cfg.Addr = ""
				cfg.resolver = fakeDNS{
					srv:  map[string][]net.SRV{"_xmpps-client._tcp.localhost.": {{Target: "xmpp.example.net.", Port: uint16(p)}}},
					host: map[string][4]byte{"xmpp.example.net.": {127, 0, 0, 1}},
				}.resolver()
			}
			s, err := Dial(ctx, cfg)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer s.Conn().Close()
			defer s.Close()
			if got := <-alpn; got != "xmpp-client" {
				t.Errorf("ALPN %q, want xmpp-client", got)
			}
			if got := s.LocalAddr().String(); got != "alice@localhost/fixed" {
				t.Errorf("bound %s", got)
			}
			if !wrapped {
				t.Error("WrapBind's feature was not used")
			}
			if !strings.Contains(out.String(), `mechanism="PLAIN"`) || !strings.Contains(in.String(), "<success") {
				t.Errorf("tees missed the SASL exchange:\nout: %s\nin: %s", out.String(), in.String())
			}
			if reads == 0 { // only a probeConn calls it, under TLS
				t.Error("BeforeRead never ran")
			}
		})
	}
}

// testCertificate returns a server configuration with a certificate for
// localhost that testRoots trusts.
func testCertificate(t *testing.T) *tls.Config {
	t.Helper()
	cert, _ := testCertificates()
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

func testRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	_, roots := testCertificates()
	return roots
}

// testCertificates makes one self-signed certificate for localhost.
var testCertificates = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{"localhost"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
})
