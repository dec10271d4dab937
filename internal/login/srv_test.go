package login

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// TestTargets: the order in which a domain's addresses are tried without
// Addr: direct TLS records first (with DirectTLS), then STARTTLS records,
// each in priority order, then the standard port of a service without
// records; a "." record withdraws its service, and for xmpps-client the
// domain's own addresses too (XEP-0368); a failed lookup counts as no
// records, unless both failed.
func TestTargets(t *testing.T) {
	srv := func(target string, port, priority uint16) net.SRV {
		return net.SRV{Target: target, Port: port, Priority: priority}
	}
	const starttls, direct = "_xmpp-client._tcp.example.net.", "_xmpps-client._tcp.example.net."
	for _, tc := range []struct {
		name      string
		dns       fakeDNS
		directTLS bool
		want      []target // nil: an error
	}{
		{"no records", fakeDNS{}, false, []target{{"example.net:5222", false}}},
		{"no records, direct TLS", fakeDNS{}, true, []target{{"example.net:5222", false}, {"example.net:5223", true}}},
		{"both services", fakeDNS{srv: map[string][]net.SRV{
			starttls: {srv("b.example.net.", 15222, 20), srv("a.example.net.", 5222, 10)},
			direct:   {srv("c.example.net.", 443, 0)},
		}}, true, []target{{"c.example.net.:443", true}, {"a.example.net.:5222", false}, {"b.example.net.:15222", false}}},
		{"direct TLS records unused without DirectTLS", fakeDNS{srv: map[string][]net.SRV{
			direct: {srv("c.example.net.", 443, 0)},
		}}, false, []target{{"example.net:5222", false}}},
		{"STARTTLS withdrawn", fakeDNS{srv: map[string][]net.SRV{
			starttls: {srv(".", 0, 0)},
			direct:   {srv("c.example.net.", 443, 0)},
		}}, true, []target{{"c.example.net.:443", true}}},
		{"direct TLS withdrawn", fakeDNS{srv: map[string][]net.SRV{
			starttls: {srv("a.example.net.", 5222, 0)},
			direct:   {srv(".", 0, 0)},
		}}, true, []target{{"a.example.net.:5222", false}}},
		{"direct TLS withdrawn: no fallback", fakeDNS{srv: map[string][]net.SRV{direct: {srv(".", 0, 0)}}}, true, nil},
		{"the only service withdrawn", fakeDNS{srv: map[string][]net.SRV{starttls: {srv(".", 0, 0)}}}, false, nil},
		{"lookup failed", fakeDNS{fail: []string{starttls}}, false, []target{{"example.net:5222", false}}},
		{"one lookup failed, direct TLS", fakeDNS{fail: []string{direct}, srv: map[string][]net.SRV{
			starttls: {srv("a.example.net.", 5222, 0)},
		}}, true, []target{{"a.example.net.:5222", false}, {"example.net:5223", true}}},
		{"both lookups failed", fakeDNS{fail: []string{starttls, direct}}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := targets(t.Context(), tc.dns.resolver(), "example.net", tc.directTLS)
			if tc.want == nil {
				if err == nil {
					t.Errorf("targets: %v, want an error", got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("targets: %v, %v, want %v", got, err, tc.want)
			}
		})
	}
	invalid := fakeDNS{srv: map[string][]net.SRV{starttls: {srv("a.example.net.", 5222, 0), srv("bad!name.example.net.", 5222, 1)}}}
	if got, err := targets(t.Context(), invalid.resolver(), "example.net", false); !slices.Equal(got, []target{{"a.example.net.:5222", false}}) {
		t.Errorf("a record with an invalid name beside a valid one: %v, %v, want the valid one", got, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if got, err := targets(ctx, fakeDNS{together: newBarrier()}.resolver(), "example.net", true); err != nil || len(got) != 2 {
		t.Errorf("lookups that are answered only together: %v, %v, want both fallbacks", got, err)
	}
	_, err := targets(t.Context(), fakeDNS{fail: []string{starttls, direct}}.resolver(), "example.net", true)
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		t.Errorf("both lookups failed: %v, want a *net.DNSError", err)
	}
}

// twoTargets is a fake DNS giving example.net a direct TLS target at
// first and a STARTTLS one at second (host:port on 127.0.0.1).
func twoTargets(t *testing.T, first, second string) *net.Resolver {
	t.Helper()
	port := func(addr string) uint16 {
		_, p, _ := net.SplitHostPort(addr)
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		return uint16(n)
	}
	return fakeDNS{
		srv: map[string][]net.SRV{
			"_xmpps-client._tcp.example.net.": {{Target: "one.example.net.", Port: port(first)}},
			"_xmpp-client._tcp.example.net.":  {{Target: "two.example.net.", Port: port(second)}},
		},
		host: map[string][4]byte{"one.example.net.": {127, 0, 0, 1}, "two.example.net.": {127, 0, 0, 1}},
	}.resolver()
}

// TestDialSilentTargetBounded: a target that takes the connection and
// never answers the TLS handshake gets its share of Dial's time only, and
// the next target is dialed.
func TestDialSilentTargetBounded(t *testing.T) {
	silent, next := listen(t), listen(t)
	go func() { // takes the connection, says nothing
		if c, err := silent.Accept(); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	dialed := make(chan struct{})
	go func() {
		if c, err := next.Accept(); err == nil {
			close(dialed)
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	_, err := Dial(ctx, Config{JID: jid.MustParse("alice@example.net"), Password: "pw", DirectTLS: true,
		resolver: twoTargets(t, silent.Addr().String(), next.Addr().String())})
	select {
	case <-dialed:
	default:
		t.Errorf("the second target was never dialed (Dial: %v)", err)
	}
}

// TestDialBoundedAttemptNotDeadline: an attempt cut by its share of the
// time is not the end of Dial's ctx: while ctx runs, Dial's error does not
// match context.DeadlineExceeded (which says the caller's time ran out).
func TestDialBoundedAttemptNotDeadline(t *testing.T) {
	silent := listen(t)
	go func() {
		if c, err := silent.Accept(); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	_, err := Dial(ctx, Config{JID: jid.MustParse("alice@example.net"), Password: "pw", DirectTLS: true,
		resolver: twoTargets(t, silent.Addr().String(), closedPort(t))})
	if err == nil || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		t.Errorf("Dial: %v, want an error that does not match context.DeadlineExceeded while ctx runs", err)
	}
}

// TestDialTargetErrorsKept: Dial's error keeps every target's, each with
// its address: the first one's certificate error is not lost behind the
// second one's refused connection.
func TestDialTargetErrorsKept(t *testing.T) {
	tlsAddr, serverCert := listen(t), testCertificate(t)
	go func() {
		if c, err := tlsAddr.Accept(); err == nil {
			tls.Server(c, serverCert).Handshake()
			c.Close()
		}
	}()
	refused := closedPort(t)
	_, err := Dial(t.Context(), Config{JID: jid.MustParse("alice@example.net"), Password: "pw", DirectTLS: true,
		TLSConfig: &tls.Config{ServerName: "localhost", RootCAs: x509.NewCertPool()},
		resolver:  twoTargets(t, tlsAddr.Addr().String(), refused)})
	var cert *tls.CertificateVerificationError
	var op *net.OpError
	if !errors.As(err, &cert) || !errors.As(err, &op) || !strings.Contains(err.Error(), "one.example.net.:") {
		t.Errorf("Dial: %v, want the first target's certificate error and the second's refusal, with addresses", err)
	}
}

// listen listens on a loopback port until the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestDialNotXMPPOnlyIfAll: one target that does not speak TLS (here it
// answers in plain text) does not make Dial report ErrNotXMPP when another
// target failed otherwise (refused); every target's error stays in the text.
func TestDialNotXMPPOnlyIfAll(t *testing.T) {
	plain := listen(t)
	go func() {
		if c, err := plain.Accept(); err == nil {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
			c.Close()
		}
	}()
	_, err := Dial(t.Context(), Config{JID: jid.MustParse("alice@example.net"), Password: "pw", DirectTLS: true,
		resolver: twoTargets(t, plain.Addr().String(), closedPort(t))})
	if !errors.Is(err, ErrConnect) || errors.Is(err, ErrNotXMPP) || !strings.Contains(err.Error(), "one.example.net.:") {
		t.Errorf("Dial: %v, want ErrConnect, not ErrNotXMPP, naming the first target", err)
	}
}

// TestJoinAttemptsNotXMPPOnlyIfAllTried: one target that answered in plain
// text is "not TLS" only when it was the domain's only target; with
// others never tried (ctx ended first) the whole is no proof that the
// server does not speak XMPP.
func TestJoinAttemptsNotXMPPOnlyIfAllTried(t *testing.T) {
	notTLS := fmt.Errorf("one.example.net:5223: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"})
	var rh tls.RecordHeaderError
	if err := joinAttempts([]error{notTLS}, 1); !errors.As(err, &rh) {
		t.Errorf("the only target: %v, want a tls.RecordHeaderError", err)
	}
	if err := joinAttempts([]error{notTLS}, 2); errors.As(err, &rh) {
		t.Errorf("one of two targets tried: %v matches tls.RecordHeaderError", err)
	}
}
